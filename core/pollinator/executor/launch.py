"""Turn a Colonies ``execute`` process into a LaunchSpec for this machine.

Container executors bind-mount their fs dir at the spec's mount point
(``/cfs``) and run ``sh -c "<init-cmd>;<cmd> <args...>"`` with the spec's env
plus ``COLONIES_PROCESS_ID``. There is no container here, so the same paths
are rewritten instead: every ``/cfs`` path in cmd, args and env values points
into the executor's fs dir. ``{processid}`` is substituted as the Go
executors do. Args are joined with spaces, unquoted, exactly as they do, so
specs written for them (shell operators in args included) behave the same.

The job's environment starts from this executor's environment with every
Colonies/S3 credential removed: a job sees a secret only if its spec put it
there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from pollinator.colonies.models import FunctionSpec, Process
from pollinator.errors import PollinatorError, UnsafePathError
from pollinator.launcher import WALLTIME_ENV

DEFAULT_MOUNT = "/cfs"
OUTPUT_FILE_VAR = "POLLINATOR_OUTPUT_FILE"

_SECRET_WORDS = ("PRVKEY", "SECRET", "PASSWORD", "TOKEN", "ACCESSKEY", "ACCESS_KEY", "CREDENTIAL")
_SECRET_PREFIXES = ("COLONIES_", "AWS_S3_")


class JobSpecError(PollinatorError):
    """The process spec cannot be run by this executor (missing cmd, bad kwargs)."""


def is_secret_name(name: str) -> bool:
    """True for variables that must not leak from the executor into a job."""
    upper = name.upper()
    return upper.startswith(_SECRET_PREFIXES) or any(word in upper for word in _SECRET_WORDS)


def job_base_env(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """This executor's environment minus credentials and Colonies settings."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not is_secret_name(k)}


class PathMapper:
    """Maps container paths under the mount point (``/cfs``) to the local fs dir."""

    def __init__(self, fs_dir: Path, mount: str = DEFAULT_MOUNT, process_id: str = ""):
        self.fs_dir = Path(fs_dir).resolve()
        self.mount = "/" + (mount or DEFAULT_MOUNT).strip("/")
        self.process_id = process_id
        # The mount only counts as a whole path component: "/cfs/x", "/cfs", "a:/cfs" - not "/cfsx", "/a/cfs".
        self._pattern = re.compile(r"(?<![\w./~-])" + re.escape(self.mount) + r"(?=/|$|[^\w.-])")

    def rewrite(self, text: str) -> str:
        """``text`` with ``{processid}`` filled in and mount paths pointing at the fs dir."""
        text = text.replace("{processid}", self.process_id)
        return self._pattern.sub(lambda _: str(self.fs_dir), text)

    def local_dir(self, mount_dir: str) -> Path:
        """Where a mount's ``dir`` (relative to the mount point, as in specs) lives here.

        Raises UnsafePathError when the spec would point outside the fs dir.
        """
        rel = mount_dir.replace("{processid}", self.process_id)
        if rel == self.mount or rel.startswith(self.mount + "/"):
            rel = rel[len(self.mount):]  # tolerate "/cfs/x" as well as "/x"
        path = (self.fs_dir / rel.lstrip("/")).resolve()
        if path != self.fs_dir and self.fs_dir not in path.parents:
            raise UnsafePathError(f"mount dir {mount_dir!r} points outside the executor fs dir")
        return path


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as Go's fmt.Sprint prints them
    return str(value)


@dataclass(frozen=True)
class ExecuteArgs:
    """The kwargs the container executors read, as this executor uses them."""

    cmd: str
    args: list[str]
    init_cmd: str = ""
    image: str = ""

    @classmethod
    def from_spec(cls, spec: FunctionSpec) -> "ExecuteArgs":
        kwargs = spec.kwargs or {}
        cmd = kwargs.get("cmd")
        if not isinstance(cmd, str) or not cmd.strip():
            raise JobSpecError("kwargs.cmd is missing: an execute process needs a command to run")
        raw_args = kwargs.get("args")
        if raw_args is None:
            raw_args = spec.args or []
        if isinstance(raw_args, (str, int, float)):
            raw_args = [raw_args]
        if not isinstance(raw_args, list):
            raise JobSpecError(f"kwargs.args must be a list of strings, not {type(raw_args).__name__}")
        init_cmd = kwargs.get("init-cmd") or ""
        image = kwargs.get("docker-image") or ""
        return cls(cmd=cmd, args=[_as_text(a) for a in raw_args], init_cmd=_as_text(init_cmd),
                   image=_as_text(image))


@dataclass(frozen=True)
class Plan:
    """What will run: the rewritten commands, where, and with which environment."""

    command: str
    init_command: str
    cwd: Path
    env: dict[str, str]
    ranks: int
    ranks_per_node: int
    walltime: float
    image: str


WALLTIME_VAR = WALLTIME_ENV
"""Spec env: the job's run time in seconds when the spec's walltime also holds a staging allowance."""


def run_time_of(spec: FunctionSpec) -> int:
    """``env.POLLINATOR_WALLTIME`` as seconds (0: absent or not a positive whole number)."""
    raw = (spec.env or {}).get(WALLTIME_VAR)
    try:
        value = int(str(raw).strip()) if raw is not None else 0
    except ValueError:
        return 0
    return max(0, value)


def has_run_time(spec: FunctionSpec) -> bool:
    """The spec names its run time apart from its walltime (a staging allowance is folded in)."""
    return run_time_of(spec) > 0


def walltime_of(spec: FunctionSpec) -> float:
    """The job's run time limit in seconds, counted from the start of its command; 0 = unlimited.

    ``env.POLLINATOR_WALLTIME`` when the spec carries one (Pollinator adds it when a staging
    allowance is folded into ``conditions.walltime``), else ``conditions.walltime``. The server's
    ``maxexectime`` is not a run time (it counts from assignment): see :func:`server_deadline`.
    """
    if has_run_time(spec):
        return float(run_time_of(spec))
    return float(spec.conditions.walltime) if spec.conditions.walltime and spec.conditions.walltime > 0 else 0.0


def server_margin(maxexectime: float) -> float:
    """How long before the server's deadline the executor ends an attempt itself (and closes it)."""
    return min(5.0, max(0.5, maxexectime * 0.1))


def server_deadline(spec: FunctionSpec, assigned_at: float) -> Optional[float]:
    """``time.monotonic()`` at which the executor ends the attempt so its close beats the server's
    re-queue (maxexectime counts from assignment); None without maxexectime."""
    if not spec.maxexectime or spec.maxexectime <= 0:
        return None
    return assigned_at + spec.maxexectime - server_margin(spec.maxexectime)


def plan_execute(process: Process, fs_dir: Path, *, output_file: Optional[Path] = None,
                 base_env: Optional[Mapping[str, str]] = None) -> Plan:
    """Build the local plan for an ``execute`` process (raises JobSpecError)."""
    spec = process.spec
    kwargs = ExecuteArgs.from_spec(spec)
    mapper = PathMapper(fs_dir, spec.fs.mount or DEFAULT_MOUNT, process.processid)

    env = job_base_env(base_env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # Python behind a pipe would buffer: logs would arrive late
    for key, value in (spec.env or {}).items():
        env[str(key)] = mapper.rewrite(_as_text(value))
    env["PROJECT_DIR"] = mapper.rewrite(env["PROJECT_DIR"]) if "PROJECT_DIR" in (spec.env or {}) \
        else str(mapper.fs_dir)
    env["COLONIES_PROCESS_ID"] = process.processid
    if output_file is not None:
        env[OUTPUT_FILE_VAR] = str(output_file)

    command = " ".join([mapper.rewrite(kwargs.cmd)] + [mapper.rewrite(a) for a in kwargs.args])
    nodes = max(1, spec.conditions.nodes)
    per_node = max(1, spec.conditions.processespernode)
    return Plan(command=command, init_command=mapper.rewrite(kwargs.init_cmd).strip(),
                cwd=Path(env["PROJECT_DIR"]), env=env, ranks=nodes * per_node,
                ranks_per_node=per_node, walltime=walltime_of(spec), image=kwargs.image)
