"""Whether the ``local`` extra is installed, checked before the local colony starts anything.

A worker that only submits and follows jobs installs the lean core; the local
colony's server stack and its S3 endpoint (moto) come with
``pip install 'pollinator[local]'``. Without this check a missing package shows
up as a child process exiting with code 1 and a log file to read; with it the
user gets one line naming the extra, before any process is spawned.
"""

from __future__ import annotations

import importlib.util

from pollinator.errors import ConfigError

EXTRA = "local"
INSTALL_HINT = f"pip install 'pollinator[{EXTRA}]'"

# import name -> what needs it (the Colonies-protocol server and the S3 endpoint)
SERVER_MODULES = ("uvicorn", "starlette", "websockets")
S3_MODULES = ("moto", "flask", "flask_cors")  # moto's server mode needs moto[server]'s flask and flask-cors


def missing_modules(*, s3: bool = True) -> list[str]:
    """Top-level modules of the local extra that cannot be found (looked up, not imported: cheap)."""
    names = SERVER_MODULES + (S3_MODULES if s3 else ())
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_local_extra(*, s3: bool = True) -> None:
    """Raise one clear ConfigError naming the extra when the local colony cannot run here.

    ``s3=False`` when the colony uses an external S3 endpoint and so never starts moto.
    """
    missing = missing_modules(s3=s3)
    if missing:
        raise ConfigError(f"the local colony needs the '{EXTRA}' extra: {INSTALL_HINT} "
                          f"(not installed here: {', '.join(missing)})")
