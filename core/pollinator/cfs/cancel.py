"""Stopping a sync part-way: the cancel token every worker of a transfer checks.

Why a token and not just an exception: a sync runs on worker threads, and an
exception only reaches the thread that waits for them (Ctrl-C, Airflow's
SIGTERM handler raising in the task's main thread, a Prefect cancel). Without
a shared flag the queued transfers would still run one after another while
the exception waits for the pool to drain. With it, the waiting thread sets
the token and every worker stops at its next check: queued files are never
started, a multipart upload stops between parts (and is aborted), a large
download stops at its next chunk (its temp file removed), a retry's backoff
wakes up at once. A transfer already past its last check finishes its one
request so that nothing is left half done: bytes in S3 without a record are
harmless, a record without its bytes is never written (the record is always
the last step of an upload).

Another thread (an ``on_kill`` hook, an async task being cancelled while the
sync runs in ``asyncio.to_thread``) cancels with :meth:`CancelToken.cancel`;
the sync then raises :class:`SyncCancelled`.
"""

from __future__ import annotations

import threading
import weakref

from pollinator.errors import SyncError


class SyncCancelled(SyncError):
    """The sync was cancelled before it finished; files already registered stay, the rest were not started."""


class CancelToken:
    """A thread-safe "stop now" flag with a reason; cheap to check."""

    __slots__ = ("_event", "reason", "_children", "_lock", "__weakref__")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._children: "weakref.WeakSet[CancelToken]" = weakref.WeakSet()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled}{', reason=' + repr(self.reason) if self.reason else ''})"

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask every transfer using this token to stop (the first reason given is kept)."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            children = list(self._children)
        for child in children:
            child.cancel(reason)

    def child(self) -> "CancelToken":
        """A token cancelled with this one that can also be cancelled on its own (one operation's failure
        stops that operation, not the caller's other work)."""
        token = CancelToken()
        with self._lock:
            if not self._event.is_set():
                self._children.add(token)
                return token
        token.cancel(self.reason)
        return token

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`SyncCancelled` if the token was cancelled."""
        if self._event.is_set():
            raise SyncCancelled(f"sync cancelled: {self.reason}")

    def sleep(self, seconds: float) -> None:
        """A backoff pause that ends early (raising :class:`SyncCancelled`) when the token is cancelled."""
        if self._event.wait(seconds):
            self.check()
