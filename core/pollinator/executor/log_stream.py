"""Ship a job's output lines to the Colonies server as batched addlog messages.

A single sender thread per job keeps lines in order. It sends as soon as a
line arrives, after lingering ~20 ms to pick up a burst, and whatever queues
up while a request is in flight goes out in the next message; so a quiet job
sees each line within ~0.1 s and a chatty one sends a few large messages
instead of thousands of small ones. Each line is sent newline-terminated, as
the container executors do, so followers can print messages verbatim.

addlog is refused (403) once the process is no longer RUNNING (cancelled,
failed by the server); the shipper then goes quiet instead of raising.
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


class LogShipper:
    """Thread-safe ``put(line)``; ``close()`` flushes everything and waits for the sender."""

    def __init__(self, client: LogClient, process_id: str, *, linger: float = 0.02, max_lines: int = 500,
                 max_bytes: int = 64 * 1024, retries: int = 3):
        self._client = client
        self.process_id = process_id
        self.linger = linger
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.retries = retries
        self._queue: "queue.Queue[object]" = queue.Queue()
        self._closed = False
        self.refused = threading.Event()
        """Set when the server refused a log (process no longer running / not ours)."""
        self.sent_messages = 0
        self.sent_lines = 0
        self._thread = threading.Thread(target=self._run, name=f"logs-{process_id[:8]}", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        if not self._closed and not self.refused.is_set():
            self._queue.put(line)

    def close(self, timeout: Optional[float] = 30.0) -> None:
        """Send what is queued, then stop the sender (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def discard(self) -> None:
        """Stop without sending what is still queued (the process is gone, e.g. cancelled)."""
        self.refused.set()
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
                self._send(batch)

    def _send(self, batch: list[str]) -> None:
        message = "".join(line + "\n" for line in batch)
        for attempt in range(self.retries + 1):
            try:
                self._client.add_log(self.process_id, message)
                self.sent_messages += 1
                self.sent_lines += len(batch)
                return
            except (AccessDenied, BadRequest, NotFound):
                # The process is not RUNNING any more or not ours: nobody can read further lines.
                self.refused.set()
                return
            except ColoniesError as exc:
                if attempt >= self.retries:
                    log.warning("dropping %d log line(s) of process %s: %s", len(batch), self.process_id, exc)
                    return
                time.sleep(min(2.0, 0.2 * 2**attempt))
            except Exception:  # never let a log problem kill the job's supervision
                log.exception("unexpected error sending logs of process %s", self.process_id)
                return
