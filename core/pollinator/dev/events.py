"""In-process wake-ups: long-polling assigns and websocket process subscribers.

The Go server signals an event handler whenever a process changes; assign
long-polls wait for "something became WAITING" and ``subscribeprocessmsg``
waits for one process to reach a state. Everything runs on the server's one
event loop, so plain asyncio primitives are enough and ``signal`` is a cheap,
synchronous call the request handlers can make right after a DB write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pollinator.dev.store import WAITING


class Events:
    def __init__(self) -> None:
        self._queue_changed = asyncio.Event()
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    # -- assign long-polls -------------------------------------------------------------
    def queue_token(self) -> asyncio.Event:
        """Take this before looking at the queue; it fires on any later change (no lost wake-ups)."""
        return self._queue_changed

    def wake_assigners(self) -> None:
        fired, self._queue_changed = self._queue_changed, asyncio.Event()
        fired.set()

    # -- process subscribers -----------------------------------------------------------
    def subscribe(self, process_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.setdefault(process_id, set()).add(queue)
        return queue

    def unsubscribe(self, process_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        subs = self._subscribers.get(process_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subscribers[process_id]

    def signal(self, process: dict[str, Any]) -> None:
        """A process changed (``process`` is its stored record after the change)."""
        if process["state"] == WAITING:
            self.wake_assigners()
        for queue in self._subscribers.get(process["id"], ()):
            queue.put_nowait(process)
