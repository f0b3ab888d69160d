"""Deliver what a job owes once it has run: its results to ColonyFS, then its close, exactly once.

Both steps go through :func:`retry_window` (minutes, configurable), so an S3
endpoint or a Colonies server that is down while a job ends delays the ending
instead of losing it. What is still owed is kept in the :class:`Journal`
before anything is deleted:

* results that cannot be uploaded within the window are moved to
  ``<fs_dir>/quarantine/<process id>-<attempt>``; the process is closed
  failed with an error naming that directory, and the journal entry stays so
  a restarted executor uploads them;
* a close that cannot be delivered within the window stays in the journal;
  a restarted executor (with the same executor key) delivers it.

Before each retry the process is looked at: one that was re-queued (retries
changed), given to another executor or cancelled meanwhile is not ours to
close any more, so it is let go instead of being closed twice. A close
whose reply was lost but which did reach the server shows as the process
already in the wanted state, and counts as delivered.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from pollinator.colonies.models import ProcessState
from pollinator.errors import (AccessDenied, BadRequest, ColoniesError, NotFound, ServerError, UnsafePathError,
                               Unreachable)
from pollinator.executor.journal import Journal, JournalEntry, PendingClose
from pollinator.executor.retrying import GaveUp, retry_window

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_WINDOW = 300.0
"""Seconds a job's result upload is retried before the files are quarantined."""
DEFAULT_CLOSE_WINDOW = 900.0
"""Seconds a close is retried before it is left to the journal (a restart delivers it)."""

DELIVERED = "delivered"
LOST = "lost"
PENDING = "pending"


class EndClient(Protocol):
    def get_process(self, process_id: str) -> Any: ...

    def close_successful(self, process_id: str, out: Optional[list[Any]] = None) -> Any: ...

    def close_failed(self, process_id: str, errors: list[str]) -> Any: ...


@dataclass
class EndPolicy:
    """Where and how long an executor keeps trying (one per executor, shared by its jobs)."""

    journal: Optional[Journal] = None
    quarantine_dir: Optional[Path] = None
    upload_window: float = DEFAULT_UPLOAD_WINDOW
    close_window: float = DEFAULT_CLOSE_WINDOW
    executor_name: str = ""
    max_delay: float = 10.0
    stop: Any = field(default=None)
    """A threading.Event: once set, retries end early (what is owed stays in the journal)."""


def transient_upload_error(exc: Exception) -> bool:
    """Anything but a refused path may pass: S3 and Colonies outages take many shapes."""
    return not isinstance(exc, UnsafePathError)


def transient_close_error(exc: Exception) -> bool:
    """The server did not answer (or answered 5xx): try again. 400/403/404 are answers."""
    return isinstance(exc, (Unreachable, ServerError)) or not isinstance(exc, ColoniesError)


def ownership(client: EndClient, entry: JournalEntry) -> Optional[str]:
    """None while the attempt is still ours to close (or the server cannot say); else a reason.

    "closed" when the process already is in the state the pending close wants (a lost reply).
    """
    try:
        process = client.get_process(entry.process_id)
    except NotFound:
        return "the process no longer exists"
    except ColoniesError:
        return None  # cannot tell yet: keep retrying
    if process is None:
        return None
    state = ProcessState(process.state)
    if process.retries != entry.attempt:
        return f"the process was re-queued (attempt {process.retries + 1} now)"
    if state == ProcessState.RUNNING:
        if entry.executor_id and process.assignedexecutorid and process.assignedexecutorid != entry.executor_id:
            return "the process was assigned to another executor"
        return None
    wanted = ProcessState.SUCCESS if entry.close is not None and entry.close.ok else ProcessState.FAILED
    if state == wanted:
        return "closed"
    return f"the process is {state.name} now"


def deliver_close(client: EndClient, entry: JournalEntry, policy: EndPolicy,
                  on_retry: Callable[[int, Exception, float], None] = lambda _n, _exc, _delay: None) -> str:
    """Close the process as ``entry.close`` says; DELIVERED, LOST (not ours any more) or PENDING."""
    close = entry.close
    assert close is not None

    def step() -> Any:
        if close.ok:
            return client.close_successful(entry.process_id, close.out)
        return client.close_failed(entry.process_id, close.errors)

    def give_up() -> Optional[str]:
        return ownership(client, entry)

    try:
        retry_window(step, window=policy.close_window, what=f"closing process {entry.process_id}",
                     transient=transient_close_error, give_up=give_up, on_retry=on_retry,
                     max_delay=policy.max_delay, stop=policy.stop)
        return DELIVERED
    except GaveUp as gave:
        if gave.reason == "closed":
            return DELIVERED
        log.warning("process %s not closed: %s", entry.process_id, gave.reason)
        return LOST
    except (AccessDenied, NotFound, BadRequest) as exc:
        # 403 "process is not assigned" (re-queued), 400 "Tried to set cancelled process as ..." -
        # or our own earlier close that went through although its reply was lost.
        reason = ownership(client, entry)
        if reason == "closed":
            return DELIVERED
        log.warning("process %s not closed: %s (%s)", entry.process_id, exc, reason or "state unknown")
        return LOST
    except Exception as exc:  # noqa: BLE001 - transient to the end: the journal keeps it
        log.error("process %s: close not delivered within %.0f s (%s); kept in the journal", entry.process_id,
                  policy.close_window, exc)
        return PENDING


def upload_with_retries(upload: Callable[[], None], client: EndClient, entry: JournalEntry, policy: EndPolicy,
                        say: Callable[[str], None] = lambda _m: None) -> Optional[Exception]:
    """Run ``upload`` through outages. None when done; raises GaveUp when the attempt is not ours any more;
    the last error when the window is spent."""

    def give_up() -> Optional[str]:
        reason = ownership(client, entry)
        return None if reason == "closed" else reason

    def on_retry(attempt: int, exc: Exception, delay: float) -> None:
        say(f"uploading results failed (try {attempt}: {exc}); retrying in {delay:.0f} s")

    try:
        retry_window(upload, window=policy.upload_window, what=f"uploading results of {entry.process_id}",
                     transient=transient_upload_error, give_up=give_up, on_retry=on_retry,
                     max_delay=policy.max_delay, stop=policy.stop)
        return None
    except GaveUp:
        raise
    except Exception as exc:  # noqa: BLE001 - the window is spent: the caller quarantines
        return exc


def quarantine(entry: JournalEntry, policy: EndPolicy) -> Path:
    """Move the attempt's job dir out of the way of cleanups; returns where the files are now."""
    src = Path(entry.job_dir)
    if policy.quarantine_dir is None:
        return src
    dst = policy.quarantine_dir / entry.key
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        shutil.rmtree(dst, ignore_errors=True)
    try:
        src.rename(dst)
    except OSError as exc:  # another file system: leave the files where they are
        log.warning("could not move %s to quarantine (%s); the files stay there", src, exc)
        return src
    return dst


def failed_upload_close(entry: JournalEntry, exc: Exception, where: Path, policy: EndPolicy,
                        earlier: Optional[PendingClose]) -> PendingClose:
    """The close of an attempt whose results could not be uploaded: failed, naming where they are."""
    labels = ", ".join(sorted({u.label for u in entry.uploads})) or "its labels"
    who = f"executor {policy.executor_name}" if policy.executor_name else "the executor"
    stopping = policy.stop is not None and policy.stop.is_set()
    tried = "(the executor was stopping)" if stopping else f"for {policy.upload_window:g} s"
    errors = [f"uploading results failed {tried}: {exc}",
              f"the result files are kept on {who} in {where}; it uploads them to {labels} when it restarts"]
    if earlier is not None and not earlier.ok:
        errors = earlier.errors + errors
    return PendingClose(ok=False, errors=errors)
