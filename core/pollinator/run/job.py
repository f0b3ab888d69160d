"""What to run: job options -> function spec -> submission.

:class:`Job` is "what to run" (its options, its spec, its submission);
``Job.submit()`` records a :class:`pollinator.run.handle.ProcessHandle`,
"a process that exists", which follows, waits, cancels and fetches results.
The CLI, the Airflow operator/trigger and the Prefect task all drive these
two; none of them talks to ColonyOS or S3 on its own.

Deprecated delegations, kept so callers move at their own pace: ``Job.attach``
(use :meth:`ProcessHandle.attach`), ``Job.bind``, and the process methods on a
job (``follow``, ``afollow``, ``wait``, ``cancel``, ``is_final``,
``fetch_results``, ``result``, ``finish``): use ``job.handle``'s.
``Job.run``/``Job.arun`` (submit, then watch and finish the handle) stay.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional, Sequence

from pollinator.colonies import crypto
from pollinator.colonies.models import FunctionSpec, Log, Process, ProcessState
from pollinator.config import Settings
from pollinator.errors import ProjectError, UsageError
from pollinator.run.build import (
    PLACEHOLDER_EXECUTOR_TYPE,
    PLACEHOLDER_RUN_ID,
    PLACEHOLDER_SNAPSHOT,
    PLACEHOLDER_TOKEN,
    RUN_ID_ENV,
    RunContext,
    build_job_spec,
    fill,
    launcher_files,
)
from pollinator.run.build import latest_label as options_latest_label
from pollinator.run.build import result_label as options_result_label
from pollinator.run import layout
from pollinator.run.discovery import Discovery
from pollinator.run.handle import Connections, LogHandler, ProcessHandle, result_label_of
from pollinator.run.options import JobOptions
from pollinator.run.pinned import input_snapshots
from pollinator.run.result import JobResult
from pollinator.run.resume import RESUMABLE, find_resumable, is_resumable
from pollinator.run.token import find_by_token
from pollinator import spec as specs

if TYPE_CHECKING:
    from pollinator.cfs import CFS
    from pollinator.colonies.client import ColoniesClient
    from pollinator.project import Project

log = logging.getLogger(__name__)

REATTACHABLE = RESUMABLE  # deprecated name: see pollinator.run.resume
DRY_RUN_SNAPSHOT = PLACEHOLDER_SNAPSHOT  # deprecated name


class Job:
    """What to run: options -> spec -> submit. Not thread-safe; cheap to create.

    After :meth:`submit`, :attr:`handle` is the submitted (or re-attached)
    process; it shares this job's connections, and closing either closes them.
    """

    def __init__(self, settings: Settings, options: Optional[JobOptions] = None, *, token: Optional[str] = None,
                 project: Optional["Project"] = None, process_id: Optional[str] = None):
        self.settings = settings
        self._preview: Optional[FunctionSpec] = None
        self._preview_files: bool = False  # whether the cached preview mounts run files
        # small per-run files (name -> bytes), uploaded into this run's own label at submit and mounted
        # read-only at $POLLINATOR_RUN_FILES/<name> (see pollinator.run.layout); set before submit()
        self.run_files: dict[str, bytes] = {}
        self._options = options
        self.project = project
        self.token = token
        self.run_id = ""  # minted by submit(); a re-attach takes the process's own
        self.attached = False  # True when submit() found an earlier process with our token
        # the executor type submit sends when the options leave it to the named executors (run.discovery);
        # decided by discover(), shown as a placeholder until then
        self.executor_type: Optional[str] = None
        self.connections = Connections(settings)
        self.handle: Optional[ProcessHandle] = None
        if process_id:
            self._bind_handle(process_id)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_project(cls, project_dir: Path | str, settings: Settings, *, token: Optional[str] = None,
                     **overrides: Any) -> "Job":
        """A job from a Go-pollinator project (project.yaml + cfs/src, cfs/data, cfs/result)."""
        from pollinator.project import load_project

        project = load_project(project_dir)
        return cls(settings, project.job_options(**overrides), token=token, project=project)

    @classmethod
    def inline(cls, settings: Settings, *, token: Optional[str] = None, **fields: Any) -> "Job":
        """A job from plain arguments: adapters need no project.yaml."""
        return cls(settings, JobOptions.build(**{k: v for k, v in fields.items() if v is not None}), token=token)

    @classmethod
    def attach(cls, settings: Settings, process_id: str, *, result_dir: Optional[Path] = None,
               result_label: str = "") -> "Job":
        """Deprecated: use :meth:`ProcessHandle.attach`. A job with no options standing for ``process_id``."""
        job = cls(settings, None)
        job.handle = ProcessHandle(settings, process_id, result_dir=result_dir, result_label=result_label,
                                   connections=job.connections)
        job.attached = True
        return job

    def bind(self, process_id: str) -> "Job":
        """Deprecated: make this job stand for an existing process (submit() becomes a no-op)."""
        self._bind_handle(process_id)
        self.attached = True
        return self

    def _bind_handle(self, process_id: str, process: Optional[Process] = None) -> ProcessHandle:
        """The handle of ``process_id``; what it knows of the run comes from our options when we have them."""
        # the process's own spec says where its results are (a re-attached process may be another job's)
        label = result_label_of(process) if process is not None else ""
        label = label or (self.result_label if self.options is not None and self.run_id else "")
        result_dir = self.options.result_dir if self.options is not None else None
        self.handle = ProcessHandle(self.settings, process_id, result_dir=result_dir, result_label=label,
                                    run_id=self.run_id, process=process, connections=self.connections)
        return self.handle

    @staticmethod
    def find_existing(settings: Settings, token: str) -> Optional[Process]:
        """The process an earlier submission with this token created, if any."""
        with settings.client() as client:
            return find_by_token(client, token)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def options(self) -> Optional[JobOptions]:
        """What to run (None for a deprecated :meth:`attach`-ed job)."""
        return self._options

    @options.setter
    def options(self, value: Optional[JobOptions]) -> None:
        self._options, self._preview = value, None  # a new "what" is a new spec

    @property
    def client(self) -> "ColoniesClient":
        return self.connections.client

    @property
    def cfs(self) -> "CFS":
        return self.connections.cfs

    @property
    def process_id(self) -> Optional[str]:
        return self.handle.process_id if self.handle is not None else None

    @property
    def process(self) -> Optional[Process]:
        return self.handle.process if self.handle is not None else None

    def close(self) -> None:
        """Close the clients and S3 pools (shared with :attr:`handle`)."""
        self.connections.close()

    async def aclose(self) -> None:
        await self.connections.aclose()

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
            raise UsageError("this job was attached by process id; it has no options to submit")
        return self.options

    @property
    def result_label(self) -> str:
        """Where this run's results land: its own label, only it writes there (see pollinator.run.layout)."""
        if self.options is None or (self.handle is not None and not self.run_id):
            return self._require_handle().result_label
        return options_result_label(self.options, self.run_id or PLACEHOLDER_RUN_ID)

    @property
    def latest_label(self) -> str:
        """The shared "latest successful" label the run's results are added to after success."""
        return options_latest_label(self._opts)

    @property
    def result_dir(self) -> Optional[Path]:
        if self.options is None:
            return self._require_handle().result_dir
        return self.options.result_dir

    # -- the spec ------------------------------------------------------------------------
    def preview(self) -> FunctionSpec:
        """The spec with placeholders for what only submit knows; what ``funcspec`` and ``--dry-run`` print.

        Built once per job (the options are frozen) and checked: a bad value
        raises :class:`ProjectError` before anything is written, uploaded or sent.
        """
        layout.check_run_files(self.run_files)
        if self._preview is None or self._preview_files != bool(self.run_files):
            ctx = RunContext(token=PLACEHOLDER_TOKEN if self.token is not None else None)
            self._preview_files = bool(self.run_files)
            self._preview = build_job_spec(self.settings.colony_name, self._opts, ctx,
                                           run_files=self._preview_files)
        return self._preview

    def spec(self, snapshot_id: Optional[str] = DRY_RUN_SNAPSHOT, input_snapshots: Optional[dict[str, str]] = None,
             staged: Optional[layout.Staged] = None) -> FunctionSpec:
        """The spec as it is sent: :meth:`preview` with the values known so far filled in.

        ``staged``: the run's own snapshots (src, data, run files) from :func:`pollinator.run.layout.stage`.
        """
        token = self.token if self.token not in (None, PLACEHOLDER_TOKEN) else None
        if staged is not None:
            snapshot_id = staged.src_snapshot or snapshot_id
        ctx = RunContext(run_id=self.run_id or PLACEHOLDER_RUN_ID, snapshot_id=snapshot_id or PLACEHOLDER_SNAPSHOT,
                         input_snapshots=dict(input_snapshots or {}), token=token,
                         executor_type=self.executor_type or PLACEHOLDER_EXECUTOR_TYPE)
        if staged is not None:
            ctx = replace(ctx, data_snapshot_id=staged.data_snapshot or ctx.data_snapshot_id,
                          files_snapshot_id=staged.files_snapshot or ctx.files_snapshot_id)
        return fill(self.preview(), ctx, self._opts.inputs)

    # -- submit --------------------------------------------------------------------------
    def submit(self, reattach: bool = True, *, earlier_tokens: Sequence[Optional[str]] = ()) -> str:
        """Stage the run's own src/data/run files and snapshots, submit; returns the process id.

        Records :attr:`handle`.

        With a token, a process submitted earlier with the same token (or one
        of ``earlier_tokens``: an earlier try's, newest first) that is waiting,
        running or succeeded is re-attached instead (the caller crashed after
        submitting); a failed or cancelled one is submitted anew. The rule is
        :mod:`pollinator.run.resume`'s. ``reattach=False`` skips the lookup
        when the caller has just minted the token, so nothing can carry it yet.
        """
        if self.handle is not None:
            return self.handle.process_id
        o = self._opts
        self.preview()  # validate everything before the first byte moves
        if reattach:
            existing = find_resumable(self.client, [self.token, *earlier_tokens])
            if existing is not None:
                log.info("re-attaching to process %s submitted earlier (%s)", existing.processid,
                         ProcessState(existing.state).name)
                self.run_id = (existing.spec.env or {}).get(RUN_ID_ENV, "")
                self.attached = True
                return self._bind_handle(existing.processid, existing).process_id
        self.discover()
        self.run_id = crypto.random_id()
        # this run's own src/data/run files, pinned in labels only it writes (see pollinator.run.layout)
        staged = layout.stage(self.cfs, o.name, self.run_id, src_dir=o.src_dir, data_dir=o.data_dir)
        # the run files, with the launcher built now that the run id and src snapshot are known
        ctx = RunContext(run_id=self.run_id, snapshot_id=staged.src_snapshot or PLACEHOLDER_SNAPSHOT)
        files = {**self.run_files, **launcher_files(o, ctx)}
        if files:
            staged = replace(staged, files_snapshot=layout.stage(self.cfs, o.name, self.run_id,
                                                                 run_files=files).files_snapshot)
        input_snaps = input_snapshots(self.cfs, o.inputs)
        spec = self.spec(input_snapshots=input_snaps, staged=staged)
        process = self.client.submit(spec)
        log.info("submitted process %s", process.processid)
        return self._bind_handle(process.processid, process).process_id

    def discover(self) -> Optional[Discovery]:
        """Look the job's executors up before anything is uploaded (see :mod:`pollinator.run.discovery`).

        Decides :attr:`executor_type`: the named executors' type when the job
        left the default (the preview's ``<executor type>``), fails fast
        (ProjectError) naming what is registered when the server could never
        assign the process, and logs a warning for options a known executor
        family mishandles. A colony that will not list its executors to this
        key is not checked: the job's own type is sent.
        """
        from pollinator.errors import ColoniesError
        from pollinator.run.discovery import discover, type_from_names

        o = self._opts
        self.executor_type = o.executor_type
        try:
            registered = self.client.get_executors() or []
        except ColoniesError as exc:
            log.info("executors not checked before submitting (the colony did not list them: %s)", exc)
            return None
        found = discover(registered, colony=self.settings.colony_name, names=o.executor_names,
                         executor_type=o.executor_type,
                         type_is_default=type_from_names(o.executor_names, o.executor_type),
                         rebuild_image=o.rebuild_image, image=o.image)
        self.executor_type = found.executor_type
        for warning in found.warnings:
            log.warning("%s", warning)
        return found

    def _require_handle(self) -> ProcessHandle:
        if self.handle is None:
            raise UsageError("the job has not been submitted yet: call submit() first")
        return self.handle

    def _require_id(self) -> str:
        return self._require_handle().process_id

    # -- deprecated delegations to the handle ----------------------------------------------
    def follow(self, since: Optional[int] = None, deadline: Optional[float] = None, **pacing: float) -> Iterator[Log]:
        """Deprecated: ``job.handle.follow``."""
        return self._require_handle().follow(since, deadline, **pacing)

    def afollow(self, since: Optional[int] = None, **pacing: float) -> AsyncIterator[Log]:
        """Deprecated: ``job.handle.afollow``."""
        return self._require_handle().afollow(since, **pacing)

    def wait(self, timeout: Optional[float] = None, poll: float = 0.5) -> Process:
        """Deprecated: ``job.handle.wait``."""
        return self._require_handle().wait(timeout, poll)

    def cancel(self) -> None:
        """Deprecated: ``job.handle.cancel``."""
        self._require_handle().cancel()

    def is_final(self) -> bool:
        """Deprecated: ``job.handle.is_final``."""
        return self.handle is not None and self.handle.is_final()

    def fetch_results(self) -> list[str]:
        """Deprecated: ``job.handle.fetch_results``."""
        return self._require_handle().fetch_results()

    def result(self) -> JobResult:
        """Deprecated: ``job.handle.result``."""
        return self._require_handle().result()

    def finish(self) -> JobResult:
        """Wait for the end, fetch results on SUCCESS, return the result (JobFailed otherwise).

        Subclasses add to the outcome here (a remote function's return value).
        """
        return self._require_handle().finish()

    # -- all of it -----------------------------------------------------------------------
    def run(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None,
            on_submit: Optional[Callable[[str], Any]] = None) -> JobResult:
        """Submit (or re-attach), stream logs to ``on_log``, wait, fetch results; raise JobFailed unless SUCCESS.

        Any exception while waiting (Ctrl-C, a timeout, a cancelled task)
        cancels the remote process before it propagates: no job is left
        running on the cluster that nobody waits for.
        """
        self.submit()
        handle = self._require_handle()
        if on_submit:
            on_submit(handle.process_id)
        handle.watch(on_log, timeout)
        return self.finish()

    async def arun(self, on_log: Optional[LogHandler] = None, timeout: Optional[float] = None,
                   on_submit: Optional[Callable[[str], Any]] = None) -> JobResult:
        """:meth:`run` for asyncio callers; uploads and downloads run in a worker thread."""
        import asyncio  # here, not at the top: the sync CLI should not pay asyncio's import

        await asyncio.to_thread(self.submit)
        handle = self._require_handle()
        if on_submit:
            on_submit(handle.process_id)
        await handle.awatch(on_log, timeout)
        return await asyncio.to_thread(self.finish)

    def _cancel_quietly(self) -> None:
        """Cancel whatever this job submitted, even if submit() was interrupted before learning the id."""
        if self.handle is None and self.token:
            # interrupted inside submit(): the server may have created the process before we learnt its id
            try:
                found = find_by_token(self.client, self.token)
            except Exception as exc:
                log.warning("could not look for a process submitted with this job's token: %s", exc)
                return
            if found is None or not is_resumable(found.state):
                return
            self._bind_handle(found.processid, found)
        if self.handle is not None:
            self.handle.cancel_quietly()
