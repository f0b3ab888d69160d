"""The one run pipeline: sync up, snapshot, build the spec, submit, follow, wait, bring results home.

The CLI, the Airflow operator/trigger and the Prefect task all drive a
:class:`Job`; none of them talks to ColonyOS or S3 on its own.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Optional

from pollinator.colonies import crypto
from pollinator.colonies.models import (
    ConflictResolution,
    FunctionSpec,
    Log,
    OnClose,
    Process,
    ProcessState,
    SnapshotMount,
    SyncDirMount,
)
from pollinator.config import Settings
from pollinator.errors import JobFailed, JobTimeout, ProjectError
from pollinator.run.follow import afollow_logs, follow_logs
from pollinator.run.options import JobOptions
from pollinator.run.result import JobResult
from pollinator.run.token import TOKEN_ENV, find_by_token, token_label
from pollinator import spec as specs

log = logging.getLogger(__name__)

LogHandler = Callable[[str], Any]
# A process with our token in one of these states is ours to follow; a FAILED or
# CANCELLED one was a finished attempt, and submitting again is what a retry means.
REATTACHABLE = (ProcessState.WAITING, ProcessState.RUNNING, ProcessState.SUCCESS)
DRY_RUN_SNAPSHOT = "<snapshot>"


class Job:
    """One ColonyOS process, from submission to results. Not thread-safe; cheap to create."""

    def __init__(self, settings: Settings, options: Optional[JobOptions] = None, *, token: Optional[str] = None,
                 project=None, process_id: Optional[str] = None):
        self.settings = settings
        self.options = options
        self.project = project
        self.token = token
        self.process_id: Optional[str] = process_id
        self.process: Optional[Process] = None
        self.attached = False  # True when submit() found an earlier process with our token
        self._client = None
        self._cfs = None
        self._last_log_ts = 0
        # for attached jobs (no options): where results go, and the label they come from if known
        self._attached_result_dir: Optional[Path] = None
        self._attached_result_label = ""

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_project(cls, project_dir: Path | str, settings: Settings, *, token: Optional[str] = None,
                     **overrides: Any) -> "Job":
        """A job from a Go-pollinator project (project.yaml + cfs/src, cfs/data, cfs/result)."""
        from pollinator.project import load_project

        project = load_project(project_dir)
        c, e = project.conditions, project.environment
        root = project.root
        fields: dict[str, Any] = dict(
            name=project.project_name, cmd=e.cmd or "", image=e.docker, init_cmd=e.init_cmd,
            rebuild_image=e.rebuild_image, source=e.source, executor_names=c.executor_names,
            executor_type=c.executor_type, nodes=c.nodes, processes_per_node=c.processes_per_node, cpu=c.cpu,
            mem=c.mem, gpu_count=c.gpu.count, gpu_name=c.gpu.name, walltime=c.walltime,
            src_dir=root / "cfs" / "src", data_dir=root / "cfs" / "data", result_dir=root / "cfs" / "result")
        fields.update({k: v for k, v in overrides.items() if v is not None})
        if not fields["cmd"]:
            raise ProjectError(f"{project.path}: environment.cmd is empty: set the command to run, e.g. python3")
        return cls(settings, JobOptions.build(**fields), token=token, project=project)

    @classmethod
    def inline(cls, settings: Settings, *, token: Optional[str] = None, **fields: Any) -> "Job":
        """A job from plain arguments: adapters need no project.yaml."""
        return cls(settings, JobOptions.build(**{k: v for k, v in fields.items() if v is not None}), token=token)

    @classmethod
    def attach(cls, settings: Settings, process_id: str, *, result_dir: Optional[Path] = None,
               result_label: str = "") -> "Job":
        """Pick up a process submitted earlier (by us, another run, or another system)."""
        job = cls(settings, None, process_id=process_id)
        job._attached_result_dir = Path(result_dir) if result_dir else None
        job._attached_result_label = result_label
        job.attached = True
        return job

    def bind(self, process_id: str) -> "Job":
        """Make this job stand for an existing process: submit() becomes a no-op, results use our options."""
        self.process_id, self.process, self.attached = process_id, None, True
        return self

    @staticmethod
    def find_existing(settings: Settings, token: str) -> Optional[Process]:
        """The process an earlier submission with this token created, if any."""
        with settings.client() as client:
            return find_by_token(client, token)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    @property
    def cfs(self):
        if self._cfs is None:
            from pollinator.cfs import CFS

            self._cfs = CFS(self.client, self.settings.require_s3())
        return self._cfs

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._cfs = None

    def __enter__(self) -> "Job":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        name = self.options.name if self.options else "?"
        return f"Job(name={name!r}, process_id={self.process_id!r})"

    @property
    def labels(self) -> specs.ProjectLabels:
        return specs.labels(self._opts.name)

    @property
    def _opts(self) -> JobOptions:
        if self.options is None:
            raise ProjectError("this job was attached by process id; it has no options to submit")
        return self.options

    @property
    def result_label(self) -> str:
        if self.options is None:
            if self._attached_result_label:
                return self._attached_result_label
            process = self.process or self.client.get_process(self._require_id())
            for mount in process.spec.fs.dirs or []:
                if mount.label.endswith("/result"):
                    return mount.label
            return ""
        return self.options.result_label or self.labels.result

    @property
    def result_dir(self) -> Optional[Path]:
        if self.options is None:
            return self._attached_result_dir
        return self.options.result_dir

    # -- the spec ------------------------------------------------------------------------
    def spec(self, snapshot_id: Optional[str] = DRY_RUN_SNAPSHOT, input_snapshots: Optional[dict[str, str]] = None
             ) -> FunctionSpec:
        """The function spec; with the default placeholder ids nothing is uploaded or submitted."""
        o = self._opts
        has_src = bool(o.src_dir and Path(o.src_dir).is_dir())
        snap = snapshot_id if has_src else None
        args = list(o.args)
        if o.source:
            if not has_src:
                raise ProjectError(f"source={o.source!r} needs a src_dir holding it")
            args = [specs.source_path(o.name, snapshot_id or DRY_RUN_SNAPSHOT, o.source), *args]
        env = dict(o.env)
        mounts: list[SnapshotMount] = []
        run_key = snapshot_id if snapshot_id and snapshot_id != DRY_RUN_SNAPSHOT else "<run>"
        for name, label in o.inputs.items():
            snap_id = (input_snapshots or {}).get(name, f"<snapshot of {label}>")
            rel = f"{specs.LABEL_ROOT}/{o.name}/{run_key}/inputs/{name}"
            mounts.append(SnapshotMount(snapshotid=snap_id, label=label, dir=rel, keepfiles=False,
                                        keepsnapshot=False))
            env[f"POLLINATOR_INPUT_{name.upper()}"] = f"{specs.CFS_MOUNT}{rel}"
        result_label = self.result_label
        extra_dirs = []
        if o.result_label and o.result_label != self.labels.result:
            # results go back through a sync dir that keeps the executor's files on close, as Go's result dir
            extra_dirs.append(SyncDirMount(label=result_label, dir=result_label, keepfiles=False,
                                           onconflicts=ConflictResolution(onclose=OnClose(keeplocal=True))))
        env["POLLINATOR_RESULT_DIR"] = f"{specs.CFS_MOUNT}{result_label}"
        if self.token:
            env[TOKEN_ENV] = self.token
        spec = specs.build_spec(
            self.settings.colony_name, project_name=o.name, snapshot_id=snap, image=o.image, cmd=o.cmd, args=args,
            env=env, executor_names=o.executor_names, executor_type=o.executor_type, nodes=o.nodes,
            processes_per_node=o.processes_per_node, cpu=o.cpu, mem=o.mem, gpu_count=o.gpu_count,
            gpu_name=o.gpu_name, walltime=o.walltime, init_cmd=o.init_cmd, rebuild_image=o.rebuild_image,
            extra_snapshot_mounts=mounts, extra_sync_dirs=extra_dirs, max_retries=o.max_retries,
            priority=o.priority, label=token_label(self.token) if self.token else specs.GO_LABEL)
        return spec

    # -- submit --------------------------------------------------------------------------
    def submit(self, reattach: bool = True) -> str:
        """Upload src/data, snapshot src, submit; returns the process id.

        With a token, a process submitted earlier with the same token that is
        waiting, running or succeeded is re-attached instead (the caller
        crashed after submitting); a failed or cancelled one is submitted anew.
        ``reattach=False`` skips that lookup (five calls) when the caller has
        just minted the token, so nothing can carry it yet.
        """
        if self.process_id:
            return self.process_id
        o = self._opts
        self.spec()  # validate everything before the first byte moves
        if self.token and reattach:
            existing = find_by_token(self.client, self.token)
            if existing is not None and existing.state in REATTACHABLE:
                log.info("re-attaching to process %s submitted earlier with the same token", existing.processid)
                self.process_id, self.process, self.attached = existing.processid, existing, True
                return existing.processid
        labels = self.labels
        snapshot_id = None
        if o.src_dir and Path(o.src_dir).is_dir():
            self.cfs.sync(Path(o.src_dir), labels.src, keep_local=True)
            snapshot_id = self.cfs.create_snapshot(labels.src, crypto.random_id()).snapshotid
        if o.data_dir and Path(o.data_dir).is_dir():
            self.cfs.sync(Path(o.data_dir), labels.data, keep_local=True)
        input_snaps = {name: self.cfs.create_snapshot(label, crypto.random_id()).snapshotid
                       for name, label in o.inputs.items()}
        spec = self.spec(snapshot_id or DRY_RUN_SNAPSHOT, input_snaps)
        process = self.client.submit(spec)
        self.process_id, self.process = process.processid, process
        log.info("submitted process %s", process.processid)
        return process.processid

    # -- follow / wait -----------------------------------------------------------------
    def _require_id(self) -> str:
        if not self.process_id:
            raise ProjectError("the job has not been submitted yet: call submit() first")
        return self.process_id

    def follow(self, since: Optional[int] = None, deadline: Optional[float] = None, **pacing: float) -> Iterator[Log]:
        """Live log lines until the process is final (TimeoutError past ``deadline``, a monotonic time).

        ``pacing`` tunes polling (``min_interval``, ``max_interval``, ``age_fraction``...; see
        :mod:`pollinator.run.follow`), e.g. ``**follow.INTERACTIVE`` for a person waiting at a terminal.
        """
        follower = follow_logs(self.client, self._require_id(), self._last_log_ts if since is None else since,
                               deadline=deadline, **pacing)
        for line in follower:
            self._last_log_ts = follower.last_timestamp
            yield line
        self.process = follower.process

    async def afollow(self, since: Optional[int] = None, **pacing: float) -> AsyncIterator[Log]:
        """:meth:`follow` for asyncio callers (same ``pacing`` knobs)."""
        async with self.settings.async_client() as aclient:
            follower = afollow_logs(aclient, self._require_id(), self._last_log_ts if since is None else since,
                                    **pacing)
            async for line in follower:
                self._last_log_ts = follower.last_timestamp
                yield line
            self.process = follower.process

    def wait(self, timeout: Optional[float] = None, poll: float = 0.5) -> Process:
        """Block until the process is final (raises JobTimeout after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(0.05, poll)  # short jobs end fast; long ones settle at `poll`
        while True:
            self.process = self.client.get_process(self._require_id())
            if ProcessState(self.process.state).is_final:
                return self.process
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"process {self.process_id} not finished after {timeout:.0f} s",
                                 process_id=self.process_id or "", state=ProcessState(self.process.state).name)
            time.sleep(interval)
            interval = min(poll, interval * 1.5)

    def cancel(self) -> None:
        """Cancel the remote process (no-op when it is already final)."""
        pid = self._require_id()
        process = self.client.get_process(pid)
        if not ProcessState(process.state).is_final:
            self.client.cancel_process(pid)
            log.info("cancelled process %s", pid)

    def is_final(self) -> bool:
        if not self.process_id:
            return False
        self.process = self.client.get_process(self.process_id)
        return ProcessState(self.process.state).is_final

    # -- results --------------------------------------------------------------------------
    def fetch_results(self) -> list[str]:
        """Download the result label into result_dir; returns the result files (relative paths)."""
        label, target = self.result_label, self.result_dir
        if not label:
            return []
        names = self._label_files(label)
        if target is not None and names:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.cfs.pull(label, Path(target))
        return names

    def _label_files(self, label: str) -> list[str]:
        names = []
        for lab in self.client.get_file_labels(label, exact=False):
            if lab.name != label and not lab.name.startswith(label + "/"):
                continue  # prefix match also returns /x/result2
            rel = lab.name[len(label):].strip("/")
            names.extend(f"{rel}/{f.name}" if rel else f.name for f in self.client.get_files(lab.name))
        return sorted(names)

    def result(self) -> JobResult:
        process = self.process or self.client.get_process(self._require_id())
        executor = ""
        if process.assignedexecutorid:
            names = {e.executorid: e.executorname for e in self.client.get_executors() or []}
            executor = names.get(process.assignedexecutorid, "")
        return JobResult.from_process(process, result_label=self.result_label,
                                      result_dir=str(self.result_dir or ""),
                                      dashboard_url=self.settings.process_url(process.processid), executor=executor)

    # -- all of it -----------------------------------------------------------------------
    def run(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None,
            on_submit: Optional[Callable[[str], Any]] = None) -> JobResult:
        """Submit (or re-attach), stream logs to ``on_log``, wait, fetch results; raise JobFailed unless SUCCESS.

        Any exception while waiting (Ctrl-C, a timeout, a cancelled task)
        cancels the remote process before it propagates: no job is left
        running on the cluster that nobody waits for.
        """
        self.submit()
        if on_submit:
            on_submit(self._require_id())
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if on_log is None:  # nobody reads the lines: just wait for the end
                self.wait(timeout=timeout)
            else:
                for line in self.follow(deadline=deadline):
                    _emit(on_log, line)
        except (TimeoutError, JobTimeout):
            self._cancel_quietly()
            raise JobTimeout(f"process {self.process_id} exceeded the client timeout of {timeout:.0f} s",
                             process_id=self.process_id or "", state="RUNNING") from None
        except BaseException:
            self._cancel_quietly()
            raise
        return self.finish()

    async def arun(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None,
                   on_submit: Optional[Callable[[str], Any]] = None) -> JobResult:
        """:meth:`run` for asyncio callers; uploads and downloads run in a worker thread."""
        import asyncio  # here, not at the top: the sync CLI should not pay asyncio's import

        await asyncio.to_thread(self.submit)
        if on_submit:
            on_submit(self._require_id())
        async def _stream() -> None:
            async for line in self.afollow():
                _emit(on_log, line)

        try:
            await asyncio.wait_for(_stream(), timeout)
        except BaseException as exc:
            await asyncio.to_thread(self._cancel_quietly)
            if isinstance(exc, TimeoutError):
                raise JobTimeout(f"process {self.process_id} exceeded the client timeout of {timeout:.0f} s",
                                 process_id=self.process_id or "", state="RUNNING") from None
            raise
        return await asyncio.to_thread(self.finish)

    def _cancel_quietly(self) -> None:
        if not self.process_id and self.token:
            # interrupted inside submit(): the server may have created the process before we learnt its id
            try:
                found = find_by_token(self.client, self.token)
            except Exception as exc:
                log.warning("could not look for a process submitted with this job's token: %s", exc)
                return
            if found is None or found.state not in REATTACHABLE:
                return
            self.process_id = found.processid
        if not self.process_id:
            return
        try:
            self.cancel()
        except Exception as exc:  # the original error matters more; say what we could not do
            log.warning("could not cancel process %s: %s", self.process_id, exc)

    def finish(self) -> JobResult:
        """Wait for the end, fetch results on SUCCESS, and return the result (JobFailed otherwise).

        For a caller that already streamed the logs elsewhere (an Airflow
        trigger) and only needs the outcome: no log line is read again.
        """
        process = self.wait()
        files: list[str] = []
        if process.state == ProcessState.SUCCESS:
            files = self.fetch_results()
        result = self.result().model_copy(update={"result_files": files})
        if not result.ok:
            detail = "; ".join(result.errors) or "no error message from the executor"
            raise JobFailed(f"process {result.process_id} ended {result.state}: {detail}",
                            process_id=result.process_id, state=result.state, errors=result.errors, result=result)
        return result


def _emit(on_log: Optional[LogHandler], line: Log) -> None:
    if on_log is None:
        return
    for text in line.message.splitlines() or [""]:
        on_log(text)
