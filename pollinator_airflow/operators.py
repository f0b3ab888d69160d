"""``PollinatorOperator``: one Airflow task = one ColonyOS job, through ``pollinator.run.Job``.

Everything ColonyOS-specific (spec building, ColonyFS sync, submission,
following logs, fetching results) is the core's; this module only maps
Airflow's idioms onto it:

* template fields and connection ids -> ``Job.inline`` / ``Job.from_project`` arguments;
* the task log <- the remote log lines (``job.run(on_log=...)``);
* XCom <- ``JobResult.to_xcom()``, plus ``process_id`` as soon as it is known;
* ``deferrable=True`` -> submit here, then ``PollinatorTrigger`` waits in the triggerer;
* crash safety: Airflow 3.3's ``ResumableJobMixin`` keeps the process id in the
  ``task_state_store`` so a retried or restarted task re-attaches to its running
  process. Where that store is missing (Airflow < 3.3), the core's client token
  (``dag/task/run/map_index/try``) still makes one try's submission idempotent,
  and the previous try's token is looked up so a worker that died between
  submit and record does not cause a second process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

from airflow.sdk import BaseOperator, conf

from pollinator.run.options import OPTION_NAMES, adopt_renamed
from pollinator_airflow.links import PROCESS_URL_KEY, PollinatorProcessLink

try:  # the category Airflow's own deprecation filters and docs use for providers
    from airflow.exceptions import AirflowProviderDeprecationWarning as _DEPRECATION
except ImportError:  # pragma: no cover - an Airflow without it
    _DEPRECATION = DeprecationWarning  # type: ignore[assignment,misc]

try:  # Airflow 3.3+
    from airflow.sdk import ResumableJobMixin
except ImportError:  # pragma: no cover - Airflow 3.0-3.2: no task_state_store, token-only fallback
    class ResumableJobMixin:  # type: ignore[no-redef]
        """Stand-in: every try submits (made idempotent per try by the client token)."""

        external_id_key = "remote_job_id"

        def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.durable = False

        def execute_resumable(self, context: Any) -> Any:
            external_id = self.submit_job(context)  # type: ignore[attr-defined]
            self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]
            return self.get_job_result(external_id, context)  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context
    from pollinator.config import Settings
    from pollinator.run import Job, JobResult, ProcessHandle

    from pollinator_airflow.hooks import PollinatorHook

STATE_NAMES = ("WAITING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
PROCESS_ID_KEY = "process_id"


def client_token(context: "Context", try_number: Optional[int] = None) -> str:
    """The core's idempotency token for this task instance try."""
    ti = context["ti"]
    try_number = ti.try_number if try_number is None else try_number
    map_index = getattr(ti, "map_index", -1)
    return f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{-1 if map_index is None else map_index}/{try_number}"


def failure_message(process_id: str, state: str, errors: Sequence[str]) -> str:
    """One message carrying the remote errors, so the Airflow UI shows why without opening logs."""
    detail = "; ".join(e.strip() for e in errors if e and e.strip()) or "no error message from the executor"
    return f"ColonyOS process {process_id} ended {state}: {detail}"


class PollinatorOperator(ResumableJobMixin, BaseOperator):
    """Run a command (or a ``project.yaml`` project) as a ColonyOS job and wait for it.

    Give either ``project_dir`` (a Pollinator project; the inline options then
    override its ``project.yaml``) or ``cmd`` with the inline options. The job
    options are the core's :class:`pollinator.run.JobOptions`, by the same names
    (``None``: the project's value, else the core's default); every one is templated.

    :param project_dir: directory with ``project.yaml`` and ``cfs/{src,data,result}``.
    :param name: the job's name, the label component ``/pollinator/<name>/...`` (default: the task id;
        ``job_name=`` is its deprecated old name).
    :param cmd: command to run. :param args: its arguments. :param image: container image.
    :param env: environment of the remote process. :param init_cmd: shell command run before ``cmd``.
    :param rebuild_image: ask the executor to rebuild the image first.
    :param source: a file in ``src_dir`` passed to ``cmd`` as its first argument (project.yaml's ``source``).
    :param executor_names: executors that may run it. :param executor_type: or any executor of this type
        (left out with ``executor_names``: the named executors' type, looked up at submit).
    :param nodes: number of nodes. :param processes_per_node: processes (MPI ranks) per node.
    :param cpu: CPU request: cores (``4``, ``"2.5"``) or millicores (``"4000m"``); sent as millicores.
    :param mem: memory request, e.g. ``"8Gi"``, ``"512M"``; sent as ``Mi``/``Gi``.
    :param gpu_count: number of GPUs (``gpu=`` is its deprecated old name). :param gpu_name: GPU model.
    :param walltime: seconds (or ``"2h"``, ``"HH:MM:SS"``) the job may run (run time: queueing and staging
        do not count). :param staging_allowance: seconds the job may spend queued and staging on top of
        ``walltime`` (default ``$POLLINATOR_STAGING_ALLOWANCE`` or 600; 0 = the Go tool's deadlines; docs/hpc.md).
    :param max_retries: how often the Colonies server re-queues a failed attempt (not Airflow's ``retries``,
        which re-run the task). :param priority: the process's priority in the colony's queue.
    :param inputs: ``{name: value}`` of earlier results mounted into this job: a label (its latest files,
        e.g. another task's ``result_label`` XCom), ``label@snapshot_id`` (exactly that snapshot's files,
        e.g. the ``pin_record()["input"]``), or a ``colonyfs://`` asset (the snapshot of the asset event that
        triggered this run, else the label). Inputs are added to the task's ``inlets``.
    :param outlets: ``colonyfs://<colony>/<result label>`` assets (:func:`pollinator_airflow.assets.colonyfs_asset`)
        get an asset event on success whose ``extra`` pins the run's result snapshot.
    :param src_dir: a directory on the worker uploaded as the job's ``src`` (snapshotted per run).
    :param data_dir: a directory on the worker uploaded as the job's ``data``.
    :param result_dir: where the result files are downloaded on the worker (``None``: not downloaded;
        downstream jobs read the result label through ``inputs=``).
    :param result_label: the shared "latest" ColonyFS label the results are added to after success
        (default ``/pollinator/<name>/result``).
    :param launcher: ``False`` sends cmd/args/env raw instead of through Pollinator's launcher script
        (which survives every executor's templating and records the real exit code; docs/executors/).
    :param colonies_conn_id: the ``colonies`` connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poll_interval: seconds between polls while the remote process is quiet (deferrable mode).
    :param log_checkpoint_interval: deferrable mode, for triggerers without Airflow 3.3's XCom API (where the
        trigger keeps its log cursor as an XCom, see docs/airflow.md): every this many seconds of log lines
        the task resumes briefly on a worker and defers again with the cursor, so a triggerer restart
        repeats at most that much of the log (0: never).
    :param durable: re-attach to the process of an earlier try (Airflow 3.3 ``task_state_store``).
    """

    # the core's option names, read from JobOptions: no second list to drift
    template_fields: Sequence[str] = ("project_dir", *OPTION_NAMES)
    template_fields_renderers = {"env": "json", "inputs": "json", "args": "py", "cmd": "bash", "init_cmd": "bash"}
    operator_extra_links = (PollinatorProcessLink(),)
    ui_color = "#f6c945"
    external_id_key = "pollinator_process_id"
    _requires_command = True
    # set in __init__ from OPTION_NAMES like every option; declared for the ones this class reads itself
    name: Optional[str]
    inputs: Optional[Mapping[str, Union[str, "Asset"]]]
    result_dir: Optional[str]

    def __init__(
        self,
        *,
        project_dir: Optional[str] = None,
        name: Optional[str] = None,
        cmd: Optional[str] = None,
        args: Optional[list[str]] = None,
        image: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
        init_cmd: Optional[str] = None,
        rebuild_image: Optional[bool] = None,
        source: Optional[str] = None,
        executor_names: Optional[list[str]] = None,
        executor_type: Optional[str] = None,
        nodes: Optional[int] = None,
        processes_per_node: Optional[int] = None,
        cpu: Union[str, int, float, None] = None,
        mem: Union[str, int, None] = None,
        gpu_count: Optional[int] = None,
        gpu_name: Optional[str] = None,
        walltime: Union[int, str, None] = None,
        max_retries: Optional[int] = None,
        staging_allowance: Union[int, str, None] = None,
        priority: Optional[int] = None,
        inputs: Optional[Mapping[str, Union[str, "Asset"]]] = None,
        src_dir: Optional[str] = None,
        data_dir: Optional[str] = None,
        result_dir: Optional[str] = None,
        result_label: Optional[str] = None,
        launcher: Optional[bool] = None,
        colonies_conn_id: str = "colonies_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 2.0,
        log_checkpoint_interval: float = 0.0,
        job_name: Optional[str] = None,  # deprecated: name=
        **kwargs: Any,
    ) -> None:
        owner = getattr(self, "custom_operator_name", None) or type(self).__name__  # "@task.pollinator"
        renamed = adopt_renamed(owner, {"name": name, "job_name": job_name,
                                                      "gpu_count": gpu_count, "gpu": kwargs.pop("gpu", None)},
                                category=_DEPRECATION, stacklevel=4)
        super().__init__(**kwargs)
        if self._requires_command and not project_dir and not cmd:
            raise ValueError(f"{type(self).__name__} {self.task_id!r}: give project_dir= or cmd=")
        self.project_dir = project_dir
        given = dict(locals())
        for option in OPTION_NAMES:  # every core option is an attribute of the same name (templated)
            setattr(self, option, renamed[option] if option in renamed else given[option])
        self.colonies_conn_id = colonies_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.log_checkpoint_interval = log_checkpoint_interval
        self._hook: Optional["PollinatorHook"] = None
        self._job: Optional["Job"] = None
        self._attached: Optional["ProcessHandle"] = None
        self._result: Optional["JobResult"] = None
        self._inputs_now: Optional[dict[str, str]] = None  # inputs with colonyfs assets resolved (submit time)
        self._colony_name: Optional[str] = None
        self._input_mounts: dict[str, tuple[str, str]] = {}  # what the finished process mounted (for lineage)
        self.process_id: Optional[str] = None

    @property
    def job_name(self) -> Optional[str]:
        """Deprecated: the old name of :attr:`name`."""
        return self.name

    # -- plumbing ----------------------------------------------------------------------------------------
    @property
    def hook(self) -> "PollinatorHook":
        if self._hook is None:
            from pollinator_airflow.hooks import PollinatorHook

            self._hook = PollinatorHook(self.colonies_conn_id)
        return self._hook

    def _settings(self) -> "Settings":
        from airflow.sdk.exceptions import AirflowFailException
        from pollinator.errors import ConfigError

        try:
            return self.hook.get_settings()
        except ConfigError as exc:  # retrying cannot fix a bad connection
            raise AirflowFailException(str(exc)) from None

    def _options(self) -> dict[str, Any]:
        """The inline options the user set (rendered), in the core's names; unset ones keep the defaults."""
        options = {option: getattr(self, option) for option in OPTION_NAMES}
        if self._inputs_now is not None:  # colonyfs assets resolved at submit
            options["inputs"] = self._inputs_now
        return {k: v for k, v in options.items() if v is not None}

    def build_job(self, settings: "Settings", token: str, context: "Context") -> "Job":
        """The core job for this task (the TaskFlow decorator overrides this)."""
        from pollinator.run import Job

        options = self._options()
        options.setdefault("name", self.task_id)
        if self.project_dir:
            return Job.from_project(Path(self.project_dir), settings, token=token, **options)
        return Job.inline(settings, token=token, **options)

    def _result_dir(self) -> Optional[Path]:
        if self.result_dir:
            return Path(self.result_dir)
        return Path(self.project_dir) / "cfs" / "result" if self.project_dir else None

    def _handle(self, process_id: str) -> "ProcessHandle":
        """This task's handle of the process: its own submission's, else attached by id.

        An attached handle learns the result label and run id from the process's
        spec: nothing is rebuilt from the operator's arguments (no project.yaml
        read on the worker that finishes a deferred task).
        """
        if self._job is not None and self._job.handle is not None and self._job.process_id == process_id:
            return self._job.handle
        if self._attached is None or self._attached.process_id != process_id:
            from pollinator.run import ProcessHandle

            self._close()
            self._attached = ProcessHandle.attach(self._settings(), process_id, result_dir=self._result_dir())
        return self._attached

    def _close(self) -> None:
        """Close the clients and S3 pools of this task's job and handle."""
        for owner in (self._attached, self._job):
            if owner is not None:
                owner.close()
        self._attached = None

    def _on_log(self, line: str) -> None:
        self.log.info("%s", line)

    def _announce(self, process_id: str, context: "Context") -> None:
        """Make the process id visible at once: XCom, the extra link, the task log."""
        self.process_id = process_id
        ti = context["ti"]
        ti.xcom_push(key=PROCESS_ID_KEY, value=process_id)
        url = self._settings().process_url(process_id)
        if url:
            ti.xcom_push(key=PROCESS_URL_KEY, value=url)
            ti.xcom_push(key=PollinatorProcessLink().xcom_key, value=url)
        # the URL ends the line, nothing glued to it: Airflow's log viewer links it (a ")" would join the link)
        self.log.info("ColonyOS process %s%s", process_id, f" - dashboard: {url}" if url else "")

    def _outcome(self, process_id: str, on_log: Any) -> "JobResult":
        """Follow the process (or just wait), then its result; the remote errors go into the Airflow exception."""
        from airflow.sdk.exceptions import AirflowException
        from pollinator.errors import JobFailed, PollinatorError

        handle = self._handle(process_id)
        try:
            handle.watch(on_log)
            own = self._job is not None and self._job.handle is handle
            return self._job.finish() if own and self._job is not None else handle.finish()
        except JobFailed as exc:
            raise AirflowException(failure_message(exc.process_id or process_id, exc.state or "FAILED",
                                                   exc.errors or [str(exc)])) from None
        except PollinatorError as exc:
            raise AirflowException(f"ColonyOS process {process_id}: {exc}") from None

    def xcom_value(self, result: "JobResult", context: "Context") -> Any:
        """What the task returns to XCom (the decorator returns the function's value instead)."""
        return result.to_xcom()

    # -- ResumableJobMixin -----------------------------------------------------------------------------
    def submit_job(self, context: "Context") -> str:
        """Submit, or let the core re-attach to this try's or an earlier try's process (see pollinator.run.resume)."""
        from airflow.sdk.exceptions import AirflowFailException
        from pollinator.errors import ProjectError

        settings = self._settings()
        try:
            self._prepare_assets(settings, context)
            self._job = self.build_job(settings, client_token(context), context)
            self._check_outlets(settings)
        except (ProjectError, ValueError) as exc:  # bad options, a refused module global: no retry fixes it,
            raise AirflowFailException(str(exc)) from None  # nothing was sent
        process_id = self._job.submit(earlier_tokens=self._earlier_tokens(context))
        if self._job.attached:
            self.log.info("Re-attached to process %s submitted by this task earlier", process_id)
        self._announce(process_id, context)
        return process_id

    # -- assets (pollinator_airflow.assets) -------------------------------------------------------------
    def _prepare_assets(self, settings: "Settings", context: "Context") -> None:
        """colonyfs assets given as inputs -> the triggering snapshot (or the label); inputs become inlets."""
        from pollinator_airflow.assets import inlets_of, resolve_inputs

        self._colony_name = settings.colony_name
        self._inputs_now = resolve_inputs(self.inputs, context.get("triggering_asset_events"),
                                          settings.colony_name)
        known = {getattr(a, "uri", None) for a in self.inlets or []}
        self.inlets = [*(self.inlets or []), *(a for a in inlets_of(self._inputs_now, settings.colony_name)
                                               if a.uri not in known)]

    def _check_outlets(self, settings: "Settings") -> None:
        """A colonyfs outlet must be this job's result label in this colony: refused before anything is sent."""
        from pollinator_airflow.assets import outlet_labels

        from pollinator.spec import labels

        outlets = outlet_labels(self.outlets)
        if not outlets or self._job is None or self._job.options is None:
            return
        options = self._job.options  # the job's result label ("latest" with per-run results)
        wanted = {options.result_label or labels(options.name).result}
        for asset, colony, label in outlets:
            if colony != settings.colony_name or label not in wanted:
                raise ValueError(f"outlet {asset.uri}: this task writes its results to "
                                 f"colonyfs://{settings.colony_name}{sorted(wanted)[0]}; give that asset "
                                 "(or set result_label= to the asset's label)")

    def _emit_assets(self, result: "JobResult", context: "Context") -> None:
        """On success: each colonyfs outlet gets an event whose extra pins this run's result snapshot."""
        from pollinator.run.pinned import input_mounts

        from pollinator_airflow.assets import outlet_labels

        process = getattr(self._handle(result.process_id), "process", None)
        if process is not None:
            self._input_mounts = input_mounts(process.spec)

        outlets = outlet_labels(self.outlets)
        if not outlets or not result.ok or not result.result_snapshot_id:
            return
        if getattr(self, "_emitted_for", None) == result.process_id:
            return  # Airflow's resumable path fetches the result twice: one event, one log line
        self._emitted_for = result.process_id
        events = context.get("outlet_events")
        if events is None:
            self.log.warning("no outlet_events in the context: asset events not emitted")
            return
        record = result.pin_record()
        for asset, _colony, _label in outlets:
            events[asset].extra.update(record)
        self.log.info("Result snapshot %s (%d files) emitted to %s", result.result_snapshot_id,
                      record["files_total"], ", ".join(a.uri for a, _c, _l in outlets))

    # -- OpenLineage (called by apache-airflow-providers-openlineage when it is installed) ----------------
    def lineage(self) -> dict[str, list[dict[str, Any]]]:
        """The inputs this run mounted (from its spec) and its pinned result: see :mod:`pollinator_airflow.lineage`."""
        from pollinator_airflow.lineage import lineage_plan

        result = self._result
        record = result.pin_record() if result is not None and result.result_snapshot_id else None
        return lineage_plan(self._colony_name or "", self._input_mounts, record)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from pollinator_airflow.lineage import operator_lineage

        return operator_lineage(self.lineage())

    def _earlier_tokens(self, context: "Context") -> list[str]:
        """Every earlier try's token, newest first: a try whose worker died may have left its process running
        (and a try that re-attached to it submitted nothing under its own token)."""
        try_number = context["ti"].try_number or 1
        if not getattr(self, "durable", True):
            return []
        return [client_token(context, n) for n in range(try_number - 1, 0, -1)]

    def get_job_status(self, external_id: Any, context: "Context") -> str:
        from pollinator.errors import NotFound

        try:
            return self.hook.get_state(str(external_id))
        except NotFound:
            return "GONE"

    def is_job_active(self, status: str) -> bool:
        from pollinator.run.resume import is_active

        return status in STATE_NAMES and is_active(status)

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCESS"

    def poll_until_complete(self, external_id: Any, context: "Context") -> Any:
        process_id = str(external_id)
        if self.process_id != process_id:
            self._announce(process_id, context)  # the re-attach path skips submit_job
        self._result = self._outcome(process_id, self._on_log)
        self._emit_assets(self._result, context)
        return self.xcom_value(self._result, context)

    def get_job_result(self, external_id: Any, context: "Context") -> Any:
        if self._result is None or self._result.process_id != str(external_id):
            self.process_id = self.process_id or str(external_id)
            self._result = self._outcome(str(external_id), None)
        self._emit_assets(self._result, context)
        return self.xcom_value(self._result, context)

    # -- Airflow entry points --------------------------------------------------------------------------
    def execute(self, context: "Context") -> Any:
        try:
            if not self.deferrable:
                return self.execute_resumable(context)
            process_id, state = self._resume_or_submit(context)
            if state == "SUCCESS":
                return self.get_job_result(process_id, context)
            self._defer(process_id, since=0)
        finally:
            self._close()

    def _defer(self, process_id: str, since: int) -> None:
        """Hand the wait to the triggerer; ``since`` is the log cursor already shown in this task's log."""
        from pollinator_airflow.triggers import PollinatorTrigger

        self.defer(trigger=PollinatorTrigger(process_id=process_id, colonies_conn_id=self.colonies_conn_id,
                                             poll_interval=self.poll_interval, since=since,
                                             checkpoint_interval=self.log_checkpoint_interval),
                   method_name="execute_complete")

    def _resume_or_submit(self, context: "Context") -> tuple[str, str]:
        """The deferrable twin of ``execute_resumable``'s decision, on the same store key."""
        from pollinator.run.resume import is_resumable

        store = context.get("task_state_store") if getattr(self, "durable", False) else None
        if store is not None:
            stored = store.get(self.external_id_key)
            if stored:
                state = self.get_job_status(stored, context)
                if state in STATE_NAMES and is_resumable(state):
                    self.log.info("Re-attaching to process %s (%s) of an earlier try", stored, state)
                    self._announce(str(stored), context)
                    return str(stored), state
                self.log.warning("Process %s of an earlier try ended %s: submitting a new one", stored, state)
        process_id = self.submit_job(context)
        if store is not None:
            store.set(self.external_id_key, process_id)
        return process_id, "SUBMITTED"

    def execute_complete(self, context: "Context", event: dict[str, Any]) -> Any:
        """Back from the trigger: fetch the results, or fail with the remote errors."""
        from airflow.sdk.exceptions import AirflowException

        process_id = str(event.get("process_id") or "")
        self.process_id = process_id
        status = event.get("status")
        if status == "progress":  # a checkpoint: defer again, the cursor now stored with the trigger
            self._defer(process_id, since=int(event.get("last_timestamp") or 0))
        if status == "error":
            raise AirflowException(f"Following ColonyOS process {process_id} failed: {event.get('message')}")
        if status != "success":
            raise AirflowException(failure_message(process_id, str(event.get("state") or status).upper(),
                                                   event.get("errors") or []))
        try:
            return self.get_job_result(process_id, context)
        finally:
            self._close()

    def on_kill(self) -> None:
        """The task was killed (cleared, marked failed, timed out): cancel the remote process too."""
        if not self.process_id:
            return
        self.log.info("Cancelling ColonyOS process %s", self.process_id)
        try:  # through the hook's own client: on_kill runs beside execute, whose clients are not thread-safe
            self.hook.cancel(self.process_id)
        except Exception as exc:  # on_kill must not mask why the task is being killed
            self.log.warning("Could not cancel ColonyOS process %s: %s", self.process_id, exc)
