"""Ship a job's output lines to the Colonies server as batched addlog messages, losing none.

A single sender thread per job keeps lines in order. It sends as soon as a
line arrives, after lingering ~20 ms to pick up a burst, and whatever queues
up while a request is in flight goes out in the next message; so a quiet job
sees each line within ~0.1 s and a chatty one sends a few large messages
instead of thousands of small ones. Each line is sent newline-terminated, as
the container executors do, so followers can print messages verbatim.

Outages: a batch the server cannot take (unreachable, 5xx) is retried with
back-off capped at a few seconds for ``retry_window`` seconds (minutes), while
new lines wait in a bounded buffer (``max_buffered`` lines). When the buffer
is full, ``put`` blocks (back-pressure: the job's writes to its stdout wait)
for up to ``put_wait`` seconds; only then is a line dropped, and the count of
dropped lines is said in the process log as soon as lines flow again.

Bytes: the real server stores logs in PostgreSQL text, which refuses NUL
(HTTP 400, the whole message lost), so NUL is escaped as ``\\x00`` before
sending. A batch refused with 400 anyway is re-sent line by line, and a
line refused on its own is replaced by a note; a refused batch never
silences the rest of the job's logs. addlog is refused with 403 once the
process is no longer RUNNING (cancelled, failed by the server, re-queued):
the shipper then goes quiet instead of raising.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Optional, Protocol

from pollinator.errors import AccessDenied, BadRequest, ColoniesError, NotFound

log = logging.getLogger(__name__)

_STOP = object()


class LogClient(Protocol):
    def add_log(self, process_id: str, message: str) -> Any: ...


def server_safe(text: str) -> str:
    """``text`` without the characters the real server's PostgreSQL refuses (NUL; lone surrogates)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class LogShipper:
    """Thread-safe ``put(line)``; ``close()`` flushes everything and waits for the sender."""

    def __init__(self, client: LogClient, process_id: str, *, linger: float = 0.02, max_lines: int = 500,
                 max_bytes: int = 64 * 1024, retry_window: float = 600.0, max_delay: float = 3.0,
                 max_buffered: int = 100_000, put_wait: float = 60.0):
        self._client = client
        self.process_id = process_id
        self.linger = linger
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.retry_window = retry_window
        self.max_delay = max_delay
        self.put_wait = put_wait
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max_buffered)
        self._closed = False
        self._dropped_lock = threading.Lock()
        self._dropped_unsaid = 0
        self.dropped = 0
        """Lines lost for good (buffer full beyond ``put_wait``, or an outage past ``retry_window``)."""
        self.refused = threading.Event()
        """Set when the server refused a log (process no longer running / not ours)."""
        self.sent_messages = 0
        self.sent_lines = 0
        self._outage_since: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name=f"logs-{process_id[:8]}", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        if self._closed or self.refused.is_set():
            return
        try:
            self._queue.put(line, timeout=self.put_wait)
        except queue.Full:
            self._count_dropped(1)

    def _count_dropped(self, n: int) -> None:
        with self._dropped_lock:
            self.dropped += n
            self._dropped_unsaid += n
        log.warning("dropped %d log line(s) of process %s", n, self.process_id)

    def close(self, timeout: Optional[float] = 30.0) -> None:
        """Send what is queued, then stop the sender (idempotent). ``timeout=None`` waits for the end."""
        if not self._closed:
            self._closed = True
            while True:
                try:
                    self._queue.put(_STOP, timeout=1.0)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
        self._thread.join(timeout)

    def discard(self) -> None:
        """Stop without sending what is still queued (the process is gone, e.g. cancelled)."""
        self.refused.set()
        while True:  # unblock a sender or putter waiting on a full buffer
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self.close(timeout=5.0)

    # -- sender thread --------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [str(first)]
            size = len(batch[0]) + 1
            deadline = time.monotonic() + self.linger
            while len(batch) < self.max_lines and size < self.max_bytes:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(str(item))
                size += len(batch[-1]) + 1
            if not self.refused.is_set():
                with self._dropped_lock:
                    unsaid, self._dropped_unsaid = self._dropped_unsaid, 0
                if unsaid:
                    batch.insert(0, f"[executor] {unsaid} log line(s) of this job were dropped "
                                    f"(the log buffer stayed full through an outage)")
                self._send(batch)

    def _send(self, batch: list[str]) -> None:
        message = "".join(server_safe(line) + "\n" for line in batch)
        try:
            self._deliver(message)
            self.sent_messages += 1
            self.sent_lines += len(batch)
        except BadRequest as exc:
            if len(batch) == 1:
                note = f"[executor] a log line was refused by the server ({exc.message}); it is left out"
                try:
                    self._deliver(note + "\n")
                except ColoniesError:
                    pass
                self._count_dropped(1)
                return
            for line in batch:  # find the one line the server refuses; send the others
                if self.refused.is_set():
                    return
                self._send([line])
        except (AccessDenied, NotFound):
            # The process is not RUNNING any more or not ours: nobody can read further lines.
            self.refused.set()
        except ColoniesError as exc:
            log.warning("dropping %d log line(s) of process %s after %.0f s of retries: %s", len(batch),
                        self.process_id, self.retry_window, exc)
            self._count_dropped(len(batch))
        except Exception:  # never let a log problem kill the job's supervision
            log.exception("unexpected error sending logs of process %s", self.process_id)
            self._count_dropped(len(batch))

    def _deliver(self, message: str) -> None:
        """One addlog, retried through outages (unreachable, 5xx) for ``retry_window`` seconds.

        The window is the outage's, not the message's: once an outage has lasted that long, the
        messages queued behind it are tried once each instead of waiting a window apiece.
        """
        if self._outage_since is None:
            end = time.monotonic() + self.retry_window
        else:
            end = self._outage_since + self.retry_window
        attempt = 0
        while True:
            try:
                self._client.add_log(self.process_id, message)
                self._outage_since = None
                return
            except (AccessDenied, BadRequest, NotFound):
                raise
            except ColoniesError:
                attempt += 1
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                if time.monotonic() >= end or self.refused.is_set():
                    raise
                time.sleep(min(self.max_delay, 0.2 * 2 ** min(attempt, 8), max(0.0, end - time.monotonic())))
