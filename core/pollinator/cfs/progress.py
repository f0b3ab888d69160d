"""Progress of a transfer: a thread-safe tracker, an optional callback, and log lines.

Workers report bytes as they move and files as they finish; the tracker
throttles the callback (at most every ``min_interval`` seconds, plus a final
call) so a 10,000-file sync does not spend its time redrawing a bar. Without a
terminal (CI, an Airflow worker) one INFO line every ``log_interval`` seconds
tells the log reader the sync is alive.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger("pollinator.cfs")


@dataclass(frozen=True)
class Progress:
    """What the optional ``progress`` callback receives."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    label: str = ""
    finished: bool = False


ProgressCallback = Callable[[Progress], None]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class Tracker:
    def __init__(self, callback: Optional[ProgressCallback], *, files_total: int, bytes_total: int, label: str = "",
                 min_interval: float = 0.1, log_interval: float = 5.0):
        self.callback = callback
        self.files_total, self.bytes_total, self.label = files_total, bytes_total, label
        self.files_done = 0
        self.bytes_done = 0
        self._lock = threading.Lock()
        self._min_interval, self._log_interval = min_interval, log_interval
        self._started = self._last_cb = self._last_log = time.monotonic()

    def snapshot(self, finished: bool = False) -> Progress:
        return Progress(self.bytes_done, self.bytes_total, self.files_done, self.files_total, self.label, finished)

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_done += n
        self._maybe_emit()

    def file_done(self, unreported_bytes: int = 0) -> None:
        with self._lock:
            self.files_done += 1
            self.bytes_done += unreported_bytes
        self._maybe_emit()

    def _maybe_emit(self) -> None:
        now = time.monotonic()
        if self.callback and now - self._last_cb >= self._min_interval:
            self._last_cb = now
            self.callback(self.snapshot())
        if now - self._last_log >= self._log_interval:
            self._last_log = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.bytes_done / elapsed
        return (f"cfs {self.label}: {self.files_done}/{self.files_total} files, "
                f"{_mb(self.bytes_done)}/{_mb(self.bytes_total)}, {rate / 1e6:.1f} MB/s")

    def finish(self) -> None:
        if self.callback:
            self.callback(self.snapshot(finished=True))
        if time.monotonic() - self._started >= self._log_interval:
            log.info("%s (done)", self.line())


class RichBar:
    """A rich progress bar as a progress callback (for the CLI on a terminal)."""

    def __init__(self, description: str = "sync"):
        from rich.progress import (BarColumn, DownloadColumn, Progress as RichProgress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TextColumn("{task.fields[files]}"), TimeRemainingColumn(),
                                 transient=False, console=None)
        self._task = self._bar.add_task(description, total=None, files="")

    def __enter__(self) -> "RichBar":
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, p: Progress) -> None:
        self._bar.update(self._task, completed=p.bytes_done, total=max(p.bytes_total, 1),
                         files=f"{p.files_done}/{p.files_total} files")


def interactive() -> bool:
    return sys.stderr.isatty()
