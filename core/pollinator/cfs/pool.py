"""The worker pool a sync's transfers (and planning's listings and hashes) run on.

Why not ``ThreadPoolExecutor``: when the waiting thread is interrupted
(Ctrl-C, Airflow's SIGTERM handler, a Prefect cancel) its ``with`` block
would still run every queued job before the exception could leave, and a
failure in one transfer would not stop the others already running. Here the
workers take jobs from one shared queue and check a :class:`CancelToken`
before each; the first failure or interruption cancels the token, so queued
jobs are never started and running ones stop at their next check. The call
returns only when no worker is left running: nothing registers a file behind
the caller's back after it saw the exception. It also costs no future and no
hand-off per job, which matters at 10,000 small files.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence, TypeVar

from pollinator.cfs.cancel import CancelToken, SyncCancelled

_T = TypeVar("_T")
_U = TypeVar("_U")


class WorkerPool:
    """Run callables on up to ``workers`` threads, stopping them all at the first failure or cancellation."""

    def __init__(self, workers: int, name: str = "cfs"):
        self.workers = max(1, int(workers))
        self.name = name

    def __repr__(self) -> str:
        return f"WorkerPool(workers={self.workers}, name={self.name!r})"

    def run(self, jobs: Sequence[Callable[[CancelToken], None]], cancel: Optional[CancelToken] = None) -> None:
        """Call every job (in order, ``workers`` at a time) with this run's token; raise the first failure.

        ``cancel``: the caller's token. Cancelling it stops this run and raises
        :class:`SyncCancelled`; a job's failure cancels only this run's own
        (child) token. An exception in the calling thread while it waits
        (``KeyboardInterrupt``, ``SystemExit``, a task runner's "terminated")
        cancels the run, waits for the running jobs to stop and propagates.
        """
        token = cancel.child() if cancel is not None else CancelToken()
        token.check()
        if not jobs:
            return
        errors: list[BaseException] = []
        queue = iter(jobs)
        take = threading.Lock()

        def work() -> None:
            while not token.cancelled:
                with take:
                    job = next(queue, None)
                if job is None:
                    return
                try:
                    job(token)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                    errors.append(exc)
                    token.cancel(f"another transfer failed ({type(exc).__name__})")
                    return

        running = [0]
        finished = threading.Condition()

        def worker() -> None:
            try:
                work()
            finally:
                with finished:
                    running[0] -= 1
                    finished.notify_all()

        def wait_all() -> None:
            with finished:
                while running[0]:
                    finished.wait()

        if self.workers == 1 or len(jobs) == 1:
            try:
                work()
            except BaseException:
                token.cancel("interrupted")
                raise
        else:
            # Waiting on our own condition, not Thread.join: on Python 3.11 a KeyboardInterrupt inside join()
            # can mark a still-running thread as stopped, and a second join() then returns at once.
            try:
                for i in range(min(self.workers, len(jobs))):
                    with finished:
                        running[0] += 1
                    try:
                        threading.Thread(target=worker, name=f"{self.name}-{i}", daemon=True).start()
                    except BaseException:
                        with finished:
                            running[0] -= 1
                        raise
                wait_all()
            except BaseException as exc:
                token.cancel(f"interrupted ({type(exc).__name__})")
                wait_all()  # running jobs stop at their next check; none is left registering files
                raise
        real = [e for e in errors if not isinstance(e, SyncCancelled)]
        if real:
            raise real[0]
        if errors:
            raise errors[0]
        if token.cancelled and next(queue, None) is not None:
            token.check()  # cancelled from outside: some jobs never started

    def map(self, fn: Callable[[_T], _U], items: Sequence[_T], cancel: Optional[CancelToken] = None) -> list[_U]:
        """``[fn(item) for item in items]`` on the pool, in order; the first failure propagates."""
        if len(items) <= 1:
            if cancel is not None:
                cancel.check()
            return [fn(it) for it in items]
        results: list[_U] = [None] * len(items)  # type: ignore[list-item]

        def job(i: int) -> Callable[[CancelToken], None]:
            def call(_: CancelToken) -> None:
                results[i] = fn(items[i])
            return call

        self.run([job(i) for i in range(len(items))], cancel)
        return results
