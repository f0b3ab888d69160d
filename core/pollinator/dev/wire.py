"""What the Go server does to values on their way in and out, reimplemented.

The real server normalises a lot implicitly (Go zero values, nil vs empty
slices, Postgres' microsecond timestamps, sorted map keys, cpu/memory parsed
to integers and printed back as ``"<n>m"``/``"<n>Mi"``). Clients see those
artefacts, so the local server has to reproduce them; they live here, apart
from storage and request handling.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Optional

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_NS = 1_000_000_000


class RPCError(Exception):
    """An error reply: HTTP status and the exact message the Go server would send."""

    def __init__(self, status: int, message: str, then_status: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.then_status = then_status
        """When set, a second error envelope with this status follows the first in the same body, as the
        Go server writes when a handler reports an error and gin's recovery then writes another
        (a PostgreSQL refusal: 400 then 500, more/addlogmsg_nul_byte.json)."""


class NoReply(Exception):
    """The Go handler returned without writing anything (gin then sends an empty 200)."""


def now_ns() -> int:
    return time.time_ns()


def db_ns(ns: int) -> int:
    """A time as Postgres stores it: rounded to the microsecond."""
    return (ns + 500) // 1000 * 1000 if ns else 0


def go_time(ns: Optional[int]) -> str:
    """Go's RFC3339Nano JSON for a UTC time in ns; 0/None is Go's zero time."""
    if not ns:
        return GO_ZERO_TIME
    secs, frac = divmod(ns, _NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def unix_seconds(ns: int) -> int:
    """Go's ``t.Unix()``; the zero time is far in the past (year 1)."""
    return ns // _NS if ns else -62135596800


def sha3_hex(text: str) -> str:
    return hashlib.sha3_256(text.encode()).hexdigest()


def dumps(value: Any) -> str:
    """Compact JSON like Go's encoding/json (UTF-8 kept, maps sorted by key)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def go_value(value: Any) -> Any:
    """A JSON value after a round trip through Go's ``interface{}``.

    Numbers become float64 (so 2.0 prints as 2) and map keys come back sorted.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return [go_value(v) for v in value]
    if isinstance(value, dict):
        return {k: go_value(value[k]) for k in sorted(value)}
    return value


# -- typed field access: Go's json.Unmarshal rejects type mismatches -------------------
class BadType(Exception):
    """A field has a JSON type the Go struct cannot take."""


def get_str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadType(key)
    return value


def get_int(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadType(key)
    if isinstance(value, float):
        if not value.is_integer():
            raise BadType(key)
        value = int(value)
    return value


def get_bool(msg: dict[str, Any], key: str) -> bool:
    value = msg.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadType(key)
    return value


def get_dict(msg: dict[str, Any], key: str) -> Optional[dict[str, Any]]:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadType(key)
    return value


def get_list(msg: dict[str, Any], key: str) -> Optional[list[Any]]:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadType(key)
    return value


def get_str_list(msg: dict[str, Any], key: str) -> Optional[list[str]]:
    value = get_list(msg, key)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise BadType(key)
    return value


# -- resources: pkg/parsers semantics ------------------------------------------------
_MEM_UNITS = {
    "Ki": 1024, "KiB": 1024, "Mi": 1024**2, "MiB": 1024**2, "Gi": 1024**3, "GiB": 1024**3,
    "TiB": 1024**4, "K": 1000, "KB": 1000, "Kb": 1000, "M": 1000**2, "MB": 1000**2, "Mb": 1000**2,
    "G": 1000**3, "Gb": 1000**3, "TB": 1000**4, "Tb": 1000**4,
}


def cpu_to_int(cpu: str) -> int:
    """Millicores; like the Go parser, anything not ending in ``m`` counts as 0."""
    if not cpu.endswith("m"):
        return 0
    try:
        return int(cpu[:-1], 10)
    except ValueError:
        raise RPCError(400, "Error converting CPU to int") from None


def memory_to_bytes(mem: str) -> int:
    if not mem:
        return 0
    unit = ""
    # Longest match first so "10MiB" is MiB, not an error (Go's map order is random here).
    for candidate in sorted(_MEM_UNITS, key=len, reverse=True):
        if mem.upper().endswith(candidate.upper()):
            unit = candidate
            break
    num = mem[: -len(unit)] if unit and mem.endswith(unit) else mem
    try:
        value = int(num, 10)
    except ValueError:
        raise RPCError(400, f'error converting memory to int: strconv.ParseInt: parsing "{num}": invalid syntax') from None
    if not unit:
        raise RPCError(400, "no valid unit found in input")
    return value * _MEM_UNITS[unit]


def cpu_to_str(millis: int) -> str:
    return f"{millis}m"


def memory_to_str(nbytes: int) -> str:
    mib = abs(nbytes) // (1024 * 1024)  # Go's int64 division truncates toward zero
    return f"{-mib if nbytes < 0 else mib}Mi"
