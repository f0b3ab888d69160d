"""CPU, memory, walltime and retries: what users write -> what every ColonyOS executor accepts.

The executors users target (colonyos/executors ``hpc``, ``kube``, ``docker``)
all call ``parsers.ValidateFuncSpec`` (``common/pkg/parsers/validate_funcspec.go``)
before anything runs, and it refuses:

* ``conditions.cpu`` unless it ends in ``m`` and is at least 3 characters
  (``ValidateCPU``, ``common/pkg/parsers/cpu.go``; the HPC executor then reads
  the digits with ``strconv.Atoi``, so millicores must be a whole number:
  ``"10m"`` is the smallest value all three take);
* ``conditions.mem`` unless it ends in ``Mi`` or ``Gi`` (``ValidateMemory``,
  ``common/pkg/parsers/memory.go``);
* ``walltime`` 0, ``maxexectime`` <= 0 or > walltime, ``maxretries`` <= 0.

Users write cores (``4``, ``2.5``), bytes, ``512M``, ``1G``, ``Ki``/``Ti``, or
nothing at all. The parsers here turn every such value into the one form the
executors take (millicores; ``Mi``/``Gi``), and refuse what cannot be expressed
(0 cores, less than 10m, fractions of a millicore, zero memory) with one
``ValueError`` naming the value and the accepted forms; pydantic and
:func:`resolve` add the field name.

A value already in the executors' form (``1000m``, ``1000Mi``, ``2Gi``: what
the Go tool writes) is kept as written, so a Go project file round-trips.

Defaults (what a job gets when the field is empty) are explicit, see
``DEFAULT_*`` below, and documented in docs/executors/.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

# -- defaults --------------------------------------------------------------------------------------

DEFAULT_CPU = "1000m"
"""One core: the Go tool's scaffold default. Sent when a job says nothing about cpu."""
DEFAULT_MEM = "1000Mi"
"""The Go tool's scaffold default. Sent when a job says nothing about mem."""
DEFAULT_WALLTIME = 3600
"""Seconds; inline jobs (operator, decorator, Prefect task) get this when they name no walltime."""
NO_LIMIT_WALLTIME = 86400
"""Seconds sent for ``walltime: 0`` ("no limit", the Go tool's project default): every executor refuses 0,
so "no limit" becomes one day (``#SBATCH --time=24:00:00`` on HPC, ``activeDeadlineSeconds`` on Kube).
A Slurm partition with a shorter MaxTime keeps such a job pending: give a walltime there."""
DEFAULT_STAGING_ALLOWANCE = 600
"""Seconds a job may spend between assignment and the start of its command (Slurm queue, snapshot
downloads, image pulls) without it counting against its walltime; see :func:`resolve`."""
DEFAULT_MAX_RETRIES = 3
"""How often the server may re-queue a process whose attempt ran past maxexectime; the executors need >= 1."""
MIN_MILLICORES = 10
"""``ValidateCPU`` refuses strings of fewer than three characters: 1m..9m never run."""
MAX_WALLTIME = 2**31 - 1

CPU_ALLOWED = ("cores like 1, 4 or 2.5, or millicores like 500m (at least 10m; sent as millicores, "
               "e.g. 4 -> 4000m)")
MEM_ALLOWED = ("a memory size like 1000Mi, 2Gi, 512M, 1G, 64Ki or plain bytes like 1048576 "
               "(sent as Mi or Gi, e.g. 1G -> 954Mi)")
WALLTIME_ALLOWED = ("seconds as an integer >= 0 (0 = no limit, sent as one day), a duration like 90s, 30m, "
                    "1h30m, 2d, or a clock time like 30:00, 01:00:00, 1-00:00:00")
MAX_RETRIES_ALLOWED = "an integer >= 1 (the executors refuse maxretries <= 0)"
STAGING_ALLOWANCE_ALLOWED = ("seconds as an integer >= 0 or a duration like 10m (time for queueing and staging "
                             "on top of the walltime; 0 = the Go tool's rule, maxexectime = walltime - 1)")

# -- cpu -------------------------------------------------------------------------------------------

_MILLI_RE = re.compile(r"^(\d+)m$")
_CORES_RE = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


def parse_cpu(value: Any) -> str:
    """A CPU request as millicores (``"4"`` -> ``"4000m"``); ``""`` (or None) means "the default"."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a CPU request: use {CPU_ALLOWED}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a CPU request: use {CPU_ALLOWED}")
    text = str(value).strip()
    if not text:
        return ""
    milli = _MILLI_RE.match(text)
    if milli:
        millicores = int(milli.group(1))
    elif _CORES_RE.match(text):
        exact = Decimal(text) * 1000
        if exact != exact.to_integral_value():
            raise ValueError(f"{value!r} is finer than a millicore: use {CPU_ALLOWED}")
        millicores = int(exact)
    else:
        raise ValueError(f"{value!r} is not a CPU request: use {CPU_ALLOWED}")
    if millicores < MIN_MILLICORES:
        raise ValueError(f"{value!r} is below {MIN_MILLICORES}m, the smallest CPU request the ColonyOS executors "
                         f"accept: use {CPU_ALLOWED}")
    if milli and text == f"{millicores}m":
        return text  # already the executors' form (what the Go tool writes): keep it
    return f"{millicores}m"


def millicores(cpu: str) -> int:
    """The number in a normalized cpu value (``"2500m"`` -> 2500)."""
    return int(parse_cpu(cpu or DEFAULT_CPU)[:-1])


# -- memory ----------------------------------------------------------------------------------------

_MEM_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)$")
_MEM_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "p": 10**15, "pb": 10**15, "e": 10**18, "eb": 10**18,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
    "pi": 2**50, "pib": 2**50, "ei": 2**60, "eib": 2**60,
}
_KEEP_RE = re.compile(r"^[1-9]\d*(?:Mi|Gi)$")
MIB, GIB = 2**20, 2**30


def parse_mem(value: Any) -> str:
    """A memory request as ``Mi`` or ``Gi`` (``"1G"`` -> ``"954Mi"``, rounded up); ``""`` means the default.

    Units: none or ``B`` (bytes), ``k``/``M``/``G``/``T``/``P``/``E`` (powers of 1000, also with ``B``), and
    ``Ki``/``Mi``/``Gi``/``Ti``/``Pi``/``Ei`` (powers of 1024, also with ``B``). Kubernetes' ``m`` (milli)
    makes no sense for memory; a lower-case ``m`` is read as megabytes, as ``M``.
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a memory size: use {MEM_ALLOWED}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a memory size: use {MEM_ALLOWED}")
    text = str(value).strip()
    if not text:
        return ""
    if _KEEP_RE.match(text):
        return text  # already the executors' form: keep it as written
    match = _MEM_RE.match(text)
    unit = _MEM_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"{value!r} is not a memory size: use {MEM_ALLOWED}")
    try:
        size = Decimal(match.group(1)) * unit
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{value!r} is not a memory size: use {MEM_ALLOWED}") from None
    if size <= 0:
        raise ValueError(f"{value!r} is no memory at all: use {MEM_ALLOWED}")
    if size % GIB == 0:
        return f"{int(size // GIB)}Gi"
    return f"{int((size / MIB).to_integral_value(rounding=ROUND_CEILING))}Mi"  # round up: asking for less than meant gets a job OOM-killed


def mem_mib(mem: str) -> int:
    """A normalized memory value in MiB (``"2Gi"`` -> 2048)."""
    text = parse_mem(mem or DEFAULT_MEM)
    return int(text[:-2]) * (1024 if text.endswith("Gi") else 1)


# -- walltime --------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_CLOCK_RE = re.compile(r"^(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)$")  # [[D-]HH:]MM:SS


def parse_walltime(value: Any) -> int:
    """Walltime in integer seconds (Go's unit); 0 means "no limit" (see :data:`NO_LIMIT_WALLTIME`).

    Accepts an int, a digit string, a duration (``1h30m``) or a clock time (``[D-][HH:]MM:SS``).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a walltime: use {WALLTIME_ALLOWED}")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str):
        seconds = _parse_walltime_text(value)
    else:
        raise ValueError(f"{value!r} is not a walltime: use {WALLTIME_ALLOWED}")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative: walltime must be {WALLTIME_ALLOWED}")
    if seconds > MAX_WALLTIME:
        raise ValueError(f"{value!r} is too large: walltime must fit in a 32-bit integer of seconds")
    return seconds


def _parse_walltime_text(value: str) -> int:
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    match = _DURATION_RE.match(text)
    if text and match and any(match.groups()):
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    match = _CLOCK_RE.match(text)
    if match:
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        if secs >= 60 or (minutes >= 60 and match.group(2) is not None):
            raise ValueError(f"{value!r} is not a clock time: minutes and seconds must be below 60")
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    raise ValueError(f"{value!r} is not a walltime: use {WALLTIME_ALLOWED}")


def effective_walltime(walltime: Any) -> int:
    """The walltime sent: the parsed seconds, or :data:`NO_LIMIT_WALLTIME` for 0 ("no limit")."""
    seconds = parse_walltime(walltime)
    return seconds if seconds > 0 else NO_LIMIT_WALLTIME


def maxexectime_for(walltime: int) -> int:
    """The server-side deadline sent with ``walltime`` seconds.

    Go's rule is walltime-1 (the server fails the attempt just before Slurm or
    Kubernetes would kill it). The executors need ``0 < maxexectime <= walltime``,
    which walltime-1 breaks at walltime 1: that one case sends 1.
    """
    return walltime - 1 if walltime > 1 else walltime


def parse_staging_allowance(value: Any) -> int:
    """Queue/staging allowance in integer seconds (the walltime forms, without "no limit": 0 is "none")."""
    if value is None:
        return DEFAULT_STAGING_ALLOWANCE
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"{value!r} is negative: use {STAGING_ALLOWANCE_ALLOWED}")
    try:
        return parse_walltime(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a staging allowance: use {STAGING_ALLOWANCE_ALLOWED}") from None


# -- retries ---------------------------------------------------------------------------------------

def parse_max_retries(value: Any) -> int:
    """How many times the server may re-queue a timed-out attempt; the executors refuse 0 and -1."""
    if value is None:
        return DEFAULT_MAX_RETRIES
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise ValueError(f"{value!r} is not a retry count: use {MAX_RETRIES_ALLOWED}")
    if value < 1:
        raise ValueError(f"{value!r} is not accepted by the ColonyOS executors (ValidateFuncSpec refuses "
                         f"maxretries <= 0, so such a job fails before it starts): use {MAX_RETRIES_ALLOWED}")
    return value


# -- field types (project.yaml and job options) ------------------------------------------------------

Cpu = Annotated[str, BeforeValidator(parse_cpu), Field(description=CPU_ALLOWED)]
Mem = Annotated[str, BeforeValidator(parse_mem), Field(description=MEM_ALLOWED)]
Walltime = Annotated[int, BeforeValidator(parse_walltime), Field(description=WALLTIME_ALLOWED)]
MaxRetries = Annotated[int, BeforeValidator(parse_max_retries), Field(description=MAX_RETRIES_ALLOWED)]
StagingAllowance = Annotated[int, BeforeValidator(parse_staging_allowance),
                             Field(description=STAGING_ALLOWANCE_ALLOWED)]


# -- everything at once --------------------------------------------------------------------------

@dataclass(frozen=True)
class Resources:
    """The resource fields of one spec, in the form every executor accepts."""

    cpu: str
    mem: str
    walltime: int
    """``conditions.walltime``: what Slurm (``--time``) and Kubernetes (``activeDeadlineSeconds``) enforce."""
    maxexectime: int
    max_retries: int
    run_time: int = 0
    """The job's own run time (``env.POLLINATOR_WALLTIME``, kept by its launcher); 0 = none apart from walltime."""


class ResourceError(ValueError):
    """One resource field no executor can run; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def resolve(*, cpu: Any = "", mem: Any = "", walltime: Any = 0, max_retries: Any = DEFAULT_MAX_RETRIES,
            staging_allowance: Any = 0) -> Resources:
    """Normalize and default all resource fields; raises :class:`ResourceError` naming the first bad field.

    The deadline rule (docs/hpc.md): walltime W > 0 with a staging allowance A > 0 is W seconds of run
    time, kept by the job's launcher from the start of its work (``run_time``), and ``walltime`` =
    ``maxexectime`` = W + A, which the scheduler and the server (counting from assignment) enforce
    as backstops, with A for the queue and staging. A = 0 is the Go tool's rule (maxexectime
    W - 1, counted from assignment). W = 0 ("no limit") is one day, A unused.
    """
    parsed: dict[str, Any] = {}
    for field, parse, value in (("cpu", parse_cpu, cpu), ("mem", parse_mem, mem),
                                ("walltime", parse_walltime, walltime),
                                ("max_retries", parse_max_retries, max_retries),
                                ("staging_allowance", parse_staging_allowance, staging_allowance)):
        try:
            parsed[field] = parse(value)
        except ValueError as exc:
            raise ResourceError(field, str(exc)) from None
    cpu_, mem_ = parsed["cpu"] or DEFAULT_CPU, parsed["mem"] or DEFAULT_MEM
    run_time, allowance = parsed["walltime"], parsed["staging_allowance"]
    if run_time > 0 and allowance > 0:
        if run_time + allowance > MAX_WALLTIME:
            raise ResourceError("staging_allowance", f"walltime {run_time} s + staging allowance {allowance} s is "
                                "too large: the sum must fit in a 32-bit integer of seconds")
        wall = run_time + allowance
        return Resources(cpu=cpu_, mem=mem_, walltime=wall, maxexectime=wall, max_retries=parsed["max_retries"],
                         run_time=run_time)
    wall = run_time or NO_LIMIT_WALLTIME
    return Resources(cpu=cpu_, mem=mem_, walltime=wall, maxexectime=maxexectime_for(wall),
                     max_retries=parsed["max_retries"])
