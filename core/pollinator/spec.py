"""Project or inline job -> :class:`FunctionSpec`, shaped exactly as the Go pollinator's ``CreateFuncSpec``.

Executors written for the Go tool (the container executors on Slurm and
Kubernetes) read these exact kwargs, mounts and labels, so the shape here is a
compatibility contract, pinned by golden tests:

* ``funcname`` ``execute``; the top-level ``args`` list stays empty and the
  command's arguments travel in ``kwargs.args``;
* ``kwargs``: ``args``, ``cmd``, ``docker-image``, ``init-cmd``, ``rebuild-image``;
* ``env.PROJECT_DIR`` = ``/cfs/pollinator/<project>``, the directory the
  executor syncs the project into (under ``fs.mount`` ``/cfs``);
* one snapshot mount of ``src`` (so a job sees the source as it was at
  submit time, even if the user edits it afterwards), then two sync dirs:
  ``result`` (the executor's copy wins on close, so results come back) and
  ``data`` (the server's copy wins, so inputs go in);
* ``maxwaittime`` -1, ``maxexectime`` walltime-1, ``maxretries`` 3,
  ``priority`` 5, and the label ``test_label`` the Go tool hard-codes.

Pollinator's own jobs (:mod:`pollinator.run.build`) change one rule, the
deadlines: with a staging allowance A (default 600 s), walltime W is W
seconds of run time (``env.POLLINATOR_WALLTIME``, kept by the launcher) and
``conditions.walltime`` = ``maxexectime`` = W + A, so queueing and staging do
not eat into W (docs/hpc.md, the deadline rule). :func:`spec_from_project`
keeps the Go tool's fields.

Where the Go tool sends what the real executors refuse (empty cpu/mem,
walltime 0 with maxexectime -1), the resource fields go through
:func:`pollinator.resources.resolve`: millicores, ``Mi``/``Gi``, explicit
defaults, and a one-day walltime for "no limit" (see docs/executors/).

Maps are built in sorted key order, which is how Go's ``encoding/json``
writes them, so :func:`spec_json` output is byte-comparable with Go's
``json.MarshalIndent`` (except that Go escapes ``<``, ``>`` and ``&``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from pollinator.colonies.models import (
    GPU,
    Conditions,
    ConflictResolution,
    Filesystem,
    FunctionSpec,
    OnClose,
    OnStart,
    SnapshotMount,
    SyncDirMount,
)
from pollinator.errors import ProjectError
from pollinator.launcher import WALLTIME_ENV
from pollinator.project import DEFAULT_EXECUTOR_TYPE, Project, check_name
from pollinator.resources import DEFAULT_MAX_RETRIES, ResourceError, resolve

FUNC_NAME = "execute"
CFS_MOUNT = "/cfs"
LABEL_ROOT = "/pollinator"
GO_LABEL = "test_label"  # what the Go tool puts in FunctionSpec.label
DEFAULT_PRIORITY = 5
MAX_WAIT_TIME = -1  # wait for an executor forever, as Go does
RUN_ID_ENV = "POLLINATOR_RUN_ID"  # the run's id, in every per-run spec
RESULT_DIR_ENV = "POLLINATOR_RESULT_DIR"  # where the job writes its results (the run's own result dir)
RUN_FILES_ENV = "POLLINATOR_RUN_FILES"  # the run's own small files (launcher, call file), read-only


@dataclass(frozen=True)
class ProjectLabels:
    """The ColonyFS labels of one project's three directories."""

    src: str
    data: str
    result: str


def labels(project_name: str) -> ProjectLabels:
    """``/pollinator/<p>/{src,data,result}``: where ``cfs/src|data|result`` live in ColonyFS."""
    name = _checked_name(project_name)
    base = f"{LABEL_ROOT}/{name}"
    return ProjectLabels(src=f"{base}/src", data=f"{base}/data", result=f"{base}/result")


def run_dir(project_name: str, run_id: str) -> str:
    """``/pollinator/<p>/runs/<run_id>``: where one run's own files live (its label, and its dir under ``/cfs``)."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ProjectError(f"run id {run_id!r} is not usable in a path")
    return f"{LABEL_ROOT}/{_checked_name(project_name)}/runs/{run_id}"


@dataclass(frozen=True)
class RunLabels:
    """One run's own labels ``/pollinator/<p>/runs/<run_id>/...``, which are also its directories on the executor.

    Only this run writes under them, so nothing another run uploads can change
    what this run executes (its ``src`` snapshot, ``data`` snapshot and ``files``)
    or returns (its ``result``). Executors share one fs dir between processes,
    so the run's directories there are per run too: ``$PROJECT_DIR`` is
    ``/cfs`` + :attr:`base`, and ``$PROJECT_DIR/data``, ``$PROJECT_DIR/result``
    and ``$PROJECT_DIR/<snapshot>/src`` keep the places a Go-style project uses.
    """

    base: str

    @property
    def src(self) -> str:
        return f"{self.base}/src"

    @property
    def data(self) -> str:
        return f"{self.base}/data"

    @property
    def result(self) -> str:
        return f"{self.base}/result"

    @property
    def files(self) -> str:
        return f"{self.base}/files"

    @property
    def project_dir(self) -> str:
        return f"{CFS_MOUNT}{self.base}"

    def src_dir(self, snapshot_id: str) -> str:
        return f"{self.base}/{_checked_snapshot(snapshot_id)}/src"

    def input_dir(self, name: str) -> str:
        return f"{self.base}/inputs/{name}"


def run_labels(project_name: str, run_id: str) -> RunLabels:
    """The labels of run ``run_id`` of project ``project_name`` (see :class:`RunLabels`)."""
    return RunLabels(base=run_dir(project_name, run_id))


@dataclass(frozen=True)
class RunMounts:
    """What :func:`build_spec` needs to lay a run out per run (see :class:`RunLabels`)."""

    run_id: str
    data_snapshot_id: Optional[str] = None
    files_snapshot_id: Optional[str] = None


def project_dir(project_name: str) -> str:
    """The project directory on the executor (``$PROJECT_DIR``)."""
    return f"{CFS_MOUNT}{LABEL_ROOT}/{_checked_name(project_name)}"


def source_path(project_name: str, snapshot_id: str, source: str, run_id: Optional[str] = None) -> str:
    """Where ``cfs/src/<source>`` appears on the executor: inside the mounted src snapshot."""
    if run_id is not None:
        return f"{CFS_MOUNT}{run_labels(project_name, run_id).src_dir(snapshot_id)}/{source}"
    return f"{project_dir(project_name)}/{_checked_snapshot(snapshot_id)}/src/{source}"


def build_spec(
    colony_name: str,
    *,
    project_name: str,
    snapshot_id: Optional[str],
    image: str = "",
    cmd: str = "",
    args: Sequence[Any] = (),
    env: Optional[Mapping[str, str]] = None,
    executor_names: Optional[Sequence[str]] = None,
    executor_type: str = DEFAULT_EXECUTOR_TYPE,
    nodes: int = 1,
    processes_per_node: int = 1,
    cpu: Union[str, int, float] = "",
    mem: Union[str, int] = "",
    gpu_count: int = 0,
    gpu_name: str = "",
    walltime: Union[int, str] = 0,
    init_cmd: str = "",
    rebuild_image: bool = False,
    extra_snapshot_mounts: Iterable[SnapshotMount] = (),
    extra_sync_dirs: Iterable[SyncDirMount] = (),
    label: str = GO_LABEL,
    max_retries: int = DEFAULT_MAX_RETRIES,
    priority: int = DEFAULT_PRIORITY,
    run: Optional[RunMounts] = None,
    staging_allowance: Union[int, str] = 0,
) -> FunctionSpec:
    """The one spec builder: projects and inline jobs both end here.

    ``args`` are the command's arguments (``kwargs.args``), not the spec's
    top-level ``args``. ``snapshot_id=None`` leaves out the src snapshot mount
    (an inline job with nothing in ``src``). ``env`` is added to
    ``PROJECT_DIR``, which it may not override. ``walltime`` is seconds (or a
    duration string, see :func:`pollinator.resources.parse_walltime`); 0 means
    no limit (sent as :data:`pollinator.resources.NO_LIMIT_WALLTIME`).
    ``staging_allowance`` A > 0 makes walltime W the job's run time
    (``env.POLLINATOR_WALLTIME`` = W, which the launcher keeps) and sends
    walltime = maxexectime = W + A (:func:`pollinator.resources.resolve`, the
    deadline rule); the default 0 sends the Go tool's fields. Empty
    cpu/mem get the documented defaults. Bad values raise :class:`ProjectError`
    naming the field before anything is sent.

    ``run=None`` gives the Go tool's exact spec (shared ``src`` snapshot,
    ``result`` and ``data`` sync dirs). With ``run`` every mount is the run's
    own (:class:`RunLabels`): the src snapshot, a data snapshot, the run files
    snapshot (``$POLLINATOR_RUN_FILES``) and a result sync dir
    (``$POLLINATOR_RESULT_DIR`` = ``$PROJECT_DIR/result``); ``POLLINATOR_RUN_ID``
    names the run.
    """
    name = _checked_name(project_name)
    lab = labels(name)
    try:
        res = resolve(cpu=cpu, mem=mem, walltime=walltime, max_retries=max_retries,
                      staging_allowance=staging_allowance)
    except ResourceError as exc:
        raise ProjectError(str(exc)) from None
    check_sizes(cmd=cmd, init_cmd=init_cmd, args=args, env=env)
    _at_least("nodes", nodes, 1)
    _at_least("processes_per_node", processes_per_node, 1)
    _at_least("gpu_count", gpu_count, 0)
    if not executor_type:
        raise ProjectError("executor_type is empty: give the type of executor to run on, e.g. container-executor")
    names = None if executor_names is None else [str(n) for n in executor_names]
    if names is not None and any(not n for n in names):
        raise ProjectError(f"executor_names {names!r} holds an empty name")

    rl = run_labels(name, run.run_id) if run is not None else None
    env_map = {"PROJECT_DIR": rl.project_dir if rl else project_dir(name)}
    if rl is not None and run is not None:
        env_map.update({RUN_ID_ENV: run.run_id, RESULT_DIR_ENV: f"{CFS_MOUNT}{rl.result}"})
        if run.files_snapshot_id is not None:
            env_map[RUN_FILES_ENV] = f"{CFS_MOUNT}{rl.files}"
    if res.run_time > 0:
        env_map[WALLTIME_ENV] = str(res.run_time)
    for key, value in (env or {}).items():
        if key == WALLTIME_ENV:
            raise ProjectError(f"env may not set {WALLTIME_ENV}: Pollinator sets it to the job's walltime "
                               "(give walltime instead)")
        if rl is not None and key in (RUN_ID_ENV, RESULT_DIR_ENV, RUN_FILES_ENV):
            raise ProjectError(f"env may not set {key}: Pollinator sets it to this run's own value")
        if key == "PROJECT_DIR":
            raise ProjectError("env may not set PROJECT_DIR: Pollinator sets it to where the project is synced")
        if not key or "=" in key or "\0" in key:
            raise ProjectError(f"env name {key!r} is not a valid environment variable name")
        env_map[str(key)] = str(value)

    snapshots: list[SnapshotMount] = []
    if rl is not None and run is not None:
        # the run's own dirs are removed after it (keepfiles false); the snapshots stay, pinning what it ran on
        if snapshot_id is not None:
            snapshots.append(SnapshotMount(snapshotid=_checked_snapshot(snapshot_id), label=rl.src,
                                           dir=rl.src_dir(snapshot_id), keepfiles=False, keepsnapshot=True))
        for snap_id, own in ((run.data_snapshot_id, rl.data), (run.files_snapshot_id, rl.files)):
            if snap_id is not None:
                snapshots.append(SnapshotMount(snapshotid=_checked_snapshot(snap_id), label=own, dir=own,
                                               keepfiles=False, keepsnapshot=True))
        snapshots.extend(extra_snapshot_mounts)
        dirs = [_sync_dir(rl.result, keepfiles=False, start_keeplocal=False, close_keeplocal=True),
                *extra_sync_dirs]
    else:
        if snapshot_id is not None:
            snap = _checked_snapshot(snapshot_id)
            snapshots.append(SnapshotMount(snapshotid=snap, label=lab.src, dir=f"{LABEL_ROOT}/{name}/{snap}/src",
                                           keepfiles=True, keepsnapshot=True))
        snapshots.extend(extra_snapshot_mounts)
        dirs = [
            _sync_dir(lab.result, keepfiles=False, start_keeplocal=False, close_keeplocal=True),
            _sync_dir(lab.data, keepfiles=True, start_keeplocal=False, close_keeplocal=False),
            *extra_sync_dirs,
        ]

    kwargs = {
        "args": list(args),
        "cmd": cmd,
        "docker-image": image,
        "init-cmd": init_cmd,
        "rebuild-image": bool(rebuild_image),
    }
    return FunctionSpec(
        nodename="",
        funcname=FUNC_NAME,
        args=[],
        kwargs=dict(sorted(kwargs.items())),
        priority=priority,
        maxwaittime=MAX_WAIT_TIME,
        maxexectime=res.maxexectime,
        maxretries=res.max_retries,
        conditions=Conditions(
            colonyname=colony_name,
            executornames=names,
            executortype=executor_type,
            dependencies=[],
            nodes=nodes,
            cpu=res.cpu,
            processespernode=processes_per_node,
            mem=res.mem,
            gpu=GPU(name=gpu_name, count=gpu_count),
            walltime=res.walltime,
        ),
        label=label,
        fs=Filesystem(mount=CFS_MOUNT, snapshots=snapshots, dirs=dirs),
        env=dict(sorted(env_map.items())),
    )


def spec_from_project(colony_name: str, project: Project, snapshot_id: str) -> FunctionSpec:
    """The spec the Go tool's ``pollinator run`` would submit for ``project`` and its src snapshot."""
    c, e = project.conditions, project.environment
    args = [source_path(project.project_name, snapshot_id, e.source)] if e.source else []
    return build_spec(
        colony_name,
        project_name=project.project_name,
        snapshot_id=snapshot_id,
        image=e.docker,
        cmd=e.cmd,
        args=args,
        executor_names=c.executor_names,
        executor_type=c.executor_type,
        nodes=c.nodes,
        processes_per_node=c.processes_per_node,
        cpu=c.cpu,
        mem=c.mem,
        gpu_count=c.gpu.count,
        gpu_name=c.gpu.name,
        walltime=c.walltime,
        init_cmd=e.init_cmd,
        rebuild_image=e.rebuild_image,
    )


def spec_json(spec: FunctionSpec, indent: int = 4) -> str:
    """The spec as JSON laid out like Go's ``json.MarshalIndent(spec, "", "    ")``."""
    return json.dumps(spec.to_wire(), indent=indent, ensure_ascii=False)


def _sync_dir(label: str, *, keepfiles: bool, start_keeplocal: bool, close_keeplocal: bool) -> SyncDirMount:
    return SyncDirMount(label=label, dir=label, keepfiles=keepfiles,
                        onconflicts=ConflictResolution(onstart=OnStart(keeplocal=start_keeplocal),
                                                       onclose=OnClose(keeplocal=close_keeplocal)))


def _checked_name(project_name: str) -> str:
    try:
        return check_name(project_name)
    except ValueError as exc:
        raise ProjectError(f"project_name: {exc}") from None


def _checked_snapshot(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not snapshot_id or "/" in snapshot_id or snapshot_id in (".", ".."):
        raise ProjectError(f"snapshot id {snapshot_id!r} is not usable in a path: it must be non-empty, without '/'")
    return snapshot_id


# Linux refuses to exec a single argument or variable over MAX_ARG_STRLEN (128 KiB) and a whole command line
# plus environment over ARG_MAX (2 MiB by default): such a job would be submitted, assigned and only then fail
# with "Argument list too long" on the cluster. Refuse it here, naming the field.
MAX_ARG_BYTES = 128 * 1024
MAX_COMMAND_BYTES = 1024 * 1024


def check_sizes(*, cmd: str, init_cmd: str, args: Sequence[Any], env: Optional[Mapping[str, str]]) -> None:
    items = [("cmd", str(cmd)), ("init_cmd", str(init_cmd))]
    items += [(f"args[{i}]", str(a)) for i, a in enumerate(args)]
    items += [(f"env {k}", f"{k}={v}") for k, v in (env or {}).items()]
    total = 0
    for name, text in items:
        size = len(text.encode("utf-8", "surrogatepass"))
        total += size
        if size > MAX_ARG_BYTES:
            raise ProjectError(f"{name} is {size} bytes: one argument or variable may hold at most "
                               f"{MAX_ARG_BYTES} bytes (Linux MAX_ARG_STRLEN); pass big data as a file in data_dir")
    if total > MAX_COMMAND_BYTES:
        biggest = max(items, key=lambda it: len(it[1]))[0].split("[")[0].split(" ")[0]
        raise ProjectError(f"cmd, init_cmd, args and env are {total} bytes together (largest: {biggest}): at most "
                           f"{MAX_COMMAND_BYTES} bytes fit a command line; pass big data as a file in data_dir")


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ProjectError(f"{name}={value!r}: must be an integer >= {low}")
