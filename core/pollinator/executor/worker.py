"""The executor's main loop: long-poll for processes, run up to ``max_jobs`` at once.

A slot is taken *before* asking the server for work, so the server never
hands us a process we have no room for (it would sit RUNNING, unstarted).
``assign`` blocks on the server for ``poll_timeout`` seconds; 404 just means
nothing was queued. ``poll_lanes`` long-polls overlap, their starts spread
evenly (``assign_pacing``): a real server may give the wake-up for a process
naming us to another executor of our type, and then only our next poll start
finds it. Other errors back off exponentially, capped at
``MAX_POLL_BACKOFF`` seconds, so a restarting server is not hammered and work
is picked up again within seconds of it coming back.

Each attempt of a process (``Process.retries``: a re-queue makes a new one)
gets its own job dir ``<fs_dir>/jobs/<process id>-<attempt>`` and its own
entry in ``_running``, so a lost attempt's cleanup never touches the live
one. When the server hands us a new attempt of a process whose old attempt
is still here, the old one is stopped (its Slurm job cancelled) and waited
for before the new one starts: never two attempts of one process at once.

A backend whose jobs outlive the executor (Slurm) is told whose jobs it
submits (``bind_executor``) and, at start, cancels those an earlier, killed
run of this executor left behind (``reap_orphans``).

What a job still owes when it cannot deliver it (results, a close) is kept
in the journal under ``<fs_dir>/journal``; ``run_forever`` finishes those
entries first thing, in the background (see ``job_end``).

The long-poll runs in its own thread with its own connection, because a
blocked HTTP read cannot be interrupted: ``stop()`` kills and closes the jobs
at once and waits for the current long-poll only ``stop_grace`` seconds. A
process the server hands out after that is closed failed by the poller if it
is still alive; if the executor has exited by then, it stays RUNNING until
its maxexectime - the same window the Go executors have when they cancel
their assign context on shutdown.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import Process
from pollinator.config import Settings
from pollinator.errors import AccessDenied, ColoniesError, ConfigError, NotFound
from pollinator.executor.assign_pacing import PollPacer
from pollinator.executor.backend import AbortSignal, Backend
from pollinator.executor.fs_mounts import CfsLike
from pollinator.executor.job_end import DEFAULT_CLOSE_WINDOW, DEFAULT_UPLOAD_WINDOW, EndPolicy
from pollinator.executor.job_runner import LocalBackend
from pollinator.executor.journal import Journal
from pollinator.executor.process_job import LOST, STOPPED, ProcessJob
from pollinator.executor.recovery import recover_pending
from pollinator.executor.strict import Conformance
from pollinator.executor.registration import deregister_executor, register_executor

log = logging.getLogger(__name__)

CfsFactory = Callable[[ColoniesClient], Optional[CfsLike]]
MAX_CANCEL_CHECKS_PER_S = 50
MAX_POLL_BACKOFF = 4.0
"""Seconds between assign attempts while the server is unreachable, at most."""
ENV_UPLOAD_WINDOW = "POLLINATOR_EXECUTOR_UPLOAD_WINDOW"
ENV_CLOSE_WINDOW = "POLLINATOR_EXECUTOR_CLOSE_WINDOW"


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must be 0 or more seconds")
    return value


def default_cfs_factory(settings: Settings) -> CfsFactory:
    """``pollinator.cfs.CFS`` over the executor's client, or None when no S3 is configured."""

    def make(client: ColoniesClient) -> Optional[CfsLike]:
        if settings.s3 is None:
            return None
        from pollinator.cfs import CFS  # imported late: only jobs with mounts need it

        return CFS(client, settings.s3)

    return make


class LocalExecutor:
    """A ColonyOS executor that runs ``execute`` processes as local subprocesses."""

    def __init__(self, settings: Settings, *, name: str, executor_type: str = "container-executor",
                 fs_dir: Path, max_jobs: int = 4, executor_prvkey: Optional[str] = None,
                 register_with_colony_prvkey: Optional[str] = None, backend: Optional[Backend] = None,
                 cfs_factory: Optional[CfsFactory] = None, poll_timeout: int = 1, cancel_poll: float = 1.0,
                 deregister_on_stop: Optional[bool] = None, stop_grace: float = 2.0,
                 conformance: Optional[Conformance] = None, poll_lanes: int = 2,
                 upload_window: Optional[float] = None, close_window: Optional[float] = None):
        if max_jobs < 1:
            raise ConfigError(f"max_jobs={max_jobs}: an executor needs at least one job slot")
        if not executor_prvkey and not register_with_colony_prvkey:
            raise ConfigError("the executor needs its own key (COLONIES_EXECUTOR_PRVKEY) or the colony owner's "
                              "key to register itself (COLONIES_COLONY_PRVKEY)")
        self.settings = settings
        self.name = name
        self.executor_type = executor_type
        self.fs_dir = Path(fs_dir).expanduser().resolve()
        self.max_jobs = max_jobs
        self.backend: Backend = backend or LocalBackend()
        self.poll_timeout = poll_timeout
        self.poll_lanes = max(1, min(poll_lanes, max_jobs))
        self.pacer = PollPacer(poll_timeout / self.poll_lanes)
        self.cancel_poll = cancel_poll
        self._cfs_factory = cfs_factory or default_cfs_factory(settings)
        self._cfs: Optional[CfsLike] = None
        self._colony_prvkey = register_with_colony_prvkey
        self._deregister = deregister_on_stop if deregister_on_stop is not None else not executor_prvkey
        self._base_client = settings.client()

        if executor_prvkey:
            self._prvkey = executor_prvkey
        else:
            assert register_with_colony_prvkey
            colony_client = self._base_client.with_key(register_with_colony_prvkey)
            self._prvkey = register_executor(colony_client, name=name, executor_type=executor_type)
        self.executor_id = crypto.id_from_private_key(self._prvkey)
        self.client: ColoniesClient = self._base_client.with_key(self._prvkey)
        self._poll_clients: list[ColoniesClient] = [self._base_client.with_key(self._prvkey)
                                                    for _ in range(self.poll_lanes)]
        self.stop_grace = stop_grace
        self.conformance = conformance or Conformance()

        self._stop = threading.Event()
        self._slots = threading.Semaphore(max_jobs)
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], tuple[threading.Thread, AbortSignal]] = {}
        """(process id, attempt) -> the job's thread and abort signal."""
        self.journal = Journal(self.fs_dir / "journal")
        self.policy = EndPolicy(
            journal=self.journal, quarantine_dir=self.fs_dir / "quarantine",
            upload_window=upload_window if upload_window is not None else
            _seconds_from_env(ENV_UPLOAD_WINDOW, DEFAULT_UPLOAD_WINDOW),
            close_window=close_window if close_window is not None else
            _seconds_from_env(ENV_CLOSE_WINDOW, DEFAULT_CLOSE_WINDOW),
            executor_name=name, stop=self._stop)
        bind = getattr(self.backend, "bind_executor", None)
        if callable(bind):  # Slurm: tag jobs with this executor, so a restart finds what a killed run left
            bind(f"{settings.colony_name}/{name}")
        self.finished: list[tuple[str, str]] = []
        """(process id, outcome) of every job this executor ran, oldest first."""

    def __repr__(self) -> str:
        return f"LocalExecutor(name={self.name!r}, type={self.executor_type!r}, fs_dir={str(self.fs_dir)!r})"

    # -- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking work and kill running jobs (they are closed failed: "executor stopped").

        Returns at once (safe from a signal handler); ``run_forever`` returns once the jobs
        are closed, waiting at most ``stop_grace`` seconds for the current long-poll.
        """
        self._stop.set()
        with self._lock:
            for _thread, abort in self._running.values():
                abort.set(STOPPED)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def running_jobs(self) -> list[str]:
        with self._lock:
            return [pid for pid, _attempt in self._running]

    def run_forever(self) -> None:
        """Serve until ``stop()``; then wait for the jobs and deregister (when self-registered)."""
        self.fs_dir.mkdir(parents=True, exist_ok=True)
        log.info("executor %s (%s) serving colony %s; fs dir %s; up to %d job(s)", self.name, self.executor_type,
                 self.settings.colony_name, self.fs_dir, self.max_jobs)
        # build the ColonyFS engine now rather than inside the first job
        threading.Thread(target=self._shared_cfs, name=f"warm-{self.name}", daemon=True).start()
        if self.journal.pending():
            threading.Thread(target=self._recover, name=f"recover-{self.name}", daemon=True).start()
        if callable(getattr(self.backend, "reap_orphans", None)):
            threading.Thread(target=self._reap, name=f"reap-{self.name}", daemon=True).start()
        pollers = [threading.Thread(target=self._poll_main, args=(client,), name=f"assign-{self.name}-{lane}",
                                    daemon=True) for lane, client in enumerate(self._poll_clients)]
        for poller in pollers:
            poller.start()
        try:
            while all(p.is_alive() for p in pollers) and not self._stop.wait(0.5):
                pass
        finally:
            self.stop()  # also when a poller died or we were interrupted: kill and close the jobs
            end = time.monotonic() + self.stop_grace
            for poller in pollers:
                poller.join(max(0.0, end - time.monotonic()))
            self._drain()
            if self._deregister and self._colony_prvkey:
                deregister_executor(self._base_client.with_key(self._colony_prvkey), self.name)
            self.client.close()
            self._base_client.close()
            log.info("executor %s stopped", self.name)

    def _poll_main(self, client: ColoniesClient) -> None:
        try:
            self._serve(client)
        except Exception:
            log.exception("the assign loop failed; stopping the executor")
        finally:
            self._stop.set()
            client.close()

    def _serve(self, client: ColoniesClient) -> None:
        """One poll lane: slot, turn, long-poll, start the job (or give the slot back)."""
        failures = 0
        eager = False  # the last poll brought a process: more may be queued, ask again at once
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            if not self.pacer.wait_turn(self._stop, eager):
                self._slots.release()
                break
            eager = False
            try:
                process = client.assign(timeout=self.poll_timeout)
            except NotFound:
                self._slots.release()
                failures = 0
                continue
            except ColoniesError as exc:
                self._slots.release()
                if self._stop.is_set():
                    break
                failures += 1
                delay = min(MAX_POLL_BACKOFF, 0.25 * 2 ** min(failures, 6))
                level = logging.ERROR if isinstance(exc, AccessDenied) else logging.WARNING
                log.log(level, "assign failed (%s); retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                continue
            except Exception:
                self._slots.release()
                raise
            failures = 0
            if process is None:
                self._slots.release()
                continue
            if self._stop.is_set():
                self._refuse(client, process)
                self._slots.release()
                break
            self._start_job(process)
            eager = True

    def _refuse(self, client: ColoniesClient, process: Process) -> None:
        """Assigned just as we stopped: close it failed rather than leave it RUNNING forever."""
        try:
            client.close_failed(process.processid, [f"{STOPPED}: the job was not started"])
        except ColoniesError as exc:
            log.warning("could not close process %s: %s", process.processid, exc)

    def _recover(self) -> None:
        """Finish what earlier runs of this executor still owed (uploads, closes) from the journal."""
        try:
            recover_pending(self.journal, self.client, self._shared_cfs, self.policy)
        except Exception:  # noqa: BLE001 - the entries stay for the next start
            log.exception("finishing the journal failed; its entries are kept")

    def _reap(self) -> None:
        """Stop the batch jobs a killed earlier run of this executor left behind (see ``SlurmBackend``)."""
        try:
            self.backend.reap_orphans()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the next attempt's start cancels them too
            log.exception("looking for jobs left by an earlier run failed")

    def _start_job(self, process: Process) -> None:
        abort = AbortSignal()
        attempt = process.retries
        key = (process.processid, attempt)
        # Each attempt gets its own /cfs: two runs of one project, or a retry overlapping the cleanup of a
        # lost attempt, must not stage, sync or delete each other's src/data/result dirs.
        job = ProcessJob(process, client=self.client, backend=self.backend,
                         fs_dir=self.job_dir(process.processid, attempt), executor_id=self.executor_id, abort=abort,
                         cancel_poll=self._cancel_interval, assigned_at=time.monotonic(),
                         cfs_factory=self._shared_cfs, policy=self.policy,
                         conformance=self.conformance)
        with self._lock:
            earlier = [(k, t, a) for k, (t, a) in self._running.items() if k[0] == process.processid]
            for _key, _thread, old_abort in earlier:
                old_abort.set(LOST)  # the server gave the process out again: that attempt is over
            thread = threading.Thread(target=self._job_main, args=(job, key, [t for _k, t, _a in earlier]),
                                      name=f"job-{process.processid[:8]}-{attempt}", daemon=True)
            self._running[key] = (thread, abort)
            if self._stop.is_set():
                abort.set(STOPPED)
        log.info("process %s attempt %d assigned (%s)", process.processid, attempt + 1, process.spec.funcname)
        thread.start()

    def _shared_cfs(self) -> Optional[CfsLike]:
        """One ColonyFS engine for all jobs: it is thread-safe, and making a boto3 client costs ~0.1 s."""
        with self._lock:
            if self._cfs is None:
                self._cfs = self._cfs_factory(self.client)
            return self._cfs

    def _cancel_interval(self) -> float:
        """Seconds between one job's cancel checks: at most ~MAX_CANCEL_CHECKS_PER_S for the whole executor,
        so a thousand running jobs do not flood the server with state polls (a cancel then takes longer)."""
        return max(self.cancel_poll, len(self._running) / MAX_CANCEL_CHECKS_PER_S)

    def job_dir(self, process_id: str, attempt: int = 0) -> Path:
        """Where /cfs is for one attempt: ``<fs_dir>/jobs/<process id>-<attempt>``, removed when it ends."""
        return self.fs_dir / "jobs" / f"{process_id}-{attempt}"

    def _job_main(self, job: ProcessJob, key: tuple[str, int], earlier: list[threading.Thread]) -> None:
        try:
            for thread in earlier:  # a lost attempt first stops (scancel) and cleans up; then this one runs
                thread.join()
            self._clear_leftovers(job.fs_dir, f"{key[0]}-{key[1]}")
            job.run()
        finally:
            if not os.environ.get("POLLINATOR_KEEP_JOB_DIRS"):
                shutil.rmtree(job.fs_dir, ignore_errors=True)  # quarantined results were moved away first
            with self._lock:
                self._running.pop(key, None)
                self.finished.append((job.pid, job.outcome))
            self._slots.release()
            log.info("process %s attempt %d done: %s", job.pid, key[1] + 1, job.outcome or "?")

    def _clear_leftovers(self, job_dir: Path, key: str) -> None:
        """Remove what a killed earlier run of this executor left in this attempt's job dir.

        The attempt number does not always change: an executor that registers itself replaces its
        dead registration, and the server puts that one's processes back in the queue as they were
        (same ``retries``). Stale src or result files must not be staged over or uploaded as this
        run's. A dir the journal still owes uploads from is left to the journal.
        """
        if job_dir.exists() and not self.journal.holds(key):
            log.warning("removing %s, left by an earlier run of this executor", job_dir)
            shutil.rmtree(job_dir, ignore_errors=True)

    def _drain(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t, _ in self._running.values()]
            if not threads or time.monotonic() > end:
                return
            threads[0].join(max(0.0, min(1.0, end - time.monotonic())))
