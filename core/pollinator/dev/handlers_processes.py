"""Processes: submit, read, assign (long-poll), close, cancel, output."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pollinator.colonies import crypto
from pollinator.dev.context import EMPTY, Ctx, Handler, handler
from pollinator.dev.procjson import check_priority, convert_resources, env_attributes, parse_spec, render_process
from pollinator.dev.security import require_membership
from pollinator.dev.store import RUNNING, WAITING
from pollinator.dev.wire import (
    RPCError, cpu_to_int, db_ns, get_dict, get_int, get_list, get_str, get_str_list, go_value, memory_to_bytes, now_ns,
)

MAX_COUNT = 100
_DAY_NS = 86400 * 1_000_000_000
_UNLIMITED = 2**63 - 1


def _process_or(ctx: Ctx, msg: dict[str, Any], status: int, message: str) -> dict[str, Any]:
    process = ctx.store.get_process(get_str(msg, "processid"))
    if process is None:
        raise RPCError(status, message)
    return process


@handler("submit process", mismatch_action="submit process spec")
def submit(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    raw = get_dict(msg, "spec")
    if raw is None:
        raise RPCError(400, "Failed to submit process spec, msg.FunctionSpec is nil")
    spec = parse_spec(raw)
    colony = spec["colonyname"]
    require_membership(ctx.store, rid, colony)
    check_priority(spec)
    executor = ctx.store.executor_by_id(rid)
    if executor is not None:
        initiator = executor["name"]
    else:
        user = ctx.store.user_by_id(colony, rid)
        if user is None:
            raise RPCError(400, "Could not derive InitiatorName")
        initiator = user["name"]
    process_id = crypto.random_id()
    submitted = now_ns()
    convert_resources(spec)
    spec["attributes"] = env_attributes(process_id, colony, "", spec["env"])
    maxwaittime = spec["maxwaittime"]
    process = {
        "id": process_id, "colony": colony, "state": WAITING, "is_assigned": False, "assigned": "",
        "prioritytime": spec["priority"] * -_DAY_NS + submitted, "submission": db_ns(submitted), "start": 0,
        "end": 0, "waitdeadline": db_ns(submitted + maxwaittime * 1_000_000_000) if maxwaittime > 0 else 0,
        "execdeadline": 0, "retries": 0, "label": spec["label"], "initiatorid": rid, "initiatorname": initiator,
        "attr_state": WAITING, "errors": [], "in": [], "out": [], "spec": spec, "parents": [], "children": [],
        "processgraphid": "", "waitforparents": False,
    }
    return render_process(ctx.controller.submit(process))


@handler("get process")
def get_process(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    process = _process_or(ctx, msg, 404, "Failed to get process, process not found")
    require_membership(ctx.store, rid, process["colony"])
    return render_process(process)


@handler("get processes")
def get_processes(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_str(msg, "colonyname")
    count, state = get_int(msg, "count"), get_int(msg, "state")
    executor_type, label, initiator = get_str(msg, "executortype"), get_str(msg, "label"), get_str(msg, "initiator")
    require_membership(ctx.store, rid, colony)
    if count > MAX_COUNT:
        raise RPCError(400, f"Count is larger than MaxCount limit <{MAX_COUNT}>")
    if initiator and not any(u["name"] == initiator for u in ctx.store.users(colony)):
        raise RPCError(400, f"User <{initiator}> does not exist")
    if state not in range(5):
        raise RPCError(400, "Failed to get processes, invalid msg.State")
    found = ctx.store.find_processes(colony, state, executor_type, label, initiator, count)
    return [render_process(p) for p in found] or None


@handler("remove process")
def remove_process(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    process = _process_or(ctx, msg, 500, "Failed to remove process, process is nil")
    require_membership(ctx.store, rid, process["colony"])
    if process["processgraphid"]:
        raise RPCError(400, "Failed to remove, cannot remove a process part of a workflow, delete the entire "
                            "workflow instead")
    if process["state"] == RUNNING:
        raise RPCError(400, "Failed to remove process, cannot remove a running process")
    ctx.store.remove_process(process["id"])
    return EMPTY


@handler("cancel process")
def cancel_process(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    process = _process_or(ctx, msg, 500, "Failed to cancel process, process is nil")
    require_membership(ctx.store, rid, process["colony"])
    if process["processgraphid"]:
        raise RPCError(400, "Failed to cancel, cannot cancel a process part of a workflow, cancel the entire "
                            "workflow instead")
    ctx.controller.cancel(process["id"])
    return EMPTY


@handler("set output")
def set_output(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    out = get_list(msg, "out")
    process = _process_or(ctx, msg, 500, "Failed to set output, process is nil")
    require_membership(ctx.store, rid, process["colony"])
    if process["assigned"] != rid:
        raise RPCError(403, "Failed to close process as successful, not allowed to close process as successful")
    if process["state"] != RUNNING:
        raise RPCError(403, "Failed to set output, process is not running")
    if out:
        ctx.store.update_process(process["id"], out=go_value(out))
    return EMPTY


def _closable(ctx: Ctx, rid: str, msg: dict[str, Any], how: str) -> dict[str, Any]:
    process = _process_or(ctx, msg, 500, f"Failed to close process as {how}, process is nil")
    require_membership(ctx.store, rid, process["colony"])
    if process["assigned"] == "":
        raise RPCError(403, f"Failed to close process as {how}, process is not assigned")
    if process["assigned"] != rid:
        raise RPCError(403, f"Failed to close process as {how}, not allowed to close process as {how}")
    return process


@handler("close successful", mismatch_action="close process as successful")
def close_successful(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    out = get_list(msg, "out")
    process = _closable(ctx, rid, msg, "successful")
    ctx.controller.close_successful(process["id"], go_value(out or []))
    return EMPTY


@handler("close failed", mismatch_action="close process as failed")
def close_failed(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    errors = get_str_list(msg, "errors")
    process = _closable(ctx, rid, msg, "failed")
    ctx.controller.close_failed(process["id"], errors)
    return EMPTY


@handler("assign process", lower_msgtype=True)
async def assign(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    """Long-poll: try, then wait to be woken (one waiter of the type per submit, see events), until
    ``timeout`` s; < 0 means one attempt."""
    colony = get_str(msg, "colonyname")
    timeout = get_int(msg, "timeout")
    avail_cpu, avail_mem = get_str(msg, "availablecpu"), get_str(msg, "availablemem")
    require_membership(ctx.store, rid, colony)
    if timeout == 0:
        raise RPCError(400, "Invalid timeout value, timeout cannot be zero")
    executor = ctx.store.executor_by_id(rid)
    if executor is None:
        raise RPCError(500, "Failed to assign process, executor not found")
    cpu = _UNLIMITED if avail_cpu == "" else cpu_to_int(avail_cpu)
    mem = _UNLIMITED if avail_mem == "" else memory_to_bytes(avail_mem)
    deadline = time.monotonic() + timeout
    while True:
        assigned = ctx.controller.assign(executor, colony, cpu, mem)
        if assigned is not None:
            before, start = assigned
            reply = {**before, "is_assigned": True, "assigned": rid, "state": RUNNING}
            # The Go reply is the in-memory struct: ns start time, execdeadline and attribute states not updated.
            return render_process(reply, starttime_ns=start)
        remaining = deadline - time.monotonic()
        if timeout < 0 or remaining <= 0:
            raise RPCError(404, "No process available for assignment")
        # Registered after the attempt, as in Go; no signal can come in between (one event loop).
        listener, woken = ctx.events.wait_for_waiting(executor["type"], executor["location"])
        try:
            await asyncio.wait_for(woken.wait(), remaining)
        except asyncio.TimeoutError:
            raise RPCError(404, "No process available for assignment") from None
        finally:
            ctx.events.stop_waiting(executor["type"], executor["location"], listener)


HANDLERS: dict[str, Handler] = {
    "submitfuncspecmsg": submit,
    "getprocessmsg": get_process,
    "getprocessesmsg": get_processes,
    "removeprocessmsg": remove_process,
    "cancelprocessmsg": cancel_process,
    "setoutputmsg": set_output,
    "closesuccessfulmsg": close_successful,
    "closefailedmsg": close_failed,
    "assignprocessmsg": assign,
}
