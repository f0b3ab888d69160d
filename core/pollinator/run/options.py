"""What a job is, independent of where it came from (project.yaml, operator args, decorator)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pollinator.errors import ProjectError
from pollinator.project import check_inputs
from pollinator.resources import (DEFAULT_MAX_RETRIES, DEFAULT_WALLTIME, Cpu, MaxRetries, Mem, StagingAllowance,
                                  Walltime)

class JobOptions(BaseModel):
    """Every knob of one ColonyOS job. Field names are what adapters expose as arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="project name: the label component under /pollinator/")
    cmd: str = Field(min_length=1, description="the command to run, e.g. 'python3 train.py'")
    image: str = Field("", description="container image the executor runs the command in")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    init_cmd: str = ""
    rebuild_image: bool = False
    source: str = Field("", description="a file in src_dir passed to cmd as its first argument (Go's `source`)")
    executor_names: Optional[list[str]] = None
    executor_type: str = "container-executor"
    nodes: int = Field(1, ge=1)
    processes_per_node: int = Field(1, ge=1)
    cpu: Cpu = Field("", description="cores (4, 2.5) or millicores (500m); empty = 1000m")
    mem: Mem = Field("", description="1000Mi, 2Gi, 512M, 1G, bytes...; empty = 1000Mi")
    gpu_count: int = Field(0, ge=0)
    gpu_name: str = ""
    walltime: Walltime = Field(DEFAULT_WALLTIME,
                               description="seconds (or '2h', '30m', 'HH:MM:SS'); 0 = no limit (sent as one day)")
    max_retries: MaxRetries = DEFAULT_MAX_RETRIES
    staging_allowance: Optional[StagingAllowance] = Field(
        None, description="seconds (or '10m') the job may spend queued and staging on top of its walltime, which "
                          "then counts only its run time; None = $POLLINATOR_STAGING_ALLOWANCE or 600; 0 = the Go "
                          "tool's rule (maxexectime = walltime - 1 from assignment); docs/hpc.md")
    priority: int = 5
    inputs: dict[str, str] = Field(default_factory=dict, description="name -> ColonyFS label mounted read-only")
    src_dir: Optional[Path] = None
    data_dir: Optional[Path] = None
    result_dir: Optional[Path] = None
    result_label: str = Field("", description="default /pollinator/<name>/result")
    launcher: bool = Field(True, description="run cmd/args/init_cmd/env through Pollinator's launcher script, "
                                             "which survives every executor's templating and records the exit "
                                             "code (docs/executors/); False sends them raw, for a foreign "
                                             "command that must run unwrapped")

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_from_list(cls, value: Any) -> Any:
        """A list of labels is accepted too; each is named after its last path parts."""
        if isinstance(value, (list, tuple)):
            named = {}
            for label in value:
                parts = [p for p in str(label).split("/") if p and p != "result"]
                key = re.sub(r"\W", "_", parts[-1] if parts else "input")
                named[key] = str(label)
            return named
        return value

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, value: dict[str, str]) -> dict[str, str]:
        return check_inputs(value)  # the same rule as project.yaml's inputs:

    @classmethod
    def build(cls, **fields: Any) -> "JobOptions":
        """Validate, turning pydantic's error into one ProjectError naming the fields."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'job'}: {err['msg']}"
                                 for err in exc.errors())
            raise ProjectError(f"invalid job options: {problems}") from None


OPTION_NAMES: tuple[str, ...] = tuple(JobOptions.model_fields)
"""Every job option, in the core's names: the adapters' arguments are these (tests hold them to it)."""

RENAMED: Mapping[str, str] = {"job_name": "name", "gpu": "gpu_count"}
"""Adapter arguments from before they took the core's names -> the core's name (deprecated aliases)."""


def adopt_renamed(owner: str, given: Mapping[str, Any], *, category: type[Warning] = DeprecationWarning,
                  stacklevel: int = 3) -> dict[str, Any]:
    """``given`` (argument -> value, ``None`` = not given) with every old name of :data:`RENAMED` moved to its
    core name: the old name still works and warns naming the new one, so a DAG or flow keeps running while
    its author moves; both names at once is a :class:`ProjectError` naming both (which one should win?).

    One place for the rule, so the operator, ``@task.pollinator`` and ``@pollinator_task`` say the same.
    """
    options = dict(given)
    for old, new in RENAMED.items():
        if old not in options:
            continue
        value = options.pop(old)
        if value is None:
            continue
        if options.get(new) is not None:
            raise ProjectError(f"{owner}: both {old}= and {new}= are given; {old}= is the deprecated name of "
                               f"{new}=: give only {new}=")
        warnings.warn(f"{owner}({old}=...) is deprecated: use {new}= (the name the core's JobOptions, the other "
                      "adapters and the docs use)", category, stacklevel=stacklevel)
        options[new] = value
    return options
