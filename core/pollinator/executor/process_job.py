"""Carry one assigned process from "assigned" to "closed": stage, run, report, clean up.

Colonies does not tell an executor that a process was cancelled, so a
watcher polls ``getprocessmsg`` about once a second and aborts the run when
the process is CANCELLED, ended by the server (maxexectime) or no longer
assigned to us. After such an abort the process is not ours any more: no
more logs, no close, only local cleanup.

Logs must be flushed before the close: the server only accepts addlog while
the process is RUNNING.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union

from pollinator.colonies.models import Process, ProcessState
from pollinator.errors import ColoniesError, NotFound, PollinatorError
from pollinator.executor.backend import AbortSignal, Backend, LaunchSpec, RunResult
from pollinator.executor.fs_mounts import CfsLike, Mounts
from pollinator.executor import launcher_mount
from pollinator.executor.job_end import (DELIVERED, LOST as END_LOST, PENDING, EndPolicy, deliver_close,
                                         failed_upload_close, quarantine, upload_with_retries)
from pollinator.executor.journal import JournalEntry, PendingClose, PendingUpload
from pollinator.executor.launch import PathMapper, Plan, has_run_time, plan_execute, server_deadline
from pollinator.spec import RESULT_DIR_ENV
from pollinator.executor.retrying import GaveUp
from pollinator.executor.log_stream import LogShipper
from pollinator.executor.strict import Conformance

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
STOPPED = "executor stopped"
LOST = "process no longer assigned to this executor"
SUPPORTED_FUNCS = ("execute", "sync")


class JobClient(Protocol):
    """The calls a job makes, signed with the executor's key."""

    def add_log(self, process_id: str, message: str) -> Any: ...

    def get_process(self, process_id: str) -> Any: ...

    def close_successful(self, process_id: str, out: Optional[list[Any]] = None) -> Any: ...

    def close_failed(self, process_id: str, errors: list[str]) -> Any: ...


def describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class CancelWatcher:
    """Polls the process state and fires ``abort`` when the process is no longer ours to run."""

    def __init__(self, client: JobClient, process_id: str, executor_id: str, abort: AbortSignal,
                 interval: Union[float, Callable[[], float]] = 1.0, retries: int = 0):
        self._client, self._pid, self._executor_id = client, process_id, executor_id
        self._retries = retries  # a requeue (maxexectime with maxretries) bumps it: then it is a new attempt
        self._abort, self._interval = abort, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{process_id[:8]}", daemon=True)

    def start(self) -> "CancelWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5.0)

    def check(self) -> None:
        """One poll; public so tests (and the end of a run) can check without waiting."""
        try:
            process = self._client.get_process(self._pid)
        except NotFound:
            self._abort.set(LOST)
            return
        except ColoniesError as exc:  # transient: try again next tick
            log.debug("cancel check of %s failed: %s", self._pid, exc)
            return
        if process is None:
            return
        state = ProcessState(process.state)
        if state == ProcessState.CANCELLED:
            self._abort.set(CANCELLED)
        elif state != ProcessState.RUNNING:
            self._abort.set(LOST)
        elif self._executor_id and process.assignedexecutorid and process.assignedexecutorid != self._executor_id:
            self._abort.set(LOST)
        elif process.retries != self._retries:  # requeued and assigned again (maybe to us): not this run's
            self._abort.set(LOST)

    def _run(self) -> None:
        # the interval may be a function: the executor stretches it when it runs many jobs at once
        while not self._done.wait(self._interval() if callable(self._interval) else self._interval) \
                and not self._abort.is_set():
            self.check()


class ProcessJob:
    """Runs one assigned process. ``run()`` never raises: every outcome ends in a close (or a known loss)."""

    def __init__(self, process: Process, *, client: JobClient, backend: Backend, fs_dir: Path,
                 cfs: Optional[CfsLike] = None, executor_id: str = "", abort: Optional[AbortSignal] = None,
                 cancel_poll: Union[float, Callable[[], float]] = 1.0, assigned_at: Optional[float] = None,
                 cfs_factory: Optional[Callable[[], Optional[CfsLike]]] = None,
                 conformance: Optional[Conformance] = None, policy: Optional[EndPolicy] = None):
        self.process = process
        self.conformance = conformance or Conformance()
        self.pid = process.processid
        self.attempt = process.retries
        self.policy = policy or EndPolicy()
        self.client = client
        self.backend = backend
        self.fs_dir = Path(fs_dir)
        self._cfs = cfs
        self._cfs_factory = cfs_factory
        self.executor_id = executor_id
        self.abort = abort or AbortSignal()
        self.cancel_poll = cancel_poll
        self.assigned_at = time.monotonic() if assigned_at is None else assigned_at
        self.logs = LogShipper(client, self.pid)
        self._init_failed = False
        self._launcher_version = 0  # of the Pollinator launcher the command runs (0: none)
        self._started_at = 0.0  # time.time() when the command was started (older exit records are not its own)
        self.outcome = ""
        """"success", "failed", or the abort reason; for the executor's own log and tests."""

    # -- helpers ------------------------------------------------------------------------
    def say(self, message: str) -> None:
        """A line from the executor itself, in the process log."""
        self.logs.put(f"[executor] {message}")

    def cfs(self) -> Optional[CfsLike]:
        if self._cfs is None and self._cfs_factory is not None:
            self._cfs = self._cfs_factory()
        return self._cfs

    def _entry(self, close: Optional[PendingClose] = None) -> JournalEntry:
        return JournalEntry(process_id=self.pid, attempt=self.attempt, executor_id=self.executor_id,
                            job_dir=str(self.fs_dir), close=close)

    def _close_ok(self, out: list[Any]) -> None:
        self._close(self._entry(PendingClose(ok=True, out=out)))

    def _close_failed(self, errors: list[str]) -> None:
        self._close(self._entry(PendingClose(ok=False, errors=errors)))

    def _close(self, entry: JournalEntry) -> None:
        """Flush the logs, then close through outages; journaled so an executor restart finishes it."""
        assert entry.close is not None
        self.logs.close(timeout=None)  # addlog is refused once the process is closed
        journal = self.policy.journal
        done = False
        def journal_it(attempt: int, _exc: Exception, _delay: float) -> None:
            # the fast path writes nothing: a close is journaled as soon as its first try fails
            if attempt == 1 and journal is not None:
                journal.write(entry)

        try:
            verdict = deliver_close(self.client, entry, self.policy, on_retry=journal_it)
            done = verdict != PENDING
            if not done and journal is not None:
                journal.write(entry)
        except Exception as exc:  # noqa: BLE001 - a full disk must not leave the job RUNNING silently
            log.exception("process %s: closing failed: %s", self.pid, exc)
            verdict = PENDING
        if verdict == DELIVERED:
            self.outcome = "success" if entry.close.ok else "failed"
        elif verdict == END_LOST:
            self.outcome = LOST
        else:
            self.outcome = "close pending (journaled)"
        if journal is not None and done and not entry.uploads:
            journal.remove(entry)
        elif journal is not None and done:
            entry.closed = True
            journal.write(entry)

    def _lost(self) -> None:
        """The process was cancelled or taken away: say nothing more to the server."""
        self.logs.discard()
        self.outcome = self.abort.reason

    # -- entry point ----------------------------------------------------------------------
    def run(self) -> None:
        funcname = self.process.spec.funcname
        try:
            if funcname == "execute":
                self._execute()
            elif funcname == "sync":
                self._sync_only()
            else:
                self._close_failed([f"unsupported funcname {funcname!r}: this executor runs "
                                    f"{' and '.join(repr(f) for f in SUPPORTED_FUNCS)} processes"])
        except Exception as exc:  # noqa: BLE001 - last line of defence: never leave a process RUNNING
            log.exception("process %s: executor error", self.pid)
            if self.abort.reason in (CANCELLED, LOST):
                self._lost()
            else:
                self._close_failed([f"executor error: {type(exc).__name__}: {exc}"])
        finally:
            self.logs.close(timeout=5.0)

    def _sync_only(self) -> None:
        mounts = Mounts(self.process, self.fs_dir, self.cfs(), self.say)
        try:
            mounts.stage()
        except Exception as exc:  # noqa: BLE001
            self._close_failed([f"syncing mounts failed: {exc}"])
            return
        self._close_ok([])

    def _execute(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix=f"pollinator-{self.pid[:12]}-"))
        output_file = workdir / "output.json"
        watcher = CancelWatcher(self.client, self.pid, self.executor_id, self.abort, self.cancel_poll,
                                retries=self.process.retries).start()
        try:
            self._execute_in(output_file, watcher)
        finally:
            watcher.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def _execute_in(self, output_file: Path, watcher: CancelWatcher) -> None:
        refusal = self.conformance.refusal(self.process.spec)
        if refusal:  # strict mode: what the real executors refuse fails here too, before anything runs
            self._close_failed(refusal)
            return
        try:
            plan = plan_execute(self.process, self.fs_dir, output_file=output_file)
            mounts = Mounts(self.process, self.fs_dir, self.cfs(), self.say)
        except (PollinatorError, ValueError, OSError) as exc:  # JobSpecError, UnsafePathError, ...
            self._close_failed([f"invalid job: {exc}"])
            return

        if plan.image and not getattr(self.backend, "handles_images", False):
            self.say(f"docker-image {plan.image!r} is not run in a container on this executor: "
                     f"the command runs directly on the host")
        try:
            mounts.stage()
            # a Pollinator launcher carries the job's cmd/args/env: its /cfs paths point here too
            self._launcher_version = launcher_mount.localize(
                plan.command, PathMapper(self.fs_dir, self.process.spec.fs.mount, self.pid))
        except Exception as exc:  # noqa: BLE001 - any staging failure is the job's failure
            mounts.cleanup()
            if self.abort.reason in (CANCELLED, LOST):
                self._lost()
            else:
                self._close_failed([f"staging files failed: {exc}"])
            return
        if self.abort.is_set():  # cancelled or stopped while files were staged
            mounts.cleanup()
            if self.abort.reason in (CANCELLED, LOST):
                self._lost()
            else:
                self._close_failed([f"{self.abort.reason}: the job was stopped before it started"])
            return

        result = self._run_plan(plan)

        if result.aborted in (CANCELLED, LOST) or (self.abort.reason in (CANCELLED, LOST)):
            mounts.cleanup()
            self._lost()
            return
        if result.aborted:  # executor stopped
            mounts.cleanup()
            self._close_failed([f"{result.aborted}: the job was killed before it finished"])
            return

        watcher.check()  # a cancel or re-queue while the job ran: nothing more to say to the server
        if self.abort.reason in (CANCELLED, LOST):
            mounts.cleanup()
            self._lost()
            return
        self._end(mounts, self._intended_close(plan, result, output_file))

    def _intended_close(self, plan: Plan, result: RunResult, output_file: Path) -> PendingClose:
        if not result.ok and self.conformance.ignores_exit_codes:
            self.say(f"{self._errors(plan, result)[0]}; closing SUCCESS anyway (exit codes ignored, "
                     "as the Kube executor does)")
        elif not result.ok:
            return PendingClose(ok=False, errors=self._errors(plan, result))
        try:
            return PendingClose(ok=True, out=self._read_output(output_file))
        except ValueError as exc:
            return PendingClose(ok=False, errors=[str(exc)])

    def _end(self, mounts: Mounts, close: PendingClose) -> None:
        """Results into ColonyFS (retried; quarantined if they cannot go), then the close (retried).

        The journal holds what is owed before anything is deleted, so neither a long outage nor
        an executor crash loses the results or the close.
        """
        entry = self._entry(close)
        entry.uploads = [PendingUpload(label=label, dir=str(rel), keep_local=keep)
                         for label, rel, keep in mounts.upload_targets()]
        if entry.uploads:
            if self.policy.journal is not None:
                self.policy.journal.write(entry)
            try:
                problem = upload_with_retries(mounts.upload, self.client, entry, self.policy, self.say)
            except GaveUp as gave:
                self.say(f"results not uploaded: {gave.reason}")
                mounts.cleanup()
                if self.policy.journal is not None:
                    self.policy.journal.remove(entry)
                self._lost()
                return
            if problem is None:
                entry.uploads = []
                mounts.cleanup()
            else:
                where = quarantine(entry, self.policy)
                entry.job_dir, entry.quarantined = str(where), True
                entry.close = failed_upload_close(entry, problem, where, self.policy, close)
                self.say(entry.close.errors[-1])
        else:
            mounts.cleanup()
        self._close(entry)

    def launcher_keeps_walltime(self) -> bool:
        """The job's launcher enforces its run time itself (``$POLLINATOR_WALLTIME``, launcher v2+).

        Then this executor does not time the command too (two clocks would race and report
        differently): it keeps the spec's walltime (run time plus staging allowance) as the
        scheduler's limit and the server's deadline as backstops (docs/hpc.md, the deadline rule).
        """
        return self._launcher_version >= launcher_mount.WALLTIME_LAUNCHER and has_run_time(self.process.spec)

    def _run_plan(self, plan: Plan) -> RunResult:
        """init-cmd once, then the command on every rank, under one walltime deadline."""
        # walltime is run time counted from the command's start: by the launcher where it keeps it, else by
        # the backend. The server's deadline (maxexectime from assignment) is a hard stop a little before
        # its own, so this executor closes the attempt FAILED itself and the server never re-runs it for that
        deadline = server_deadline(self.process.spec, self.assigned_at)
        walltime, time_limit = plan.walltime, 0.0
        if self.launcher_keeps_walltime():
            walltime, time_limit = 0.0, float(self.process.spec.conditions.walltime or 0)
        fs_root = self.fs_dir.resolve()
        if plan.cwd == fs_root or fs_root in plan.cwd.parents:
            plan.cwd.mkdir(parents=True, exist_ok=True)  # a project dir under /cfs may not exist yet
        # (a PROJECT_DIR elsewhere on the host is used as it is; a missing one fails the start clearly)
        base = LaunchSpec(command=plan.command, cwd=plan.cwd, env=plan.env, ranks=plan.ranks,
                          ranks_per_node=plan.ranks_per_node, deadline=deadline, walltime=walltime,
                          time_limit=time_limit, process=self.process)
        self._started_at = time.time()
        if plan.init_command:
            init = self.backend.run(replace(base, command=plan.init_command, ranks=1), self.logs.put, self.abort)
            if not init.ok:
                self._init_failed = True
                return init
        return self.backend.run(base, self.logs.put, self.abort)

    def _errors(self, plan: Plan, result: RunResult) -> list[str]:
        what = "init-cmd" if self._init_failed else "command"
        stopped = (launcher_mount.recorded_reason(plan.env.get(RESULT_DIR_ENV), since=self._started_at)
                   if self._launcher_version else "")
        if stopped and not result.timed_out and not result.start_error:
            # the launcher ended the job itself ("walltime exceeded (60 s)"): that is the news, not its exit code
            codes = [c for c in result.exit_codes if c]
            head = f"{stopped}: the job's launcher stopped it" + (f" (exit code {codes[0]})" if codes else "")
        elif result.timed_out:
            head = (f"walltime exceeded: the job was killed after its walltime of {plan.walltime:g} s of run time"
                    if plan.walltime > 0 and not result.reason else "walltime exceeded")
        elif result.start_error:
            head = f"the {what} could not be started: {result.start_error}"
        elif len(result.exit_codes) > 1:
            failed = result.failed_ranks
            first = failed[0] if failed else 0
            head = (f"{len(failed)} of {len(result.exit_codes)} ranks failed; rank {first} "
                    f"{describe_exit(result.exit_codes[first])}")
        else:
            code = result.exit_codes[0] if result.exit_codes else None
            head = f"the {what} {describe_exit(code)}"
            if code is not None and code >= 0:
                head += f" (exit code {code})"
        errors = [head] + ([result.reason] if result.reason else [])
        if result.stderr_tail:
            errors.append(f"last {len(result.stderr_tail)} stderr line(s):")
            errors.extend(result.stderr_tail)
        return errors

    @staticmethod
    def _read_output(output_file: Path) -> list[Any]:
        """The job's output: JSON written to $POLLINATOR_OUTPUT_FILE (a list, or one value), else []."""
        if not output_file.exists():
            return []
        text = output_file.read_text(encoding="utf-8").strip()
        if not text:
            return []
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"$POLLINATOR_OUTPUT_FILE does not hold JSON: {exc}") from None
        return value if isinstance(value, list) else [value]
