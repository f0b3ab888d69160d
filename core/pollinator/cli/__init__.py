"""The ``pollinator`` command line (typer + rich).

* :mod:`pollinator.cli.main` -- the root ``app``, the error/exit-code policy and
  the registry of every command (``LAZY_COMMANDS``: imported only when invoked);
* :mod:`pollinator.cli.output` -- safe printing of server-provided text;
* :mod:`pollinator.cli.common` -- settings, client, exit codes;
* :mod:`pollinator.cli.inspect` -- executors, ps, get, logs, cancel.

Kept import-light on purpose: importing ``pollinator.cli`` must not import
typer or the client, so library users never pay for the CLI.
"""
