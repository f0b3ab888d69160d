"""``@pollinator_task``: a Prefect task whose work runs as a ColonyOS job (Slurm or Kubernetes).

The adapter is deliberately thin. Each call builds one core :class:`pollinator.run.Job`
and runs it; everything Prefect-specific is only a translation:

* job options (executors, resources, ``inputs``...) go to the core job; every
  other keyword (``retries``, ``timeout_seconds``, ``task_run_name``...) goes to
  :func:`prefect.task` untouched;
* each remote log line goes to ``get_run_logger()`` as it arrives;
* a Prefect timeout, a cancelled flow run (``TerminationSignal``) or any other
  exception while waiting cancels the remote process (``Job.run``/``Job.arun``
  do that in their ``except BaseException``);
* the client token (see :mod:`pollinator_prefect.token`) makes a restarted
  attempt re-attach and a retry resubmit;
* a link artifact points at the dashboard, a markdown artifact lists the results.

Two forms:

``@pollinator_task(...)`` (``kind="function"``)
    the decorated function's *body* runs remotely with JSON arguments; the
    task returns its JSON return value. The source is captured here, at
    decoration (see :mod:`pollinator.run.remote`), so ``flow.serve()`` and
    ``deploy()``, which rebuild the function without its file, still ship it.
    Module globals the body reads travel only as the core's rule allows
    (literal data that does not look like a credential; ``ship=[...]`` for
    anything else on purpose).
``@pollinator_task(..., kind="command")``
    the function runs locally and returns the command (a string, or a list:
    command then arguments) to run in the project environment; the task
    returns the :class:`~pollinator.run.JobResult`, whose ``return_value`` is
    the JSON the command wrote to ``$POLLINATOR_RETURN`` (if any).

A :class:`~pollinator.errors.ProjectError` or :class:`~pollinator.errors.ConfigError`
(bad input, source unavailable, a refused global) is not retried: no retry
can fix it. A cancelled flow run says in its log that the ColonyOS process
was cancelled too.

A plain ``def`` becomes a sync task and an ``async def`` an async task, so a
sync caller never receives a coroutine.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union, cast

from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from prefect.tasks import Task

from pollinator.config import Settings
from pollinator.errors import ConfigError, JobFailed, PollinatorError, ProjectError
from pollinator.run import Job, JobResult, remote_function_job
from pollinator.run.options import OPTION_NAMES
from pollinator.run.remote import FunctionSource, capture, refuse_function_options
from pollinator_prefect import artifacts
from pollinator_prefect import assets as assets_module
from pollinator_prefect.credentials import ColonyOSCredentials
from pollinator_prefect.token import client_token

Kind = Literal["function", "command"]
Credentials = Union[ColonyOSCredentials, str, None]
PathLike = Union[str, Path]


def resolve_settings(credentials: Credentials) -> Settings:
    """A block, a saved block's name, or (None) the ``COLONIES_*``/``AWS_S3_*`` environment.

    A local ``pollinator dev`` colony is used only when ``POLLINATOR_DEV_DIR`` names it (an explicit
    opt-in): a worker with no ``COLONIES_*`` variables fails naming them, it does not guess.
    """
    if credentials is None:
        from pollinator.dev.colony import discover_settings

        return discover_settings(default_dir=False)
    if isinstance(credentials, str):
        # Prefect's async_dispatch takes _sync and then returns the block, never a coroutine; its typing knows neither
        block = ColonyOSCredentials.load(credentials, _sync=True)  # type: ignore[call-arg]
        return cast(ColonyOSCredentials, block).get_settings()
    return credentials.get_settings()


async def aresolve_settings(credentials: Credentials) -> Settings:
    if isinstance(credentials, str):
        block: ColonyOSCredentials = await ColonyOSCredentials.aload(credentials)  # Self is lost in inject_client
        return block.get_settings()
    return resolve_settings(credentials)


@dataclass(frozen=True)
class _Remote:
    """What one decorated function turns into: the job options, bound once at decoration time."""

    func: Callable[..., Any]
    kind: Kind
    job_name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    project_dir: Optional[Path] = None
    credentials: Credentials = None
    source: Optional[FunctionSource] = None  # kind="function": captured at decoration
    source_error: str = ""  # why it could not be captured (raised when the task runs)
    assets: list[Any] = field(default_factory=list)  # Prefect assets it materializes (pollinator_prefect.assets)

    def job(self, settings: Settings, args: tuple, kwargs: dict, command: Any, token: Optional[str]) -> Job:
        """The one core Job for this call."""
        if self.kind == "function":
            if self.source is None:
                raise ProjectError(self.source_error or f"{self.func.__name__}: no source was captured")
            return remote_function_job(settings, self.func, args, kwargs, name=self.job_name, token=token,
                                       source=self.source, **self.options)
        cmd, cmd_args = _split_command(command, self.func)
        extra = {"args": cmd_args} if cmd_args is not None else {}
        if self.project_dir is not None:
            return Job.from_project(self.project_dir, settings, token=token, cmd=cmd, **extra, **self.options)
        return Job.inline(settings, token=token, name=self.job_name, cmd=cmd, **extra, **self.options)


def _plain(value: Any) -> Any:
    """An argument as the frozen core options take it: mappings and sequences copied, paths as paths."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, PurePath):
        return Path(value)
    return value


def _is_usage_error(state: Any) -> bool:
    return isinstance(getattr(state, "data", None), (ProjectError, ConfigError))


def _no_retry_for_usage_errors(user_condition: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    """Prefect's ``retry_condition_fn``: a ProjectError/ConfigError is final; otherwise the user's rule (or retry).

    Prefect calls it only if ``inspect.isfunction``, hence plain functions.
    """
    if user_condition is None:
        def no_retry_for_usage_errors(task: Any, task_run: Any, state: Any) -> bool:
            return not _is_usage_error(state)

        return no_retry_for_usage_errors

    if inspect.iscoroutinefunction(user_condition):
        async def ano_retry_for_usage_errors_then_user(task: Any, task_run: Any, state: Any) -> Any:
            if _is_usage_error(state):
                return False
            return await user_condition(task, task_run, state)

        return ano_retry_for_usage_errors_then_user

    def no_retry_for_usage_errors_then_user(task: Any, task_run: Any, state: Any) -> Any:
        if _is_usage_error(state):
            return False
        return user_condition(task, task_run, state)

    return no_retry_for_usage_errors_then_user


def _split_command(command: Any, func: Callable[..., Any]) -> tuple[str, Optional[list[str]]]:
    if isinstance(command, str) and command.strip():
        return command, None
    if isinstance(command, (list, tuple)) and command and all(isinstance(c, str) for c in command):
        return command[0], list(command[1:])
    raise ProjectError(f"{func.__name__} must return the command to run (a non-empty string, or a list of "
                       f"strings: command then arguments), not {type(command).__name__}")


class _Attempt:
    """One attempt of one task run: its logger, token and the callbacks handed to ``Job.run``."""

    def __init__(self, remote: _Remote, settings: Settings, args: tuple, kwargs: dict):
        ctx = TaskRunContext.get()
        self.remote = remote
        self.settings = settings
        self.logger = get_run_logger()
        parameters = ctx.parameters if ctx is not None else {"args": args, "kwargs": kwargs}
        self.token = client_token(remote.func, parameters, ctx)
        self.job: Optional[Job] = None

    def on_log(self, text: str) -> None:
        self.logger.info("%s", text)

    def on_submit(self, process_id: str) -> None:
        url = self.settings.process_url(process_id)
        how = "Re-attached to" if self.job is not None and self.job.attached else "Submitted"
        self.logger.info("%s ColonyOS process %s%s", how, process_id, f" ({url})" if url else "")
        shipped = getattr(self.job, "shipped_globals", ())
        if shipped:  # names only, never values (see pollinator.run.remote)
            self.logger.info("Shipped module globals with %s: %s", self.remote.job_name, ", ".join(shipped))
        artifacts.safely(artifacts.link_to_process, self.remote.job_name, process_id, url)

    def finished(self, result: JobResult) -> Any:
        artifacts.safely(artifacts.publish_result, self.remote.job_name, result)
        assets_module.record_materialization(self.remote.assets, result)
        self.logger.info("ColonyOS process %s ended %s after %s s with %d result file(s)", result.process_id,
                         result.state, f"{result.seconds:.1f}" if result.seconds is not None else "?",
                         len(result.result_files))
        return result.return_value if self.remote.kind == "function" else result

    def failed(self, exc: JobFailed) -> None:
        result = exc.result if isinstance(exc.result, JobResult) else None
        artifacts.safely(artifacts.publish_result, self.remote.job_name, result)

    def interrupted(self, exc: BaseException) -> None:
        """The wait was cut short (flow run cancelled, task timeout...): the core cancelled the process; say so."""
        if isinstance(exc, PollinatorError) or self.job is None or not self.job.process_id:
            return
        why = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        self.logger.warning("Cancelling ColonyOS process %s: the task run was interrupted (%s)",
                            self.job.process_id, why)


def _sync_body(remote: _Remote) -> Callable[..., Any]:
    @functools.wraps(remote.func)
    def run_remotely(*args: Any, **kwargs: Any) -> Any:
        settings = resolve_settings(remote.credentials)
        attempt = _Attempt(remote, settings, args, kwargs)
        command = remote.func(*args, **kwargs) if remote.kind == "command" else None
        with remote.job(settings, args, kwargs, command, attempt.token) as job:
            attempt.job = job
            try:
                result = job.run(on_log=attempt.on_log, on_submit=attempt.on_submit)
            except JobFailed as exc:
                attempt.failed(exc)
                raise
            except BaseException as exc:
                attempt.interrupted(exc)
                raise
            return attempt.finished(result)

    return run_remotely


def _async_body(remote: _Remote) -> Callable[..., Any]:
    @functools.wraps(remote.func)
    async def run_remotely(*args: Any, **kwargs: Any) -> Any:
        settings = await aresolve_settings(remote.credentials)
        attempt = _Attempt(remote, settings, args, kwargs)
        command = await remote.func(*args, **kwargs) if remote.kind == "command" else None
        job = remote.job(settings, args, kwargs, command, attempt.token)
        attempt.job = job
        try:
            result = await job.arun(on_log=attempt.on_log, on_submit=attempt.on_submit)
        except JobFailed as exc:
            attempt.failed(exc)
            raise
        except BaseException as exc:
            attempt.interrupted(exc)
            raise
        finally:
            job.close()
        return attempt.finished(result)

    return run_remotely


def pollinator_task(
    fn: Optional[Callable[..., Any]] = None,
    /,
    *,
    kind: Kind = "function",
    credentials: Credentials = None,
    project_dir: Optional[PathLike] = None,
    job_name: Optional[str] = None,
    image: Optional[str] = None,
    executor_names: Optional[Sequence[str]] = None,
    executor_type: Optional[str] = None,
    nodes: Optional[int] = None,
    processes_per_node: Optional[int] = None,
    cpu: Union[str, int, float, None] = None,
    mem: Union[str, int, None] = None,
    gpu_count: Optional[int] = None,
    gpu_name: Optional[str] = None,
    walltime: Union[int, str, None] = None,
    inputs: Union[Mapping[str, str], Sequence[str], None] = None,
    env: Optional[Mapping[str, str]] = None,
    init_cmd: Optional[str] = None,
    src_dir: Optional[PathLike] = None,
    data_dir: Optional[PathLike] = None,
    result_dir: Optional[PathLike] = None,
    max_retries: Optional[int] = None,
    staging_allowance: Union[int, str, None] = None,
    priority: Optional[int] = None,
    rebuild_image: Optional[bool] = None,
    source: Optional[str] = None,
    result_label: Optional[str] = None,
    ship: Sequence[str] = (),
    assets: Sequence[Any] = (),
    launcher: Optional[bool] = None,
    **task_options: Any,
) -> Any:
    """Make a Prefect task that runs as a ColonyOS job.

    Args:
        kind: ``"function"`` runs the function body remotely and returns its
            JSON value; ``"command"`` runs the function locally to get the
            command and returns the ``JobResult``.
        credentials: a ``ColonyOSCredentials`` block, the name of a saved one,
            or None to read ``COLONIES_*``/``AWS_S3_*`` from the environment
            (resolved at run time, not at import).
        project_dir: a Go-pollinator project (``project.yaml`` + ``cfs/``);
            ``kind="command"`` only. Its settings are the defaults; the
            options given here override them.
        job_name: the core's ``name`` option, the ColonyOS project name (label
            ``/pollinator/<job_name>/...``); defaults to the function name with
            ``_`` as ``-``. It keeps this name here because ``name=`` is
            Prefect's own (the task's name, passed to :func:`prefect.task`).
        image ... result_label: the core job options, by the core's names (see
            :class:`pollinator.run.JobOptions`); ``None`` keeps the project's
            value or the core's default. ``cmd``/``args`` are what a
            ``kind="command"`` function returns; ``kind="function"`` sets
            ``source``/``src_dir`` itself. ``result_dir`` is where results are
            downloaded; without it they stay in ColonyFS (the result label is in
            the artifact) and nothing is left on the worker.
        ship: module globals the function body reads that should be uploaded
            even though the implicit rule refuses them (e.g. a value that
            looks like a credential); ``kind="function"`` only.
        assets: Prefect assets (``pollinator_prefect.assets.colonyfs_asset``) this task materializes: on
            success each gets the pinned result (snapshot id, files, ``input``) as metadata (see
            :mod:`pollinator_prefect.assets`); ``asset_deps=`` (a task option) names upstream ones.
        **task_options: passed to :func:`prefect.task` (``retries``,
            ``timeout_seconds``, ``task_run_name``, ``tags``...).
    """
    if kind not in ("function", "command"):
        raise ValueError(f"kind={kind!r}: use 'function' (the body runs remotely) or 'command'")
    if project_dir is not None and kind != "command":
        raise ValueError("project_dir needs kind='command': a project runs the command the function returns")
    arguments = locals()  # the core's options by their own names (OPTION_NAMES): no second list to keep
    options = {k: _plain(arguments[k]) for k in OPTION_NAMES if arguments.get(k) is not None}
    if not options.get("inputs", True):  # no inputs given: a project keeps its own
        del options["inputs"]
    if kind == "function":
        refuse_function_options("@pollinator_task(kind='function')", options)
    if ship and kind != "function":
        raise ValueError("ship= lists module globals uploaded with a function; it needs kind='function'")
    task_options["retry_condition_fn"] = _no_retry_for_usage_errors(task_options.get("retry_condition_fn"))

    def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
        captured, source_error = None, ""  # (not the ``source`` option: the function's own source)
        if kind == "function":
            try:
                captured = capture(func, ship)
            except ProjectError as exc:  # raised when the task runs: importing the flow module must not fail
                source_error = str(exc)
        remote = _Remote(func=func, kind=kind, job_name=job_name or func.__name__.replace("_", "-"),
                         options=options, project_dir=Path(project_dir) if project_dir is not None else None,
                         credentials=credentials, source=captured, source_error=source_error, assets=list(assets))
        body = _async_body(remote) if inspect.iscoroutinefunction(func) else _sync_body(remote)
        return assets_module.make_task(body, list(assets), task_options)

    if fn is not None:
        return decorate(fn)
    return decorate
