"""The local colony: a Colonies-protocol server (``pollinator.dev.server``) and its helpers.

Kept import-light on purpose: ``python -m pollinator.dev.server`` and the CLI
should not pay for starlette/uvicorn unless they actually run the server.
"""
