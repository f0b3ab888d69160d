"""In-process wake-ups: long-polling assigns and websocket process subscribers.

The Go server signals its event handler whenever a process changes. A submit
(any change *to* WAITING) wakes assign long-polls the way the Go
``DefaultEventHandler`` does: exactly ONE waiting ``assignprocessmsg`` among
those of the process's executor type (and location), chosen round-robin, not
the executor the spec names. With several executors of one type waiting, the
named one may sleep until its own long-poll times out; the suite must see
that, so it is the default. ``wake_all=True`` wakes every waiter instead (the
kinder behaviour this server had before; only for experiments).

``subscribeprocessmsg`` waits for one process to reach a state; those
subscribers all hear every change of their process (the Go handler's first,
broadcast pass). Everything runs on the server's one event loop, so plain
asyncio primitives are enough and ``signal`` is a cheap synchronous call the
request handlers make right after a DB write.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pollinator.dev.store import WAITING

Target = tuple[str, str]  # (executor type, location)


class Events:
    def __init__(self, *, wake_all: bool = False) -> None:
        self.wake_all = wake_all
        self._ids = itertools.count()
        self._waiters: dict[Target, dict[int, asyncio.Event]] = {}
        self._next: dict[Target, int] = {}
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    # -- assign long-polls -------------------------------------------------------------
    def wait_for_waiting(self, executor_type: str, location: str) -> tuple[int, asyncio.Event]:
        """Register one long-poll of an executor; its event fires when a signal picks it.

        Call ``stop_waiting`` when done (a picked waiter is removed already, like the Go listener)."""
        listener, event = next(self._ids), asyncio.Event()
        self._waiters.setdefault((executor_type, location), {})[listener] = event
        return listener, event

    def stop_waiting(self, executor_type: str, location: str, listener: int) -> None:
        target = (executor_type, location)
        waiters = self._waiters.get(target)
        if waiters is not None:
            waiters.pop(listener, None)
            if not waiters:
                del self._waiters[target]

    def waiting(self, executor_type: str) -> int:
        """How many assign long-polls of this type wait now (tests and benchmarks look)."""
        return sum(len(w) for (t, _), w in self._waiters.items() if t == executor_type)

    def _wake_assigners(self, executor_type: str, location: str) -> None:
        # The Go targets: a located process wakes its location's waiters and the location-less ones;
        # a process without location wakes waiters of its type anywhere.
        if location:
            targets = [(executor_type, location), (executor_type, "")]
        else:
            targets = [t for t in self._waiters if t[0] == executor_type]
        for target in targets:
            waiters = self._waiters.get(target)
            if not waiters:
                continue
            if self.wake_all:
                for event in waiters.values():
                    event.set()
                continue
            order = sorted(waiters)
            index = self._next.get(target, 0) % len(order)
            self._next[target] = index + 1
            picked = order[index]
            waiters[picked].set()
            return  # one waiter per signal, across all targets

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
            spec = process["spec"]
            self._wake_assigners(spec.get("executortype", ""), spec.get("locationname", ""))
        for queue in self._subscribers.get(process["id"], ()):
            queue.put_nowait(process)
