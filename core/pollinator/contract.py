"""What the real ColonyOS executors accept: their spec validation and the characters their templates keep.

Both rules are read from colonyos/executors (see docs/executors/):

* :func:`executor_problems` is ``parsers.ValidateFuncSpec``
  (``common/pkg/parsers/validate_funcspec.go`` with ``ValidateCPU`` in
  ``cpu.go`` and ``ValidateMemory`` in ``memory.go``), which the ``hpc``,
  ``kube`` and ``docker`` executors call on every assigned process; one
  failing rule fails the process before anything runs. The local executor's
  strict mode and the conformance tests apply it to what Pollinator builds.
* :func:`template_unsafe` finds the characters one of the executors' command
  templates would change: the HPC executor renders its Slurm script with Go's
  ``html/template`` into ``sh -c "{{.Command}}"`` and ``export K="{{ $value }}"``
  (``common/pkg/slurm/slurm_batch_template.go``, ``slurm.go``), so
  ``" ' & < > +`` become HTML entities and ``$``, backticks and ``\\`` are
  then read by the batch shell inside double quotes; the Kube executor renders
  its Job YAML with ``text/template`` into ``command: ["sh", "-c", "..."]``
  and ``value: "..."`` (``common/pkg/k8s/job_tpl.go``), where a ``"``, a
  ``\\`` or a newline breaks the YAML. A string made only of
  :data:`TEMPLATE_SAFE` characters comes out of all of them unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

TEMPLATE_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-,:=@% ")
"""Characters html/template, YAML double quotes, ``sh -c "..."`` and the batch shell all leave alone.

(``%`` is kept by all of them; ``{}`` is left out because the executors replace ``{processid}``.)"""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_unsafe(text: str) -> str:
    """The distinct characters of ``text`` an executor template would change, in order of appearance."""
    seen: list[str] = []
    for ch in text:
        if ch not in TEMPLATE_SAFE and ch not in seen:
            seen.append(ch)
    return "".join(seen)


def describe_chars(chars: str) -> str:
    return " ".join(repr(c) for c in chars)


def _validate_cpu(cpu: str) -> str:
    # ValidateCPU, common/pkg/parsers/cpu.go (the order of its checks, its messages)
    if len(cpu) <= 2:
        return "CPU must be specified in the following format: {value}m, e.g. 1000m"
    if cpu.startswith("-"):
        return "CPU cannot be negative"
    if not cpu.endswith("m"):
        return "CPU must be specified in the following format: {value}m, e.g. 1000m"
    if not cpu[:-1].isdigit():  # the HPC executor's ParseCPU then runs strconv.Atoi on the digits
        return f"CPU {cpu!r} is not whole millicores (the HPC executor's ParseCPU fails on it)"
    return ""


def _validate_memory(mem: str) -> str:
    # ValidateMemory, common/pkg/parsers/memory.go
    if len(mem) < 3:
        return "Memory must be specified in the following format: {value}Mi/Gi, e.g.1Mi or 1Gi"
    if mem.startswith("-"):
        return "Memory cannot be negative"
    if mem.endswith("Mi") or mem.endswith("Gi"):
        return ""
    return "Memory must be defined in Mi or Gi"


def executor_problems(spec: Any) -> list[str]:
    """Why the hpc/kube/docker executors would refuse this spec (``[]``: they accept it).

    ``spec`` is a :class:`~pollinator.colonies.models.FunctionSpec` or its wire dict.
    The first entries mirror ``ValidateFuncSpec`` in its order; then ``ParseKwArgs``
    (``common/pkg/parsers/kwargs.go``) needs ``kwargs.docker-image`` and ``kwargs.cmd`` as strings.
    """
    wire = spec.to_wire() if hasattr(spec, "to_wire") else dict(spec)
    cond = wire.get("conditions") or {}
    problems = []
    if not cond.get("processespernode"):
        problems.append("Invalid funcspec, processespernode cannot be 0")
    if not cond.get("nodes"):
        problems.append("Invalid funcspec, nodes cannot be 0")
    walltime = int(cond.get("walltime") or 0)
    maxexectime = int(wire.get("maxexectime") or 0)
    if walltime == 0:
        problems.append("Invalid funcspec, walltime cannot be 0")
    if maxexectime <= 0:
        problems.append("Invalid funcspec, maxexectime must be set to a larger value than 0")
    if walltime < maxexectime:
        problems.append("Invalid funcspec, walltime must be > maxexectime")
    if int(wire.get("maxretries") or 0) <= 0:
        problems.append("Invalid funcspec, maxretries must be set to a larger value than 0")
    for check, value in ((_validate_memory, cond.get("mem") or ""), (_validate_cpu, cond.get("cpu") or "")):
        problem = check(str(value))
        if problem:
            problems.append(problem)
    kwargs = wire.get("kwargs") or {}
    if not isinstance(kwargs.get("docker-image"), str):
        problems.append("Failed to parse docker image flag (kwargs.docker-image must be a string)")
    if not isinstance(kwargs.get("cmd"), str):
        problems.append("Failed to parse cmd kwarg (kwargs.cmd must be a string)")
    args = kwargs.get("args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        problems.append("kwargs.args must be a list of strings (ParseKwArgs casts every item with v.(string))")
    return problems


def quoting_problems(spec: Any) -> list[str]:
    """Where this spec's command or env would be changed by an executor's template (``[]``: nowhere)."""
    wire = spec.to_wire() if hasattr(spec, "to_wire") else dict(spec)
    kwargs = wire.get("kwargs") or {}
    fields: list[tuple[str, str]] = [("kwargs.cmd", str(kwargs.get("cmd") or "")),
                                     ("kwargs.init-cmd", str(kwargs.get("init-cmd") or ""))]
    fields += [(f"kwargs.args[{i}]", str(a)) for i, a in enumerate(kwargs.get("args") or [])]
    env: Mapping[str, Any] = wire.get("env") or {}
    problems = []
    for name in env:
        if not _ENV_NAME.match(str(name)):
            problems.append(f"env name {name!r} is not a shell variable name (the HPC script runs export {name}=...)")
    fields += [(f"env {k}", str(v)) for k, v in env.items()]
    for field, text in fields:
        bad = template_unsafe(text)
        if bad:
            problems.append(f"{field} holds {describe_chars(bad)}, which the HPC executor's html/template "
                            f"(Slurm script) or the Kube executor's Job YAML would change")
    return problems
