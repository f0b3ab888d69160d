"""One Colonies client and one CFS per :class:`~pollinator.config.Settings`, shared by the jobs of a process.

Why: a Prefect flow mapping 100 tasks (or an Airflow worker running many
tasks in threads) built one httpx pool, one S3 store and one set of transfer
threads per task; 100 trivial tasks peaked at 1.6 GB. ``ColoniesClient`` (an
httpx client) and ``CFS`` (boto3/urllib3 underneath) are safe to share between
threads, so every job of one process leases the same pair.

A lease is counted: the pair is closed when its last job closes (so a CLI run
or a test leaves no socket behind, and a handle still "closes its client"),
and whatever is still leased at interpreter exit is closed then. A forked
child (Airflow's LocalExecutor, Celery prefork) starts with an empty cache: a
connection is never shared across a fork.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any, Optional

from pollinator.config import Settings

_lock = threading.Lock()


class _Entry:
    __slots__ = ("client", "cfs", "users")

    def __init__(self, client: Any):
        self.client = client
        self.cfs: Any = None
        self.users = 0


_entries: dict[Settings, _Entry] = {}


class Lease:
    """One job's use of the shared client (and CFS) of its settings; :meth:`release` exactly once."""

    def __init__(self, settings: Settings, entry: _Entry):
        self.settings = settings
        self._entry: Optional[_Entry] = entry

    @property
    def client(self) -> Any:
        if self._entry is None:
            raise RuntimeError("this lease was released")
        return self._entry.client

    @property
    def cfs(self) -> Any:
        entry = self._entry
        if entry is None:
            raise RuntimeError("this lease was released")
        if entry.cfs is None:
            from pollinator.cfs import CFS

            s3 = self.settings.require_s3()
            with _lock:
                if entry.cfs is None:
                    entry.cfs = CFS(entry.client, s3)
        return entry.cfs

    def release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        with _lock:
            entry.users -= 1
            if entry.users > 0 or _entries.get(self.settings) is not entry:
                return
            del _entries[self.settings]
        _close(entry)


def acquire(settings: Settings) -> Lease:
    """The shared client of ``settings`` for one more user (built on first use)."""
    with _lock:
        entry = _entries.get(settings)
        if entry is None:
            entry = _entries[settings] = _Entry(settings.client())
        entry.users += 1
        return Lease(settings, entry)


def users(settings: Settings) -> int:
    """How many leases of ``settings`` are open (for tests and benchmarks)."""
    with _lock:
        entry = _entries.get(settings)
        return entry.users if entry else 0


def _close(entry: _Entry) -> None:
    if entry.cfs is not None:
        _close_cfs(entry.cfs)
    entry.client.close()


def _close_cfs(cfs: Any) -> None:
    close = getattr(cfs, "close", None)
    if close is not None:
        close()
        return
    store = getattr(cfs, "store", None)  # the S3 pools, if they were ever built
    for pool in (getattr(store, "_lean", None), getattr(store, "_client", None)):
        if pool is not None and hasattr(pool, "close"):
            pool.close()


def close_all() -> None:
    """Close every shared client (at interpreter exit)."""
    with _lock:
        entries = list(_entries.values())
        _entries.clear()
    for entry in entries:
        try:
            _close(entry)
        except Exception:  # noqa: BLE001 - at exit, nothing is left to tell
            pass


def _forget_after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _entries.clear()  # the parent's connections are not ours to use or close


atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
