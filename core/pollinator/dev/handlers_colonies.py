"""Colonies, users and executors: registration, approval and statistics."""

from __future__ import annotations

from typing import Any, Optional

from pollinator.colonies.models import parse_go_time
from pollinator.dev.context import EMPTY, Ctx, Handler, handler
from pollinator.dev.security import require_colony_owner, require_membership, require_server_owner
from pollinator.dev.store import APPROVED, CANCELLED, FAILED, REJECTED, RUNNING, SUCCESS, UNREGISTERED, WAITING
from pollinator.dev.security import is_member
from pollinator.dev.wire import (
    BadType, NoReply, RPCError, db_ns, get_bool, get_dict, get_int, get_list, get_str, go_time,
)


# -- colonies ----------------------------------------------------------------------------
@handler("add colony")
def add_colony(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_dict(msg, "colony")
    colony_id = get_str(colony or {}, "colonyid")
    name = get_str(colony or {}, "name")
    require_server_owner(rid, ctx.server_id)
    if colony is None:
        raise RPCError(400, "Failed to add colony, colony is <nil>")
    if len(colony_id) != 64:
        raise RPCError(400, "Failed to add colony, invalid colony Id length")
    if ctx.store.colony_by_name(name) is not None:
        raise RPCError(400, f"A Colony with name <{name}> already exists")
    if any(c["colonyid"] == colony_id for c in ctx.store.colonies()):
        raise RPCError(400, "pq: duplicate key value violates unique constraint \"colonies_pkey\"")
    ctx.store.add_colony(colony_id, name)
    return {"colonyid": colony_id, "name": name}


@handler("get colony")
def get_colony(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    name = get_str(msg, "colonyname")
    require_membership(ctx.store, rid, name)
    colony = ctx.store.colony_by_name(name)
    if colony is None:
        raise RPCError(500, "Failed to get colony, colony is nil")
    return colony


@handler("get colonies")
def get_colonies(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    require_server_owner(rid, ctx.server_id)
    return ctx.store.colonies() or None


@handler("get colony statistics")
def get_colony_stats(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    name = get_str(msg, "colonyname")
    if ctx.store.colony_by_name(name) is None:
        raise RPCError(400, f"Colony with name <{name}> not found")
    if not is_member(ctx.store, rid, name):
        raise NoReply()  # the Go handler returns without writing a reply here
    s = ctx.store
    return {
        "colonies": 1,
        "executors": s.count_executors(name),
        "activeexecutors": s.count_executors(name, APPROVED),
        "unregisteredexecutors": s.count_executors(name, UNREGISTERED),
        "waitingprocesses": s.count_processes(name, WAITING),
        "runningprocesses": s.count_processes(name, RUNNING),
        "successfulprocesses": s.count_processes(name, SUCCESS),
        "failedprocesses": s.count_processes(name, FAILED),
        "cancelledprocesses": s.count_processes(name, CANCELLED),
        "waitingworkflows": 0, "runningworkflows": 0, "successfulworkflows": 0, "failedworkflows": 0,
        "cancelledworkflows": 0,
    }


# -- users -------------------------------------------------------------------------------
def _existing_colony(ctx: Ctx, name: str) -> dict[str, str]:
    colony = ctx.store.colony_by_name(name)
    if colony is None:
        raise RPCError(400, f"Colony with name <{name}> does not exists")
    return colony


@handler("add user")
def add_user(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    raw = get_dict(msg, "user")
    if raw is None:
        raise RPCError(400, "Failed to add user, executor is nil")
    user = {k: get_str(raw, k) for k in ("colonyname", "userid", "name", "email", "phone")}
    colony = _existing_colony(ctx, user["colonyname"])
    require_colony_owner(ctx.store, rid, colony["name"])
    if ctx.store.user_by_name(user["colonyname"], user["name"]) is not None:
        raise RPCError(400, f"A user with name <{user['name']}> already exists in Colony with name "
                            f"<{user['colonyname']}>")
    ctx.store.add_user(user)
    return ctx.store.user_by_name(colony["name"], user["name"])


@handler("get user")
def get_user(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony_name, name = get_str(msg, "colonyname"), get_str(msg, "name")
    _existing_colony(ctx, colony_name)
    require_membership(ctx.store, rid, colony_name, approved=False)
    user = ctx.store.user_by_name(colony_name, name)
    if user is None:
        raise RPCError(500, "Failed to get user, user is nil")
    return user


@handler("get users")
def get_users(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony_name = get_str(msg, "colonyname")
    _existing_colony(ctx, colony_name)
    require_membership(ctx.store, rid, colony_name, approved=False)
    return ctx.store.users(colony_name) or None


# -- executors ---------------------------------------------------------------------------
def render_executor(ex: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "executorid": ex["id"], "executortype": ex["type"], "executorname": ex["name"], "colonyname": ex["colony"],
        "state": ex["state"], "requirefuncreg": ex["requirefuncreg"], "commissiontime": go_time(ex["commission"]),
        "lastheardfromtime": go_time(ex["lastheard"]),
    }
    if ex["location"]:
        out["locationname"] = ex["location"]
    out["capabilities"] = ex["capabilities"]
    out["allocations"] = ex["allocations"]
    return out


def _time_ns(text: str) -> int:
    try:
        parsed = parse_go_time(text)
    except ValueError:
        raise BadType("time") from None
    return 0 if parsed is None else db_ns(int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000)


def _capabilities(raw: Optional[dict[str, Any]]) -> dict[str, Any]:
    raw = raw or {}
    return {"hardware": get_list(raw, "hardware"), "software": get_list(raw, "software")}


@handler("add executor")
def add_executor(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    raw = get_dict(msg, "executor")
    if raw is None:
        raise RPCError(400, "Failed to add executor, executor is nil")
    allocations = get_dict(raw, "allocations") or {}
    lastheard = get_str(raw, "lastheardfromtime")
    ex_id, name, colony = get_str(raw, "executorid"), get_str(raw, "executorname"), get_str(raw, "colonyname")
    ex = {"id": ex_id, "type": get_str(raw, "executortype"), "name": name, "colony": colony,
          "requirefuncreg": get_bool(raw, "requirefuncreg"), "location": get_str(raw, "locationname"),
          "capabilities": _capabilities(get_dict(raw, "capabilities")),
          "allocations": {"projects": get_dict(allocations, "projects")},
          "lastheard": _time_ns(lastheard)}
    get_int(raw, "state")  # type-checked; the server always starts an executor PENDING
    require_colony_owner(ctx.store, rid, colony)
    existing = ctx.store.executor_by_name(colony, name)
    if existing is not None:
        # COLONIES_ALLOW_EXECUTOR_REREGISTER=true: the old registration is retired, the name gets the new id.
        _retire_executor(ctx, colony, name)
    other = ctx.store.executor_by_id(ex_id)
    if other is not None and (other["colony"], other["name"]) != (colony, name):
        raise RPCError(400, "Executor not unique, both Name and ExecutorId must be unique within a Colony")
    ctx.store.put_executor(ex)
    added = ctx.store.executor_by_id(ex_id)
    if added is None:
        raise RPCError(500, "Failed to add executor, addedExecutor is nil")
    return render_executor(added)


def _retire_executor(ctx: Ctx, colony: str, name: str) -> None:
    for process_id in ctx.store.unregister_executor(colony, name):
        process = ctx.store.get_process(process_id)
        if process is not None:
            ctx.events.signal(process)


def _named_executor(ctx: Ctx, msg: dict[str, Any], action: str) -> dict[str, Any]:
    executor = ctx.store.executor_by_name(get_str(msg, "colonyname"), get_str(msg, "executorname"))
    if executor is None:
        raise RPCError(500, f"Failed to {action}, executor is nil")
    return executor


@handler("get executor")
def get_executor(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    executor = _named_executor(ctx, msg, "get executor")
    require_membership(ctx.store, rid, executor["colony"])
    return render_executor(executor)


@handler("get executors")
def get_executors(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony_name = get_str(msg, "colonyname")
    require_membership(ctx.store, rid, colony_name, approved=False)
    return [render_executor(e) for e in ctx.store.executors(colony_name)] or None


def _set_state(ctx: Ctx, rid: str, msg: dict[str, Any], action: str, state: int) -> Any:
    executor = _named_executor(ctx, msg, action)
    require_colony_owner(ctx.store, rid, executor["colony"])
    ctx.store.set_executor_state(executor["colony"], executor["name"], state)
    return EMPTY


@handler("approve executor")
def approve_executor(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    return _set_state(ctx, rid, msg, "approve executor", APPROVED)


@handler("reject executor")
def reject_executor(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    return _set_state(ctx, rid, msg, "reject executor", REJECTED)


@handler("remove executor")
def remove_executor(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    executor = _named_executor(ctx, msg, "remove executor")
    require_colony_owner(ctx.store, rid, executor["colony"])
    _retire_executor(ctx, executor["colony"], executor["name"])
    return EMPTY


HANDLERS: dict[str, Handler] = {
    "addcolonymsg": add_colony,
    "getcolonymsg": get_colony,
    "getcoloniesmsg": get_colonies,
    "getcolonystatsmsg": get_colony_stats,
    "addusermsg": add_user,
    "getusermsg": get_user,
    "getusersmsg": get_users,
    "addexecutormsg": add_executor,
    "getexecutormsg": get_executor,
    "getexecutorsmsg": get_executors,
    "approveexecutormsg": approve_executor,
    "rejectexecutormsg": reject_executor,
    "removeexecutormsg": remove_executor,
}
