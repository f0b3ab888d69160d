"""What every command module shares: settings, a client, and the exit-code policy.

Command modules call ``common.open_client()`` (attribute access, not
``from ... import``) so unit tests can stub the client in one place. The
client (httpx, the wire models) is imported on first use, not here: commands
that never talk to a server start faster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pollinator.config import Settings
from pollinator.errors import ConfigError, PollinatorError, ProjectError, UsageError

if TYPE_CHECKING:
    from pollinator.colonies.client import ColoniesClient

EXIT_REMOTE = 1  # the server said no, or could not be reached; the job failed
EXIT_USAGE = 2  # bad flags, settings or project: fix locally and retry (click uses 2 for usage too)


def load_settings(need_s3: bool = False) -> Settings:
    """Settings from the environment, else a running local colony (ConfigError names what is missing).

    Looking for the local colony is the CLI's convenience; the library never does it unasked.
    """
    from pollinator.dev.colony import discover_settings

    return discover_settings(need_s3=need_s3)


def open_client() -> ColoniesClient:
    """A client for the colony the environment points at; use it as a context manager."""
    return load_settings().client()


def exit_code_for(exc: BaseException) -> int:
    """2 for what the user fixes locally (config, project), 1 for everything remote."""
    if isinstance(exc, (ConfigError, ProjectError, UsageError)):
        return EXIT_USAGE
    if isinstance(exc, PollinatorError):
        return EXIT_REMOTE
    return EXIT_REMOTE


def parse_inputs(values: list[str]) -> dict[str, str]:
    """``--input NAME=LABEL`` (repeatable) as ``{name: label}``; checked like project.yaml's ``inputs:``."""
    from pollinator.project import check_inputs

    inputs: dict[str, str] = {}
    for value in values:
        name, sep, label = value.partition("=")
        if not sep or not name.strip() or not label.strip():
            raise ProjectError(f"--input {value!r}: use NAME=LABEL, e.g. --input prep=/pollinator/prep/result")
        inputs[name.strip()] = label.strip()
    try:
        return check_inputs(inputs)
    except ValueError as exc:
        raise ProjectError(f"--input: {exc}") from None
