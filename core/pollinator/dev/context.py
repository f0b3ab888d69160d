"""What every request handler gets, and how a handler is registered.

A handler is ``fn(ctx, recovered_id, msg) -> payload`` (or a coroutine of it,
for the long-polling assign). ``invalid_json``/``mismatch`` are the Go
handler's own error texts: each Go handler words them differently, and the
dispatcher emits them before the handler runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pollinator.dev.controller import Controller
from pollinator.dev.events import Events
from pollinator.dev.store import Store

EMPTY: dict[str, Any] = {}


@dataclass
class Ctx:
    store: Store
    events: Events
    controller: Controller
    server_id: str


@dataclass(frozen=True)
class Handler:
    fn: Callable[[Ctx, str, dict[str, Any]], Any]
    invalid_json: str
    mismatch: str


def handler(action: str, *, invalid_json: str = "", mismatch_action: str = "",
            lower_msgtype: bool = False) -> Callable[[Callable[..., Any]], Handler]:
    """Wrap ``fn`` with messages built like the Go ones: 'Failed to <action>, ...'."""
    field = "msg.msgType" if lower_msgtype else "msg.MsgType"

    def wrap(fn: Callable[..., Any]) -> Handler:
        return Handler(fn, invalid_json or f"Failed to {action}, invalid JSON",
                       f"Failed to {mismatch_action or action}, {field} does not match payloadType")

    return wrap
