"""Process logs: only the assigned executor writes, members read (``since`` is exclusive)."""

from __future__ import annotations

from typing import Any

from pollinator.dev.context import EMPTY, Ctx, Handler, handler
from pollinator.dev.security import require_membership
from pollinator.dev.store import RUNNING
from pollinator.dev.wire import RPCError, get_bool, get_int, get_str

MAX_LOG_COUNT = 500


@handler("add log")
def add_log(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    message = get_str(msg, "message")
    process = ctx.store.get_process(get_str(msg, "processid"))
    if process is None:
        raise RPCError(500, "Failed to add log, process is nil")
    require_membership(ctx.store, rid, process["colony"])
    executor = ctx.store.executor_by_id(rid)
    if process["state"] != RUNNING:
        raise RPCError(403, "Failed to set output, process is not running")  # sic: the Go server's text
    if process["assigned"] != rid or executor is None:
        raise RPCError(403, "Failed to add log, not allowed to add log, only the assigned Executor may att logs")
    ctx.store.add_log(process["id"], process["colony"], executor["name"], message)
    return EMPTY


@handler("get logs")
def get_logs(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, executor_name = get_str(msg, "colonyname"), get_str(msg, "executorname")
    process_id = get_str(msg, "processid")
    count, since, latest = get_int(msg, "count"), get_int(msg, "since"), get_bool(msg, "latest")
    if executor_name:
        executor = ctx.store.executor_by_name(colony, executor_name)
        if executor is None:
            raise RPCError(500, "Failed to get logs, executor does not exist")
        require_membership(ctx.store, rid, executor["colony"])
    else:
        process = ctx.store.get_process(process_id)
        if process is None:
            raise RPCError(500, "Failed to get logs, process does not exist")
        require_membership(ctx.store, rid, process["colony"])
    if count > MAX_LOG_COUNT:
        raise RPCError(403, f"Count exceeds max log count ({MAX_LOG_COUNT})")
    logs = ctx.store.get_logs(process_id=process_id, executor_name=executor_name, count=count, since=since,
                              latest=latest)
    return logs or None  # Go's nil slice: an empty result is JSON null


HANDLERS: dict[str, Handler] = {
    "addlogmsg": add_log,
    "getlogsmsg": get_logs,
}
