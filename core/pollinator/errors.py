"""The small exception hierarchy every Pollinator module raises.

One base class lets the CLI print one clean line (never a traceback) and lets
adapters catch everything that is "ours" without catching programming errors.

    PollinatorError
    +-- ConfigError         settings, connection fields, a private key that is not one
    +-- UsageError          the API called the wrong way (e.g. results before submit)
    +-- ProjectError        project.yaml or job arguments; nothing was submitted
    +-- SyncError           a ColonyFS transfer (UnsafePathError: a path outside the target)
    +-- JobFailed           the remote process ended FAILED or CANCELLED
    +-- JobTimeout          the caller's own time limit ran out (not a remote failure)
    +-- ColoniesError       talking to the Colonies server
        +-- Unreachable         no reply at all (refused, reset, timed out): no HTTP status
        +-- ColoniesReplyError  an error reply, with its HTTP status
            +-- BadRequest (400), AccessDenied (401/403), NotFound (404), ServerError (5xx)
"""

from __future__ import annotations


class PollinatorError(Exception):
    """Base of every error Pollinator raises on purpose."""


class ConfigError(PollinatorError):
    """Settings (env vars, connection fields, block fields) are missing or wrong."""


class ProjectError(PollinatorError):
    """project.yaml or job arguments are invalid. Nothing was submitted."""


class UsageError(PollinatorError):
    """The API was used the wrong way round (e.g. asking a job for results before submitting it)."""


class SyncError(PollinatorError):
    """A ColonyFS transfer failed; the message names the file."""


class UnsafePathError(SyncError):
    """A server record would write outside the target directory."""


class JobFailed(PollinatorError):
    """The remote process ended FAILED or CANCELLED."""

    def __init__(self, message: str, *, process_id: str = "", state: str = "", errors: list[str] | None = None,
                 result: object = None):
        super().__init__(message)
        self.process_id = process_id
        self.state = state
        self.errors = list(errors or [])
        self.result = result  # the JobResult, when the process got that far
        self.exit_code = getattr(result, "exit_code", None)  # the command's real exit code, when known


class JobTimeout(PollinatorError):
    """The caller's own time limit ran out; the remote process was cancelled.

    Not a :class:`JobFailed`: the process did not fail, the caller stopped waiting.
    """

    def __init__(self, message: str, *, process_id: str = "", state: str = ""):
        super().__init__(message)
        self.process_id = process_id
        self.state = state


class ColoniesError(PollinatorError):
    """Talking to a Colonies server failed: an error reply (:class:`ColoniesReplyError`) or none
    (:class:`Unreachable`). ``status`` is the HTTP status, 0 when there was no reply."""

    def __init__(self, message: str, *, status: int = 0, msgtype: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.msgtype = msgtype

    def __str__(self) -> str:
        where = f" ({self.msgtype})" if self.msgtype else ""
        code = f"HTTP {self.status}: " if self.status else ""
        return f"{code}{self.message}{where}"


class ColoniesReplyError(ColoniesError):
    """An error reply from a Colonies server, with its HTTP status and message."""


class BadRequest(ColoniesReplyError):
    """HTTP 400: the server rejected the message."""


class AccessDenied(ColoniesReplyError):
    """HTTP 403: wrong key, not a member, or not allowed for this identity."""


class NotFound(ColoniesReplyError):
    """HTTP 404: no such process/file/executor (or nothing to assign)."""


class ServerError(ColoniesReplyError):
    """HTTP 5xx (the real server also answers 500 for some 'not found' cases)."""


class Unreachable(ColoniesError):
    """The server could not be reached (connection refused, timeout, reset)."""


def error_for_status(status: int, message: str, msgtype: str = "") -> ColoniesReplyError:
    """Map an error reply to the matching exception class."""
    cls: type[ColoniesReplyError]
    if status == 400:
        cls = BadRequest
    elif status in (401, 403):
        cls = AccessDenied
    elif status == 404:
        cls = NotFound
    elif status >= 500:
        cls = ServerError
    else:
        cls = ColoniesReplyError
    return cls(message, status=status, msgtype=msgtype)
