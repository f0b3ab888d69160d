"""Function specs in, Process JSON out: the shapes the Go server produces.

``parse_spec`` turns a submitted spec into the stored record, applying what
the Go server's Postgres round trip does (cpu/mem parsed to numbers, nil
slices replaced, ``*`` executor names dropped, GPU nodecount lost).
``render_process`` prints a stored record field for field like
``core.Process`` (Go struct order; ``channels``/``locationname`` omitted when
empty, as ``omitempty`` does).
"""

from __future__ import annotations

from typing import Any, Optional

from pollinator.dev.wire import (
    BadType,
    RPCError,
    cpu_to_int,
    cpu_to_str,
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_str,
    get_str_list,
    go_time,
    go_value,
    memory_to_bytes,
    memory_to_str,
    sha3_hex,
)

MIN_PRIORITY, MAX_PRIORITY = -50000, 50000
ENV_ATTRIBUTE = 3


def _snapshot_mount(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadType("fs.snapshots")
    return {"snapshotid": get_str(raw, "snapshotid"), "label": get_str(raw, "label"), "dir": get_str(raw, "dir"),
            "keepfiles": get_bool(raw, "keepfiles"), "keepsnapshot": get_bool(raw, "keepsnapshot")}


def _sync_dir_mount(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadType("fs.dirs")
    conflicts = get_dict(raw, "onconflicts") or {}
    onstart = get_dict(conflicts, "onstart") or {}
    onclose = get_dict(conflicts, "onclose") or {}
    return {"label": get_str(raw, "label"), "dir": get_str(raw, "dir"), "keepfiles": get_bool(raw, "keepfiles"),
            "onconflicts": {"onstart": {"keeplocal": get_bool(onstart, "keeplocal")},
                            "onclose": {"keeplocal": get_bool(onclose, "keeplocal")}}}


def _filesystem(raw: Optional[dict[str, Any]]) -> dict[str, Any]:
    raw = raw or {}
    snapshots = get_list(raw, "snapshots")
    dirs = get_list(raw, "dirs")
    return {"mount": get_str(raw, "mount"),
            "snapshots": None if snapshots is None else [_snapshot_mount(s) for s in snapshots],
            "dirs": None if dirs is None else [_sync_dir_mount(d) for d in dirs]}


def parse_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a submitted spec. Raises BadType (-> "invalid JSON") or RPCError."""
    cond = get_dict(spec, "conditions") or {}
    gpu = get_dict(cond, "gpu") or {}
    env = get_dict(spec, "env")
    if env is not None and not all(isinstance(v, str) for v in env.values()):
        raise BadType("env")
    kwargs = get_dict(spec, "kwargs")
    names = get_str_list(cond, "executornames")
    if names == ["*"]:
        names = []
    record = {
        "nodename": get_str(spec, "nodename"),
        "funcname": get_str(spec, "funcname"),
        "args": go_value(get_list(spec, "args") or []),
        "kwargs": go_value(kwargs or {}),
        "priority": get_int(spec, "priority"),
        "maxwaittime": get_int(spec, "maxwaittime"),
        "maxexectime": get_int(spec, "maxexectime"),
        "maxretries": get_int(spec, "maxretries"),
        "label": get_str(spec, "label"),
        "fs": _filesystem(get_dict(spec, "fs")),
        "env": dict(env or {}),
        "channels": get_str_list(spec, "channels") or [],
        "colonyname": get_str(cond, "colonyname"),
        "executornames": names,
        "executortype": get_str(cond, "executortype"),
        "locationname": get_str(cond, "locationname"),
        "dependencies": get_str_list(cond, "dependencies") or [],
        "nodes": get_int(cond, "nodes"),
        "cpu": get_str(cond, "cpu"),
        "processes": get_int(cond, "processes"),
        "processespernode": get_int(cond, "processespernode"),
        "mem": get_str(cond, "mem"),
        "storage": get_str(cond, "storage"),
        "gpuname": get_str(gpu, "name"),
        "gpumem": get_str(gpu, "mem"),
        "gpucount": get_int(gpu, "count"),
        "walltime": get_int(cond, "walltime"),
    }
    get_int(gpu, "nodecount")  # type-checked, but the Go server never stores it
    return record


def check_priority(record: dict[str, Any]) -> None:
    if not MIN_PRIORITY <= record["priority"] <= MAX_PRIORITY:
        raise RPCError(400, f"Failed to submit function spec, priority outside range [{MIN_PRIORITY}, {MAX_PRIORITY}]")


def convert_resources(record: dict[str, Any]) -> None:
    """Parse cpu/mem/storage/gpu mem to integers, in the order AddProcess does (errors -> 400)."""
    record["cpu"] = cpu_to_int(record["cpu"])
    record["mem"] = memory_to_bytes(record["mem"])
    record["storage"] = memory_to_bytes(record["storage"])
    record["gpumem"] = memory_to_bytes(record["gpumem"])


def env_attributes(process_id: str, colony: str, graph_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Env entries as attributes (type 3, id = sha3(target+key+type)), in key order."""
    return [{"attributeid": sha3_hex(process_id + key + str(ENV_ATTRIBUTE)), "key": key, "value": env[key]}
            for key in sorted(env)]


def render_spec(spec: dict[str, Any], colony: str) -> dict[str, Any]:
    conditions: dict[str, Any] = {"colonyname": colony, "executornames": spec["executornames"],
                                  "executortype": spec["executortype"]}
    if spec.get("locationname"):
        conditions["locationname"] = spec["locationname"]
    conditions.update({
        "dependencies": spec["dependencies"],
        "nodes": spec["nodes"],
        "cpu": cpu_to_str(spec["cpu"]),
        "processes": spec["processes"],
        "processespernode": spec["processespernode"],
        "mem": memory_to_str(spec["mem"]),
        "storage": memory_to_str(spec["storage"]),
        "gpu": {"name": spec["gpuname"], "mem": memory_to_str(spec["gpumem"]), "count": spec["gpucount"],
                "nodecount": 0},
        "walltime": spec["walltime"],
    })
    out: dict[str, Any] = {
        "nodename": spec["nodename"], "funcname": spec["funcname"], "args": spec["args"], "kwargs": spec["kwargs"],
        "priority": spec["priority"], "maxwaittime": spec["maxwaittime"], "maxexectime": spec["maxexectime"],
        "maxretries": spec["maxretries"], "conditions": conditions, "label": spec["label"], "fs": spec["fs"],
        "env": {a["key"]: a["value"] for a in spec.get("attributes", [])},
    }
    if spec.get("channels"):
        out["channels"] = spec["channels"]
    return out


def render_process(p: dict[str, Any], *, starttime_ns: Optional[int] = None,
                   attr_state: Optional[int] = None) -> dict[str, Any]:
    """A stored process as ``core.Process`` JSON.

    ``starttime_ns``/``attr_state`` let the assign reply show what the Go
    server's in-memory struct shows (ns start time, attributes still WAITING).
    """
    spec = p["spec"]
    colony = p["colony"]
    state_of_attrs = p["attr_state"] if attr_state is None else attr_state
    attributes = [{"attributeid": a["attributeid"], "targetid": p["id"], "targetcolonyname": colony,
                   "targetprocessgraphid": p["processgraphid"], "state": state_of_attrs, "attributetype": ENV_ATTRIBUTE,
                   "key": a["key"], "value": a["value"]} for a in spec.get("attributes", [])]
    return {
        "processid": p["id"],
        "initiatorid": p["initiatorid"],
        "initiatorname": p["initiatorname"],
        "assignedexecutorid": p["assigned"],
        "isassigned": bool(p["is_assigned"]),
        "state": p["state"],
        "prioritytime": p["prioritytime"],
        "submissiontime": go_time(p["submission"]),
        "starttime": go_time(starttime_ns if starttime_ns is not None else p["start"]),
        "endtime": go_time(p["end"]),
        "waitdeadline": go_time(p["waitdeadline"]),
        "execdeadline": go_time(p["execdeadline"]),
        "retries": p["retries"],
        "attributes": attributes,
        "spec": render_spec(spec, colony),
        "waitforparents": bool(p["waitforparents"]),
        "parents": p["parents"],
        "children": p["children"],
        "processgraphid": p["processgraphid"],
        "in": p["in"],
        "out": p["out"],
        "errors": p["errors"],
    }
