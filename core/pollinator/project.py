"""The ``project.yaml`` model, compatible with the Go ``pollinator`` tool.

A project file written by the Go tool loads here unchanged, and
:meth:`Project.dump_yaml` writes keys the Go tool reads. Deliberate
extensions, all ignored by the Go tool's (non-strict) YAML decoder:

* ``conditions.executorType`` (default ``container-executor``, the value the
  Go tool hard-codes);
* ``conditions.stagingAllowance``: seconds (or a duration) for queueing and
  staging on top of the walltime, which then counts only run time (the
  deadline rule, docs/hpc.md); absent = ``$POLLINATOR_STAGING_ALLOWANCE`` or
  600 s, 0 = the Go tool's rule;
* ``conditions.walltime`` also accepts durations (``"90s"``, ``"30m"``,
  ``"1h30m"``, ``"1d"``) and clock forms (``"MM:SS"``, ``"HH:MM:SS"``,
  ``"D-HH:MM:SS"``, as Slurm writes them) besides Go's integer seconds.
  :meth:`Project.dump_yaml` always writes integer seconds, so the Go tool can
  read a file we rewrite.

``conditions.cpu`` and ``conditions.mem`` are normalized on load into the forms
the ColonyOS executors accept (``4`` -> ``4000m``, ``1G`` -> ``954Mi``; see
:mod:`pollinator.resources`); values the Go tool writes (``1000m``,
``1000Mi``) are kept as written.

Validation is stricter than Go's (which silently ignores unknown keys and
mistyped values): a bad file fails *before* anything is uploaded or submitted,
with one :class:`~pollinator.errors.ProjectError` naming the file, the YAML
line, the field path and what is allowed. Unknown keys are errors with a
"did you mean" hint, because a typo such as ``walltim`` would otherwise
silently give an unlimited job.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from pollinator.colonies import crypto
from pollinator.errors import ProjectError
from pollinator.resources import (  # noqa: F401 - re-exported: the parsers' old home
    CPU_ALLOWED,
    MEM_ALLOWED,
    WALLTIME_ALLOWED,
    Cpu,
    Mem,
    StagingAllowance,
    Walltime,
    parse_cpu,
    parse_mem,
    parse_walltime,
)

if TYPE_CHECKING:
    from pollinator.run.options import JobOptions

PROJECT_FILE = "project.yaml"
DEFAULT_EXECUTOR_TYPE = "container-executor"

# Defaults of the Go tool's GenerateProjectConfig (used by `pollinator new`).
SCAFFOLD_IMAGE = "python:3.12-rc-bookworm"
SCAFFOLD_INIT_CMD = "pip3 install numpy"
SCAFFOLD_CMD = "python3"
SCAFFOLD_SOURCE = "main.py"
SCAFFOLD_CPU = "1000m"
SCAFFOLD_MEM = "1000Mi"
SCAFFOLD_WALLTIME = 600

# --------------------------------------------------------------------------------------------------
# Scalar parsers. They raise ValueError (pydantic turns that into a located error). cpu, mem and walltime
# live in pollinator.resources, shared with inline jobs.
# --------------------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

NAME_ALLOWED = ("1-128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-' "
                "(it becomes part of ColonyFS labels /pollinator/<projectname>/...)")


def check_name(value: Any) -> str:
    """A project name usable as one component of a ColonyFS label."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a project name: use {NAME_ALLOWED}")
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a safe project name: use {NAME_ALLOWED}")
    return value


def check_source(value: Any) -> str:
    """A relative POSIX path inside ``cfs/src`` (or empty for "no source file")."""
    text = _scalar_to_str(value)
    if not isinstance(text, str):
        return text  # let the str type check report it
    if not text:
        return text
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text:
        raise ValueError(f"{text!r} is not a file inside cfs/src: use a relative path like main.py or pkg/run.py")
    return text


_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_inputs(value: Any) -> Any:
    """Input mounts: ``name -> absolute ColonyFS label`` (or ``label@snapshot_id``, see :mod:`pollinator.pins`);
    the name becomes ``$POLLINATOR_INPUT_<NAME>``."""
    from pollinator.pins import parse_input

    if not isinstance(value, dict):
        return value  # let the dict type check report it
    for name, label in value.items():
        if not isinstance(name, str) or not _INPUT_NAME.match(name):
            raise ValueError(f"input name {name!r} must be a valid identifier (letters, digits, _), e.g. prep")
        try:
            parse_input(label)
        except ValueError as exc:
            raise ValueError(f"input {name!r}: {exc} (or label@snapshot_id for exactly one snapshot's files)"
                             ) from None
    return value


def _scalar_to_str(value: Any) -> Any:
    """YAML turns ``cmd: 123`` into an int; Go's decoder takes it as text, and so do we (bools stay errors).

    An empty value (``init-cmd:``) is YAML null; Go decodes it into "" and so do we.
    """
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _executor_name(value: Any) -> Any:
    value = _scalar_to_str(value)
    if isinstance(value, str) and not value.strip():
        raise ValueError("an executor name must not be empty: list names like [my-executor], or omit executorNames")
    return value


def _none_to_empty(value: Any) -> Any:
    """``conditions:`` with nothing under it is YAML null; Go decodes it as an empty struct."""
    return {} if value is None else value


YamlStr = Annotated[str, BeforeValidator(_scalar_to_str)]
ExecutorName = Annotated[str, BeforeValidator(_executor_name)]
Port = Annotated[int, Field(ge=0, le=65535, description="a port number 0-65535")]


class _Model(BaseModel):
    # strict: no "2" -> 2 or "yes" -> True guessing; the Go tool would reject those too.
    model_config = ConfigDict(extra="forbid", strict=True, validate_by_alias=True, validate_by_name=True,
                              serialize_by_alias=True)


class GPU(_Model):
    count: int = Field(0, ge=0, description="the number of GPUs (per node on HPC, per container on Kube), an integer >= 0")
    name: YamlStr = Field("", description="a GPU model name as the executor reports it, or empty")


class Conditions(_Model):
    executor_names: Optional[list[ExecutorName]] = Field(
        None, alias="executorNames", description="a list of executor names, e.g. [my-executor]")
    executor_type: YamlStr = Field(
        DEFAULT_EXECUTOR_TYPE, alias="executorType", min_length=1,
        description=f"a non-empty executor type (default {DEFAULT_EXECUTOR_TYPE})")
    nodes: int = Field(1, ge=1, description="the number of nodes, an integer >= 1")
    processes_per_node: int = Field(1, alias="processesPerNode", ge=1,
                                    description="processes per node, an integer >= 1")
    cpu: Cpu = ""
    mem: Mem = ""
    walltime: Walltime = 0
    staging_allowance: Optional[StagingAllowance] = Field(None, alias="stagingAllowance")
    gpu: Annotated[GPU, BeforeValidator(_none_to_empty)] = Field(default_factory=GPU)


class Environment(_Model):
    docker: YamlStr = Field("", description="the container image, e.g. python:3.12")
    rebuild_image: bool = Field(False, alias="rebuildImage", description="true or false")
    init_cmd: YamlStr = Field("", alias="init-cmd", description="a shell command run before cmd, or empty")
    cmd: YamlStr = Field("", description="the command to run, e.g. python3")
    source: Annotated[str, BeforeValidator(check_source)] = Field(
        "", description="a file in cfs/src passed to cmd, e.g. main.py")


class Tunnel(_Model):
    """SSH tunnel settings of the Go tool; kept so its project files load (Pollinator does not tunnel)."""

    user: YamlStr = ""
    jump_host: YamlStr = Field("", alias="jumpHost")
    jump_host_port: Port = Field(0, alias="jumpHostPort")
    ssh_key: YamlStr = Field("", alias="sshKey")
    local_port: Port = Field(0, alias="localPort")
    remote_port: Port = Field(0, alias="remotePort")


class Project(_Model):
    """One project.yaml. Build with :func:`load_project` or :meth:`scaffold`."""

    project_name: Annotated[str, BeforeValidator(lambda v: check_name(_scalar_to_str(v)))] = Field(
        alias="projectname", description=NAME_ALLOWED)
    conditions: Annotated[Conditions, BeforeValidator(_none_to_empty)] = Field(default_factory=Conditions)
    environment: Annotated[Environment, BeforeValidator(_none_to_empty)] = Field(default_factory=Environment)
    tunnel: Optional[Tunnel] = None
    inputs: Annotated[dict[str, str], BeforeValidator(lambda v: check_inputs(_none_to_empty(v)))] = Field(
        default_factory=dict,
        description="Pollinator extension (the Go tool ignores it): name -> ColonyFS label, mounted read-only "
                    "for the job at $POLLINATOR_INPUT_<NAME>, e.g. {prep: /pollinator/prep/result}")

    _path: Optional[Path] = PrivateAttr(default=None)

    @property
    def path(self) -> Optional[Path]:
        """The file this project was loaded from (``None`` when built in code)."""
        return self._path

    @property
    def root(self) -> Path:
        """The project directory (holding ``cfs/``): the file's directory, else the current directory."""
        return self._path.parent if self._path is not None else Path(".")

    @property
    def cfs_dir(self) -> Path:
        return self.root / "cfs"

    @classmethod
    def scaffold(cls, executor_name: str, executor_type: str = DEFAULT_EXECUTOR_TYPE) -> "Project":
        """A new project with a fresh random name and the Go tool's defaults."""
        return cls(
            project_name=crypto.random_id(),
            conditions=Conditions(executor_names=[executor_name], executor_type=executor_type, nodes=1,
                                  processes_per_node=1, cpu=SCAFFOLD_CPU, mem=SCAFFOLD_MEM,
                                  walltime=SCAFFOLD_WALLTIME),
            environment=Environment(docker=SCAFFOLD_IMAGE, rebuild_image=False, init_cmd=SCAFFOLD_INIT_CMD,
                                    cmd=SCAFFOLD_CMD, source=SCAFFOLD_SOURCE),
        )

    def job_options(self, **overrides: Any) -> "JobOptions":
        """This project as the options of one job: the only mapping of project.yaml onto a job.

        ``cfs/src``, ``cfs/data`` and ``cfs/result`` under the project directory
        are the job's src, data and result dirs. ``overrides`` (the core's
        option names; ``None`` = not given) replace the file's values, except
        that an ``inputs`` mapping adds to the file's ``inputs:`` (a name in
        both: the override's label).
        """
        from pollinator.run.options import JobOptions  # here: pollinator.run imports this module

        c, e = self.conditions, self.environment
        fields: dict[str, Any] = dict(
            name=self.project_name, cmd=e.cmd or "", image=e.docker, init_cmd=e.init_cmd,
            rebuild_image=e.rebuild_image, source=e.source, executor_names=c.executor_names,
            executor_type=c.executor_type, nodes=c.nodes, processes_per_node=c.processes_per_node, cpu=c.cpu,
            mem=c.mem, gpu_count=c.gpu.count, gpu_name=c.gpu.name, walltime=c.walltime,
            staging_allowance=c.staging_allowance, src_dir=self.cfs_dir / "src", data_dir=self.cfs_dir / "data", result_dir=self.cfs_dir / "result",
            inputs=dict(self.inputs))
        if isinstance(overrides.get("inputs"), dict):
            overrides = {**overrides, "inputs": {**self.inputs, **overrides["inputs"]}}
        fields.update({k: v for k, v in overrides.items() if v is not None})
        if not fields["cmd"]:
            where = self.path or PROJECT_FILE
            raise ProjectError(f"{where}: environment.cmd is empty: set the command to run, e.g. python3")
        return JobOptions.build(**fields)

    def to_go_dict(self) -> dict[str, Any]:
        """The YAML mapping in the Go tool's key order.

        ``executorType`` is written only when not the default and
        ``executorNames`` only when set, so a Go-written file round-trips.
        """
        c, e = self.conditions, self.environment
        conditions: dict[str, Any] = {}
        if c.executor_names is not None:  # absent stays absent: Go's spec then says null, not []
            conditions["executorNames"] = list(c.executor_names)
        if c.executor_type != DEFAULT_EXECUTOR_TYPE:
            conditions["executorType"] = c.executor_type
        conditions.update({
            "nodes": c.nodes,
            "processesPerNode": c.processes_per_node,
            "cpu": c.cpu,
            "mem": c.mem,
            "walltime": c.walltime,
        })
        if c.staging_allowance is not None:  # our extension, written only when set: Go files round-trip
            conditions["stagingAllowance"] = c.staging_allowance
        conditions["gpu"] = {"count": c.gpu.count, "name": c.gpu.name}
        tunnel = None
        if self.tunnel is not None:
            t = self.tunnel
            tunnel = {"user": t.user, "jumpHost": t.jump_host, "jumpHostPort": t.jump_host_port,
                      "sshKey": t.ssh_key, "localPort": t.local_port, "remotePort": t.remote_port}
        data: dict[str, Any] = {
            "projectname": self.project_name,
            "conditions": conditions,
            "environment": {"docker": e.docker, "rebuildImage": e.rebuild_image, "init-cmd": e.init_cmd,
                            "cmd": e.cmd, "source": e.source},
            "tunnel": tunnel,
        }
        if self.inputs:  # our extension; absent unless used, so a Go-written file round-trips unchanged
            data["inputs"] = dict(self.inputs)
        return data

    def dump_yaml(self) -> str:
        """YAML as the Go tool's ``yaml.Marshal`` lays it out (walltime as integer seconds)."""
        return yaml.dump(self.to_go_dict(), Dumper=_GoishDumper, sort_keys=False, default_flow_style=False,
                         allow_unicode=True)

    def write(self, path: Union[str, Path]) -> Path:
        """Write :meth:`dump_yaml` to ``path`` (a file or a directory) and return the file."""
        target = Path(path)
        if target.is_dir():
            target = target / PROJECT_FILE
        target.write_text(self.dump_yaml(), encoding="utf-8")
        self._path = target
        return target


class _GoishDumper(yaml.SafeDumper):
    """Writes ``""`` (as Go's yaml.v2 does) instead of PyYAML's ``''`` for empty strings."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if value == "":
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_GoishDumper.add_representer(str, _represent_str)

# --------------------------------------------------------------------------------------------------
# Loading with located errors
# --------------------------------------------------------------------------------------------------

Loc = tuple[Union[str, int], ...]


def load_project(path_or_dir: Union[str, Path] = ".") -> Project:
    """Load and validate a project file (or ``<dir>/project.yaml``).

    Raises one :class:`ProjectError` for every way the file can be wrong:
    missing, unreadable, not YAML, or not a valid project.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ProjectError(f"{path}: no such file: run `pollinator new -e EXECUTOR` in an empty directory "
                           "to create a project")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path}: cannot read: {exc}") from None
    project = parse_project(text, source=str(path))
    project._path = path
    return project


def parse_project(text: str, *, source: str = PROJECT_FILE) -> Project:
    """Validate project YAML given as text; ``source`` names it in errors."""
    data, lines = _load_yaml_with_lines(text, source)
    if data is None:
        raise ProjectError(f"{source}: the file is empty: it needs at least `projectname:`")
    if not isinstance(data, dict):
        raise ProjectError(f"{source}:1: the file must be a YAML mapping (projectname:, conditions:, "
                           f"environment:), not a {type(data).__name__}")
    try:
        return Project.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ProjectError(_format_errors(exc, lines, source)) from None


def _load_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML once, keeping the 1-based line of every mapping key and sequence item by path."""
    loader: Optional[yaml.SafeLoader] = None
    try:
        loader = yaml.SafeLoader(text)  # the reader already rejects control characters here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProjectError(f"{source}{where}: not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        raise ProjectError(f"{source}: not valid YAML: character {exc.character:#x} at offset {exc.position} "
                           "is not allowed (control characters and invalid encodings are not)") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ProjectError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[Loc, int] = {(): 1}
    if node is not None:
        _record_lines(node, (), lines, source, set())
    return data, lines


def _record_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], source: str, walked: set[int]) -> None:
    # Aliases share one node object: walk each node once, or a 1 KiB "billion laughs" file takes forever.
    # (Errors inside an aliased subtree then point at the line of the path that reached it first.)
    if id(node) in walked:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ProjectError(f"{source}:{line}: {_dotted(loc) or 'top level'}: keys must be plain names")
            key = key_node.value
            if key in seen and key_node.tag != "tag:yaml.org,2002:merge":
                raise ProjectError(f"{source}:{line}: {_dotted(loc + (key,))}: duplicate key "
                                   f"(first on line {seen[key]}): keep one")
            seen[key] = line
            lines[loc + (key,)] = line
            _record_lines(value_node, loc + (key,), lines, source, walked)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            _record_lines(item, loc + (index,), lines, source, walked)


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _model_at(loc: Loc) -> Optional[type[BaseModel]]:
    """The model class whose keys live at ``loc`` (for "did you mean" and "allowed" hints)."""
    model: type[BaseModel] = Project
    for part in loc:
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        inner = _submodel(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _submodel(annotation: Any) -> Optional[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _allowed(loc: Loc) -> str:
    model = _model_at(loc[:-1]) if loc else None
    if model is None:
        return ""
    for name, field in model.model_fields.items():
        if (field.alias or name) == loc[-1]:
            if field.description:
                return field.description
            for meta in field.metadata:
                if getattr(meta, "description", None):
                    return str(meta.description)
    return ""


def _describe(err: Any) -> str:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`? " if close else ""
        where = _dotted(loc[:-1]) or "the top level"
        return f"unknown key `{loc[-1]}`: {hint}{where} allows: {', '.join(known)}"
    if kind == "missing":
        return f"required: {_allowed(loc) or 'a value'}"
    message = str(err["msg"])
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    got = err.get("input")
    allowed = _allowed(loc)
    text = f"{message}, got {got!r}" if not isinstance(got, (dict, list)) else message
    return f"{text}; allowed: {allowed}" if allowed else text


def _format_errors(exc: ValidationError, lines: dict[Loc, int], source: str) -> str:
    problems = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        problems.append((_line_for(loc, lines), f"{source}:{_line_for(loc, lines)}: "
                                                f"{_dotted(loc) or 'top level'}: {_describe(err)}"))
    problems.sort(key=lambda p: p[0])
    if len(problems) == 1:
        return problems[0][1]
    return f"{source}: {len(problems)} problems\n" + "\n".join("  " + p for _, p in problems)
