"""Job options + run context -> the function spec: one path for what is shown and what is sent.

``pollinator funcspec``, ``pollinator run --dry-run`` and the submission all
build the spec here, once, with placeholders for what only submit time knows
(the src snapshot id, the input snapshots, the run id, the client token, and
the executor type when it is the named executors', found by looking them up).
Submitting then fills those placeholders in (:func:`fill`); nothing else
changes between the preview a user reads and the spec the server stores.

The low-level Go-shaped builder is :func:`pollinator.spec.build_spec`; this
module decides what a Pollinator job adds to it (result dir, inputs, run id,
token, label). Every mount of a job is its run's own (``/pollinator/<name>/runs/<run_id>/``,
see :mod:`pollinator.run.layout`), so concurrent runs of one job never mix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from pollinator import spec as specs
from pollinator.colonies.models import FunctionSpec, SnapshotMount
from pollinator.errors import ProjectError
from pollinator.launcher import LAUNCHER_FILE, Launcher, spec_env
from pollinator.pins import parse_input
from pollinator.resources import DEFAULT_STAGING_ALLOWANCE, parse_staging_allowance
from pollinator.run import returns
from pollinator.run.discovery import type_from_names
from pollinator.run.exit_record import LAUNCHER_ENV
from pollinator.run.options import JobOptions
from pollinator.run.token import TOKEN_ENV, token_env_value, token_label

RUN_ID_ENV = specs.RUN_ID_ENV
RESULT_DIR_ENV = specs.RESULT_DIR_ENV
INPUT_ENV_PREFIX = "POLLINATOR_INPUT_"
LATEST_ENV = "POLLINATOR_LATEST_LABEL"  # the shared "latest successful" label the run is added to

PLACEHOLDER_SNAPSHOT = "<snapshot>"
PLACEHOLDER_DATA_SNAPSHOT = "<data snapshot>"
PLACEHOLDER_FILES_SNAPSHOT = "<run files snapshot>"
PLACEHOLDER_RUN_ID = "<run_id>"
PLACEHOLDER_TOKEN = "<token>"
PLACEHOLDER_TOKEN_LABEL = "pollinator:<token-hash>"
PLACEHOLDER_EXECUTOR_TYPE = "<executor type>"  # the named executors' type, looked up at submit (run.discovery)


def placeholder_input_snapshot(name: str) -> str:
    return f"<snapshot of input {name}>"


@dataclass(frozen=True)
class RunContext:
    """What only submit time knows; the defaults are the placeholders a preview shows.

    ``token=None``: the spec carries no client token (and the Go tool's label).
    ``executor_type``: what executor discovery decided to send, used only when the
    job names executors and leaves the type to them (:func:`type_from_names`).
    """

    run_id: str = PLACEHOLDER_RUN_ID
    snapshot_id: str = PLACEHOLDER_SNAPSHOT
    data_snapshot_id: str = PLACEHOLDER_DATA_SNAPSHOT
    files_snapshot_id: str = PLACEHOLDER_FILES_SNAPSHOT
    input_snapshots: Mapping[str, str] = field(default_factory=dict)
    token: Optional[str] = None
    executor_type: str = PLACEHOLDER_EXECUTOR_TYPE

    def input_snapshot(self, name: str) -> str:
        return self.input_snapshots.get(name) or placeholder_input_snapshot(name)

    @property
    def label(self) -> str:
        if self.token is None:
            return specs.GO_LABEL
        if self.token == PLACEHOLDER_TOKEN:
            return PLACEHOLDER_TOKEN_LABEL
        return token_label(self.token)

    def replacements(self, inputs: Mapping[str, str]) -> dict[str, str]:
        """placeholder -> value for every value this context knows (placeholders it keeps are left out)."""
        pairs = {PLACEHOLDER_RUN_ID: self.run_id, PLACEHOLDER_SNAPSHOT: self.snapshot_id,
                 PLACEHOLDER_DATA_SNAPSHOT: self.data_snapshot_id, PLACEHOLDER_FILES_SNAPSHOT: self.files_snapshot_id,
                 PLACEHOLDER_EXECUTOR_TYPE: self.executor_type}
        if self.token is not None:
            pairs[PLACEHOLDER_TOKEN] = token_env_value(self.token)  # the token only appears in the env
            pairs[PLACEHOLDER_TOKEN_LABEL] = self.label
        for name in inputs:
            pairs[placeholder_input_snapshot(name)] = self.input_snapshot(name)
        return {k: v for k, v in pairs.items() if k != v}


def result_label(options: JobOptions, run_id: str = PLACEHOLDER_RUN_ID) -> str:
    """Where the run's results go: its own label ``/pollinator/<name>/runs/<run_id>/result``."""
    return specs.run_labels(options.name, run_id).result


def latest_label(options: JobOptions) -> str:
    """The shared "latest successful" label: ``result_label`` if set, else the project's Go result label."""
    return options.result_label or specs.labels(options.name).result


def has_data(options: JobOptions) -> bool:
    """A data dir is mounted (as the run's own snapshot) whenever it exists, empty or not."""
    return bool(options.data_dir and Path(options.data_dir).is_dir())


def _command_args(o: JobOptions, ctx: RunContext, has_src: bool) -> list[str]:
    """The command's arguments: the project's ``source`` file (in the run's src snapshot) first, then ``args``."""
    args = list(o.args)
    if o.source:
        if not has_src:
            raise ProjectError(f"source={o.source!r} needs a src_dir holding it")
        args = [specs.source_path(o.name, ctx.snapshot_id, o.source, run_id=ctx.run_id), *args]
    return args


def launcher_files(options: JobOptions, ctx: RunContext) -> dict[str, bytes]:
    """The run file ``launch.sh`` (:mod:`pollinator.launcher`) built with ``ctx``'s real values; {} without it."""
    if not options.launcher:
        return {}
    has_src = bool(options.src_dir and Path(options.src_dir).is_dir())
    try:
        launcher = Launcher(cmd=options.cmd, args=_command_args(options, ctx, has_src), init_cmd=options.init_cmd,
                            env=options.env)
        return {LAUNCHER_FILE: launcher.data()}
    except ValueError as exc:
        raise ProjectError(f"cmd/args/init_cmd/env: {exc}") from None


def build_job_spec(colony_name: str, options: JobOptions, ctx: Optional[RunContext] = None, *,
                   run_files: bool = False) -> FunctionSpec:
    """The function spec of ``options`` for the run ``ctx`` (default: a preview, all placeholders).

    ``run_files``: the run has small files of its own (``Job.run_files``), mounted at
    ``$POLLINATOR_RUN_FILES``. With ``launcher`` (the default) one of them is
    ``launch.sh`` (:func:`launcher_files`): the spec's cmd is ``sh <it>`` and the
    command, args, init-cmd and env travel byte for byte in it, where no executor
    template changes them (docs/executors/); the spec's env keeps Pollinator's own
    variables and the user's template-safe values. Bad values raise
    :class:`ProjectError` naming the field, before anything is uploaded or sent.
    """
    o, ctx = options, ctx or RunContext()
    _refuse_placeholders(o)
    has_src = bool(o.src_dir and Path(o.src_dir).is_dir())
    run = specs.run_labels(o.name, ctx.run_id)
    args = _command_args(o, ctx, has_src)
    specs.check_sizes(cmd=o.cmd, init_cmd=o.init_cmd, args=args, env=o.env)  # the launcher's sh -c has them too
    env: dict[str, str] = {}  # Pollinator's own variables; the user's are added below
    mounts: list[SnapshotMount] = []
    for name, value in o.inputs.items():
        rel = run.input_dir(name)
        ref = parse_input(value)
        # a label's snapshot is made for this run and dropped after it; a pinned snapshot is someone's result
        # (another run's, an asset event's): mount it and keep it
        mounts.append(SnapshotMount(snapshotid=ref.snapshot_id or ctx.input_snapshot(name), label=ref.label,
                                    dir=rel, keepfiles=False, keepsnapshot=ref.is_pinned))
        env[f"{INPUT_ENV_PREFIX}{name.upper()}"] = f"{specs.CFS_MOUNT}{rel}"
    env[returns.RETURN_ENV] = returns.return_path(f"{specs.CFS_MOUNT}{run.result}")
    env[LATEST_ENV] = latest_label(o)
    if ctx.token is not None:
        env[TOKEN_ENV] = ctx.token if ctx.token == PLACEHOLDER_TOKEN else token_env_value(ctx.token)
    cmd, init_cmd = o.cmd, o.init_cmd
    if o.launcher:
        launcher_files(o, ctx)  # refuse now what cannot be written into it, not at submit
        path = f"{specs.CFS_MOUNT}{run.files}/{LAUNCHER_FILE}"
        cmd, args, init_cmd = f"sh {path}", [], ""
        env = {**spec_env(o.env), **env, LAUNCHER_ENV: path}
        run_files = True
    else:
        env = {**o.env, **env}
    mounts_of_run = specs.RunMounts(ctx.run_id, ctx.data_snapshot_id if has_data(o) else None,
                                    ctx.files_snapshot_id if run_files else None)
    executor_type = ctx.executor_type if type_from_names(o.executor_names, o.executor_type) else o.executor_type
    return specs.build_spec(
        colony_name, project_name=o.name, snapshot_id=ctx.snapshot_id if has_src else None, image=o.image,
        cmd=cmd, args=args, env=env, executor_names=o.executor_names, executor_type=executor_type,
        nodes=o.nodes, processes_per_node=o.processes_per_node, cpu=o.cpu, mem=o.mem, gpu_count=o.gpu_count,
        gpu_name=o.gpu_name, walltime=o.walltime, init_cmd=init_cmd, rebuild_image=o.rebuild_image,
        extra_snapshot_mounts=mounts, max_retries=o.max_retries, priority=o.priority, label=ctx.label,
        run=mounts_of_run, staging_allowance=staging_allowance(o))


STAGING_ALLOWANCE_VAR = "POLLINATOR_STAGING_ALLOWANCE"


def staging_allowance(options: JobOptions) -> int:
    """The job's queue/staging allowance in seconds: its own ``staging_allowance``, else
    ``$POLLINATOR_STAGING_ALLOWANCE`` (a site's default), else :data:`~pollinator.resources.DEFAULT_STAGING_ALLOWANCE`.

    A job run without the launcher (``launcher=False``) has nothing in it that keeps its run time on the
    ColonyOS executors, so unless it names an allowance itself it gets the Go tool's rule (0).
    """
    if options.staging_allowance is not None:
        return options.staging_allowance
    if not options.launcher:
        return 0
    raw = os.environ.get(STAGING_ALLOWANCE_VAR, "").strip()
    if not raw:
        return DEFAULT_STAGING_ALLOWANCE
    try:
        return parse_staging_allowance(raw)
    except ValueError as exc:
        raise ProjectError(f"{STAGING_ALLOWANCE_VAR}: {exc}") from None


def fill(preview: FunctionSpec, ctx: RunContext, inputs: Mapping[str, str] = {}) -> FunctionSpec:
    """The preview with ``ctx``'s known values in place of the placeholders (one pass, nothing else changes)."""
    pairs = ctx.replacements(inputs)
    if not pairs:
        return preview
    pattern = re.compile("|".join(re.escape(k) for k in sorted(pairs, key=len, reverse=True)))

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(lambda m: pairs[m.group(0)], value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {sub(k): sub(v) for k, v in value.items()}
        return value

    return FunctionSpec.model_validate(sub(preview.to_wire()))


_PLACEHOLDER = re.compile(r"<(snapshot|data snapshot|run files snapshot|run_id|token|token-hash|executor type|"
                          r"snapshot of input [A-Za-z0-9_]+)>")


def _refuse_placeholders(o: JobOptions) -> None:
    """A placeholder in user text would be replaced at submit: refuse it rather than change the command."""
    fields: dict[str, Any] = {"cmd": o.cmd, "init_cmd": o.init_cmd, "image": o.image, "source": o.source,
                              "result_label": o.result_label, "executor_type": o.executor_type}
    fields.update({f"args[{i}]": a for i, a in enumerate(o.args)})
    fields.update({f"env {k}": f"{k}={v}" for k, v in o.env.items()})
    fields.update({f"inputs {k}": v for k, v in o.inputs.items()})
    for name, text in fields.items():
        found = _PLACEHOLDER.search(str(text))
        if found:
            raise ProjectError(f"{name} contains {found.group(0)!r}, which Pollinator reserves for values only "
                               "known at submit time; write it differently (e.g. '< run_id >')")
