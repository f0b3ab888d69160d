"""Process logs: only the assigned executor writes, members read (``since`` is exclusive)."""

from __future__ import annotations

from typing import Any

from pollinator.dev.context import EMPTY, Ctx, Handler, handler
from pollinator.dev.security import require_membership
from pollinator.dev.store import RUNNING
from pollinator.dev.wire import RPCError, get_bool, get_int, get_str

MAX_LOG_COUNT = 500
MAX_SEARCH_COUNT = 100
MAX_SEARCH_DAYS = 30
PG_NUL_REFUSED = 'pq: invalid byte sequence for encoding "UTF8": 0x00'


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
    if "\x00" in message:  # PostgreSQL text cannot hold NUL: the real server refuses the whole message
        raise RPCError(400, PG_NUL_REFUSED, then_status=500)
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


@handler("get logs", invalid_json="Failed to search logs, invalid JSON")
def search_logs(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    """`colonies log search`: lines of the colony containing ``text`` added in the last ``days`` days."""
    colony, text = get_str(msg, "colonyname"), get_str(msg, "text")
    days, count = get_int(msg, "days"), get_int(msg, "count")
    require_membership(ctx.store, rid, colony)
    if count > MAX_SEARCH_COUNT:
        raise RPCError(400, f"Count exceeds max log count ({MAX_SEARCH_COUNT})")
    if days > MAX_SEARCH_DAYS:
        raise RPCError(400, f"Count exceeds max day count ({MAX_SEARCH_DAYS})")  # sic: the Go server's text
    if count < 0:
        raise RPCError(400, "pq: LIMIT must not be negative")
    return ctx.store.search_logs(colony, text, days, count) or None  # no match: null, as the Go reply


HANDLERS: dict[str, Handler] = {
    "addlogmsg": add_log,
    "getlogsmsg": get_logs,
    "searchlogsmsg": search_logs,
}
