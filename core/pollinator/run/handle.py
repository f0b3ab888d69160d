"""A process that exists: follow it, wait for it, cancel it, bring its results home.

:class:`pollinator.run.job.Job` says *what* to run and submits it; everything
after that is a :class:`ProcessHandle`. A handle made by ``Job.submit()`` and
one made by :meth:`ProcessHandle.attach` (another worker, a resumed task, the
CLI's ``attach``) are the same thing: what a handle needs to know about its
run (result label, run id) it reads from the process's own spec, never from
the job options of whoever attaches, so a handle works on a machine that
has no project directory and no operator arguments.

A handle owns its connections (a sync client, an async client made on first
``afollow``, the ColonyFS engine and its S3 pools) and closes them all:
use it as a context manager (``with`` or ``async with``) or call
:meth:`close` / :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional

from pollinator.colonies.models import Log, Process, ProcessState
from pollinator.config import Settings
from pollinator.errors import JobFailed, JobTimeout, ProjectError, UsageError
from pollinator.launcher import INTERNAL_DIR
from pollinator.run import exit_record, returns
from pollinator.run.build import RESULT_DIR_ENV, RUN_ID_ENV
from pollinator.run.follow import afollow_logs, follow_logs
from pollinator.run.result import JobResult

if TYPE_CHECKING:
    from pollinator.run.pinned import ResultFile
    from pollinator.run.shared import Lease
    from pollinator.cfs import CFS
    from pollinator.colonies.client import AsyncColoniesClient, ColoniesClient

log = logging.getLogger(__name__)

LogHandler = Callable[[str], Any]


class Connections:
    """The clients and S3 pools one run uses, made on first use and closed together.

    A :class:`Job` hands its connections to the handle it submits, so the
    upload and the follow share one client; closing either closes them once.
    The sync client and the CFS are leased from :mod:`pollinator.run.shared`:
    every run of one process with the same settings uses the same pair (100
    mapped tasks, one connection pool), closed when the last run closes.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lease: Optional["Lease"] = None
        self._client: Optional["ColoniesClient"] = None
        self._aclient: Optional["AsyncColoniesClient"] = None
        self._aclient_loop: Optional[asyncio.AbstractEventLoop] = None
        self._cfs: Optional["CFS"] = None

    @property
    def client(self) -> "ColoniesClient":
        return self._leased().client

    def _leased(self) -> "Lease":
        """The shared client/CFS lease, taken on first use."""
        if self._lease is None:
            from pollinator.run import shared

            self._lease = shared.acquire(self.settings)
            self._client = self._lease.client
        return self._lease

    @property
    def aclient(self) -> "AsyncColoniesClient":
        """The async client of the running event loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._aclient is not None and self._aclient_loop is not loop:
            self._drop_aclient()
        if self._aclient is None:
            # one run follows one process, one request at a time: one lane (an httpx client, ~1 MB) is plenty,
            # and a flow mapping 100 async tasks (one event loop each) holds 100 lanes, not 800
            from pollinator.colonies.client import LANE_WIDTH

            self._aclient, self._aclient_loop = self.settings.async_client(max_in_flight=LANE_WIDTH), loop
        return self._aclient

    @property
    def cfs(self) -> "CFS":
        if self._cfs is None:
            self._cfs = self._leased().cfs
        return self._cfs

    def _drop_aclient(self) -> None:
        """Close the async client from sync code: on its loop if that loop is idle, else scheduled on it."""
        aclient, loop = self._aclient, self._aclient_loop
        self._aclient = self._aclient_loop = None
        if aclient is None or loop is None or loop.is_closed():
            return
        try:
            if loop.is_running():
                loop.call_soon_threadsafe(_schedule_close, loop, aclient)
            else:
                loop.run_until_complete(aclient.aclose())
        except RuntimeError as exc:  # the loop went away meanwhile; its sockets went with it
            log.debug("could not close the async client: %s", exc)

    def close(self) -> None:
        lease, self._lease = self._lease, None
        self._cfs = self._client = None
        if lease is not None:
            lease.release()  # closes the shared client and CFS with their last user
        self._drop_aclient()

    async def aclose_async_client(self) -> None:
        aclient, self._aclient, self._aclient_loop = self._aclient, None, None
        if aclient is not None:
            await aclient.aclose()

    async def aclose(self) -> None:
        await self.aclose_async_client()
        self.close()


_closing: set[Any] = set()  # close tasks scheduled from sync code, kept alive until done


def _schedule_close(loop: asyncio.AbstractEventLoop, aclient: "AsyncColoniesClient") -> None:
    task = loop.create_task(aclient.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


class ProcessHandle:
    """One ColonyOS process that exists, from the first log line to its results.

    Not thread-safe; cheap to create. ``result_dir`` is where results are
    downloaded (None: not downloaded, the result label is still reported).
    """

    def __init__(self, settings: Settings, process_id: str, *, result_dir: Optional[Path | str] = None,
                 result_label: str = "", run_id: str = "", process: Optional[Process] = None,
                 connections: Optional[Connections] = None):
        if not process_id:
            raise UsageError("a process handle needs a process id")
        self.settings = settings
        self.process_id = process_id
        self.process: Optional[Process] = process
        self.result_dir: Optional[Path] = Path(result_dir) if result_dir else None
        self._result_label = result_label
        self._run_id = run_id
        self.connections = connections or Connections(settings)
        self.last_timestamp = 0  # log cursor (ns): the last line delivered by follow/afollow

    @classmethod
    def attach(cls, settings: Settings, process_id: str, *, result_dir: Optional[Path | str] = None,
               since: int = 0) -> "ProcessHandle":
        """The handle of a process submitted earlier (by us, another worker, or another system).

        The result label and run id come from the process's spec when first
        needed; ``since`` is a log cursor already delivered elsewhere (a
        trigger's event), so following continues after it.
        """
        handle = cls(settings, process_id, result_dir=result_dir)
        handle.last_timestamp = int(since)
        return handle

    # -- connections -----------------------------------------------------------------------
    @property
    def client(self) -> "ColoniesClient":
        return self.connections.client

    @property
    def cfs(self) -> "CFS":
        return self.connections.cfs

    def close(self) -> None:
        self.connections.close()

    async def aclose(self) -> None:
        await self.connections.aclose()

    def __enter__(self) -> "ProcessHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "ProcessHandle":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"ProcessHandle(process_id={self.process_id!r})"

    # -- what the process's spec says about its run -------------------------------------------
    def _spec_process(self) -> Process:
        if self.process is None:
            self.process = self.client.get_process(self.process_id)
        return self.process

    @property
    def result_label(self) -> str:
        """The label the process writes its results to, as its spec says (``$POLLINATOR_RESULT_DIR``)."""
        if not self._result_label:
            self._result_label = result_label_of(self._spec_process())
        return self._result_label

    @property
    def run_id(self) -> str:
        """The run id the submitter minted (``$POLLINATOR_RUN_ID``; empty for a process not ours)."""
        if not self._run_id:
            self._run_id = (self._spec_process().spec.env or {}).get(RUN_ID_ENV, "")
        return self._run_id

    # -- follow / wait ---------------------------------------------------------------------------
    def follow(self, since: Optional[int] = None, deadline: Optional[float] = None,
               **pacing: float) -> Iterator[Log]:
        """Live log lines until the process is final (TimeoutError past ``deadline``, a monotonic time).

        Continues after the last line this handle delivered unless ``since``
        says otherwise. ``pacing`` tunes polling (see :mod:`pollinator.run.follow`).
        """
        follower = follow_logs(self.client, self.process_id, self.last_timestamp if since is None else since,
                               deadline=deadline, **pacing)
        for line in follower:
            self.last_timestamp = follower.last_timestamp
            yield line
        self.process = follower.process

    async def afollow(self, since: Optional[int] = None, **pacing: float) -> AsyncIterator[Log]:
        """:meth:`follow` for asyncio callers (same cursor, same ``pacing`` knobs)."""
        follower = afollow_logs(self.connections.aclient, self.process_id,
                                self.last_timestamp if since is None else since, **pacing)
        async for line in follower:
            self.last_timestamp = follower.last_timestamp
            yield line
        self.process = follower.process

    def wait(self, timeout: Optional[float] = None, poll: float = 0.5) -> Process:
        """Block until the process is final (raises JobTimeout after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(0.05, poll)  # short jobs end fast; long ones settle at `poll`
        while True:
            process = self.process = self.client.get_process(self.process_id)
            if ProcessState(process.state).is_final:
                return process
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"process {self.process_id} not finished after {timeout:.0f} s",
                                 process_id=self.process_id, state=ProcessState(process.state).name)
            time.sleep(interval)
            interval = min(poll, interval * 1.5)

    def is_final(self) -> bool:
        self.process = self.client.get_process(self.process_id)
        return ProcessState(self.process.state).is_final

    def cancel(self) -> None:
        """Cancel the remote process (no-op when it is already final)."""
        process = self.client.get_process(self.process_id)
        if not ProcessState(process.state).is_final:
            self.client.cancel_process(self.process_id)
            log.info("cancelled process %s", self.process_id)

    def cancel_quietly(self) -> None:
        """Cancel, logging instead of raising: for cleanup while another error propagates."""
        try:
            self.cancel()
        except Exception as exc:  # the original error matters more; say what we could not do
            log.warning("could not cancel process %s: %s", self.process_id, exc)

    # -- results ---------------------------------------------------------------------------------
    def fetch_results(self) -> list[str]:
        """Download the result label into result_dir; returns the result files (relative paths)."""
        label, target = self.result_label, self.result_dir
        if not label:
            return []
        if target is None:  # names only: no S3 needed
            return self._label_files(label)
        # the pull plan names every result file: one listing serves both; the run's own files stay out of both
        plan = self.cfs.plan_pull(label, target, exclude=_is_internal)
        names = plan.remote_paths()
        if names:
            target.mkdir(parents=True, exist_ok=True)
            self.cfs.apply(plan)
        return names

    def _label_files(self, label: str) -> list[str]:
        names: list[str] = []
        for lab in self.client.get_file_labels(label, exact=False):
            if lab.name != label and not lab.name.startswith(label + "/"):
                continue  # prefix match also returns /x/result2
            rel = lab.name[len(label):].strip("/")
            if _is_internal(rel):
                continue  # the run's own files (exit record, return value) are not the user's results
            names.extend(f"{rel}/{f.name}" if rel else f.name for f in self.client.get_files(lab.name))
        return sorted(names)

    def result(self) -> JobResult:
        """The outcome as it stands (no download; see :meth:`finish`)."""
        process = self._spec_process()
        executor = ""
        if process.assignedexecutorid:
            names = {e.executorid: e.executorname for e in self.client.get_executors() or []}
            executor = names.get(process.assignedexecutorid, "")
        return JobResult.from_process(process, result_label=self.result_label, run_id=self.run_id,
                                      latest_label=self.latest_label,
                                      result_dir=str(self.result_dir or ""),
                                      dashboard_url=self.settings.process_url(process.processid), executor=executor)

    def finish(self) -> JobResult:
        """Wait for the end, fetch results on SUCCESS, and return the result (JobFailed otherwise).

        On SUCCESS the JSON the job wrote to ``$POLLINATOR_RETURN`` becomes
        ``return_value`` (:mod:`pollinator.run.returns`; an invalid one is a ProjectError).

        For a caller that already streamed the logs elsewhere (an Airflow
        trigger) and only needs the outcome: no log line is read again.
        """
        process = self.wait()
        failed = self.exit_failure() if process.state == ProcessState.SUCCESS else None
        ok = process.state == ProcessState.SUCCESS and failed is None
        if ok:
            self.publish_latest()
        files = self.fetch_results() if ok else []
        result = self.result().model_copy(update={"result_files": files})
        if failed is not None:
            message, code = failed
            result = result.model_copy(update={"state": "FAILED", "errors": [message, *result.errors],
                                               "exit_code": code})
        elif process.state == ProcessState.FAILED:
            code, why = self.recorded_outcome()
            why = [reason for reason in why if not any(reason in error for error in result.errors)]
            result = result.model_copy(update={"exit_code": code, "errors": [*why, *result.errors]})
        if result.ok and self.result_label:
            snapshot_id, pinned_files = self.pin_result()
            result = result.model_copy(update={"result_snapshot_id": snapshot_id,
                                               "result_snapshot_files": pinned_files})
        if result.ok:
            value = returns.read_return_value(self.client, self.cfs.store, self.result_label)
            if value is not returns.NO_RETURN_VALUE:
                result = result.model_copy(update={"return_value": value, "returned": True})
        if not result.ok:
            detail = "; ".join(result.errors) or "no error message from the executor"
            raise JobFailed(f"process {result.process_id} ended {result.state}: {detail}",
                            process_id=result.process_id, state=result.state, errors=result.errors, result=result)
        return result

    def pin_result(self) -> tuple[str, list["ResultFile"]]:
        """Freeze this run's result label as a snapshot (once per process); its id and files."""
        from pollinator.run.pinned import pin_result

        return pin_result(self.cfs, self.result_label, self.process_id)

    @property
    def latest_label(self) -> str:
        """The shared "latest successful" label this run is added to after success ("" if none)."""
        from pollinator.run.layout import latest_label_of

        return latest_label_of(self._spec_process().spec)

    def publish_latest(self) -> list[str]:
        """Add this successful run's result files to its "latest" label (see :mod:`pollinator.run.layout`)."""
        from pollinator.run.layout import publish_latest

        return publish_latest(self.cfs, self.result_label, self.latest_label)

    def exit_failure(self) -> Optional[tuple[str, Optional[int]]]:
        """Why a SUCCESS is not one, from the launcher's exit record (None: it is, or the run has no launcher).

        The Kube executor closes SUCCESS whatever the exit code; see :mod:`pollinator.run.exit_record`.
        """
        process = self._spec_process()
        if not exit_record.uses_launcher(process.spec) or not self.result_label:
            return None
        records = exit_record.read_records(self.client, self.cfs.store, self.result_label)
        return exit_record.failure(records, self.process_id)

    def recorded_exit_code(self) -> Optional[int]:
        """The command's exit code from the launcher's record (None: no launcher, or it did not finish)."""
        return self.recorded_outcome()[0]

    def recorded_outcome(self) -> tuple[Optional[int], list[str]]:
        """The exit code and the launcher's own reasons ("walltime exceeded (60 s)") from the exit records."""
        process = self._spec_process()
        if not exit_record.uses_launcher(process.spec) or not self.result_label:
            return None, []
        try:
            records = exit_record.read_records(self.client, self.cfs.store, self.result_label)
        except Exception as exc:  # noqa: BLE001 - the failure itself is what matters; the code is a detail
            log.debug("could not read the exit record of %s: %s", self.process_id, exc)
            return None, []
        return exit_record.exit_code(records, self.process_id), exit_record.reasons(records, self.process_id)

    # -- follow to the end ---------------------------------------------------------------------
    def watch(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None) -> Process:
        """Stream the lines to ``on_log`` (or just wait) until the process is final; cancel it on any error.

        Ctrl-C, a client timeout or a cancelled task cancels the remote process
        before the exception propagates: nothing is left running that nobody waits for.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if on_log is None:  # nobody reads the lines: just wait for the end
                return self.wait(timeout=timeout)
            for line in self.follow(deadline=deadline):
                emit(on_log, line)
            return self.process or self.wait()
        except (TimeoutError, JobTimeout):
            self.cancel_quietly()
            raise JobTimeout(f"process {self.process_id} exceeded the client timeout of {timeout:.0f} s",
                             process_id=self.process_id, state="RUNNING") from None
        except BaseException:
            self.cancel_quietly()
            raise

    async def awatch(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None) -> None:
        """:meth:`watch` for asyncio callers."""
        async def _stream() -> None:
            async for line in self.afollow():
                emit(on_log, line)

        try:
            await asyncio.wait_for(_stream(), timeout)
        except BaseException as exc:
            await asyncio.to_thread(self.cancel_quietly)
            if isinstance(exc, TimeoutError):
                raise JobTimeout(f"process {self.process_id} exceeded the client timeout of {timeout:.0f} s",
                                 process_id=self.process_id, state="RUNNING") from None
            raise
        finally:  # the async client belongs to this loop; the rest (results) runs in threads
            await self.connections.aclose_async_client()


def result_label_of(process: Process) -> str:
    """The result label a process's spec names: ``$POLLINATOR_RESULT_DIR`` under the CFS mount, else its
    ``.../result`` sync dir (a process the Go tool submitted)."""
    from pollinator.spec import CFS_MOUNT

    result_dir = (process.spec.env or {}).get(RESULT_DIR_ENV, "")
    if result_dir.startswith(CFS_MOUNT + "/"):
        return result_dir[len(CFS_MOUNT):]
    for mount in process.spec.fs.dirs or []:
        if mount.label.endswith("/result"):
            return mount.label
    return ""


def _is_internal(rel_dir: str) -> bool:
    return rel_dir == INTERNAL_DIR or rel_dir.startswith(INTERNAL_DIR + "/")


def emit(on_log: Optional[LogHandler], line: Log) -> None:
    """One call of ``on_log`` per remote line (a log entry may carry several)."""
    if on_log is None:
        return
    for text in line.message.splitlines() or [""]:
        on_log(text)
