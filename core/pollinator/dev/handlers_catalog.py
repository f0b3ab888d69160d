"""Crons, functions and blueprints: listed (empty) so the Go CLI's `cron ls`, `function ls` and
`blueprint ls` work against the local colony, which has none of them.

The real server answers these for members (blueprints also for the colony owner); with nothing
registered, crons come back as ``[]`` and functions and blueprints as ``null`` (Go's nil slice),
as captured in tests/data/colonies-protocol/more/. Creating them is not supported locally: those
messages stay "invalid rpcMsg.PayloadType".
"""

from __future__ import annotations

from typing import Any

from pollinator.dev.context import Ctx, Handler, handler
from pollinator.dev.security import require_colony_owner, require_membership
from pollinator.dev.wire import RPCError, get_int, get_str


@handler("get crons")
def get_crons(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_str(msg, "colonyname")
    get_int(msg, "count")
    require_membership(ctx.store, rid, colony)
    return []  # FindCronsByColonyName: the handler turns nil into an empty array


@handler("get function")
def get_functions(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    get_str(msg, "executorname")
    colony = get_str(msg, "colonyname")
    require_membership(ctx.store, rid, colony)
    return None


@handler("get blueprints")
def get_blueprints(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    namespace = get_str(msg, "namespace")
    get_str(msg, "kind")
    get_str(msg, "locationname")
    try:
        require_membership(ctx.store, rid, namespace)
    except RPCError:
        require_colony_owner(ctx.store, rid, namespace)  # its error is the one reported, as in Go
    return None


HANDLERS: dict[str, Handler] = {
    "getcronsmsg": get_crons,
    "getfunctionsmsg": get_functions,
    "getblueprintsmsg": get_blueprints,
}
