"""Which waiting assign a submit wakes: the Go event handler's targets (type + location), one waiter, round-robin."""

from __future__ import annotations

import asyncio

from pollinator.dev.events import Events
from pollinator.dev.store import RUNNING, WAITING


def _process(executor_type: str, location: str = "", state: int = WAITING) -> dict:
    return {"id": "p", "state": state, "spec": {"executortype": executor_type, "locationname": location}}


def _woken(events: Events, waiters: dict[str, tuple[int, asyncio.Event]]) -> set[str]:
    return {name for name, (_, event) in waiters.items() if event.is_set()}


def test_one_waiter_per_signal_round_robin_by_type_and_location() -> None:
    async def scenario() -> None:
        events = Events()
        waiters = {name: events.wait_for_waiting(t, loc) for name, t, loc in (
            ("a", "gpu", ""), ("b", "gpu", ""), ("eu", "gpu", "eu"), ("us", "gpu", "us"), ("cpu", "cpu", ""))}
        events.signal(_process("gpu", "eu"))  # its location's waiters first, else the location-less ones
        assert _woken(events, waiters) == {"eu"}
        events.signal(_process("gpu", "eu"))  # round-robin within the target: eu is the only one there
        assert _woken(events, waiters) == {"eu"}
        events.stop_waiting("gpu", "eu", waiters.pop("eu")[0])
        events.signal(_process("gpu", "eu"))
        assert _woken(events, waiters) == {"a"}
        events.signal(_process("gpu", "eu"))
        assert _woken(events, waiters) == {"a", "b"}  # the next one, not every one
        events.signal(_process("gpu", "us", state=RUNNING))  # only changes TO waiting wake anyone
        assert "us" not in _woken(events, waiters)
        events.signal(_process("cpu"))
        assert _woken(events, waiters) == {"a", "b", "cpu"}
        assert events.waiting("gpu") == 3

    asyncio.run(scenario())


def test_a_process_without_location_wakes_a_waiter_anywhere_and_wake_all_wakes_every_one() -> None:
    async def scenario() -> None:
        events = Events()
        only = {"us": events.wait_for_waiting("gpu", "us")}
        events.signal(_process("gpu"))
        assert _woken(events, only) == {"us"}
        kind = Events(wake_all=True)
        every = {name: kind.wait_for_waiting("gpu", loc) for name, loc in (("a", ""), ("b", ""), ("eu", "eu"))}
        kind.signal(_process("gpu", "eu"))
        assert _woken(kind, every) == {"a", "b", "eu"}

    asyncio.run(scenario())
