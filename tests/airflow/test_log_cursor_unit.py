"""``LogCursorStore``: the trigger's cursor as an XCom of its task instance, and how it degrades.

The supervisor comms are a stand-in answering the same messages the Airflow 3.3 triggerer answers
(``GetXCom`` / ``SetXCom``); the real triggerer is in ``test_e2e_triggerer_process.py``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from pollinator_airflow.log_cursor import CURSOR_KEY, LogCursorStore

TI = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)


class _Log:
    def __init__(self):
        self.lines: list[str] = []

    def _add(self, msg, *args, **kw):
        self.lines.append(msg % args if args else msg)

    info = warning = debug = error = exception = _add


class _Comms:
    def __init__(self, fail: bool = False):
        self.xcoms: dict[tuple, object] = {}
        self.fail = fail

    async def asend(self, msg):
        from airflow.sdk.execution_time.comms import GetXCom, SetXCom, XComResult

        if self.fail:
            raise ConnectionResetError("supervisor went away")
        where = (msg.dag_id, msg.run_id, msg.task_id, msg.map_index, msg.key)
        if isinstance(msg, SetXCom):
            self.xcoms[where] = msg.value
            return None
        assert isinstance(msg, GetXCom)
        return XComResult(key=msg.key, value=self.xcoms.get(where))


@pytest.fixture
def comms(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    box = _Comms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", box, raising=False)
    return box


def test_round_trip_through_the_task_instance_xcom(comms):
    log = _Log()
    store = LogCursorStore(TI, "p1", log)
    assert asyncio.run(store.load()) == 0
    asyncio.run(store.save(42))
    assert comms.xcoms[("d", "r", "t", -1, CURSOR_KEY)] == {"process_id": "p1", "since": 42}
    assert asyncio.run(LogCursorStore(TI, "p1", log).load()) == 42  # a rebuilt trigger reads it
    assert log.lines == []


def test_a_cursor_of_another_process_is_not_applied(comms):
    asyncio.run(LogCursorStore(TI, "p1", _Log()).save(42))
    assert asyncio.run(LogCursorStore(TI, "p2", _Log()).load()) == 0


def test_no_task_instance_keeps_no_cursor_and_says_nothing(comms):
    log = _Log()
    store = LogCursorStore(None, "p1", log)
    asyncio.run(store.save(5))
    assert asyncio.run(store.load()) == 0 and comms.xcoms == {} and log.lines == []


def test_no_supervisor_comms_is_said_once(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    log = _Log()
    store = LogCursorStore(TI, "p1", log)
    assert asyncio.run(store.load()) == 0
    asyncio.run(store.save(5))
    asyncio.run(store.save(6))
    assert len(log.lines) == 1 and "Log cursor not kept" in log.lines[0]


def test_failing_comms_never_fail_the_trigger_and_are_said_once(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", _Comms(fail=True), raising=False)
    log = _Log()
    store = LogCursorStore(TI, "p1", log)
    assert asyncio.run(store.load()) == 0
    asyncio.run(store.save(5))
    assert len(log.lines) == 1 and "supervisor went away" in log.lines[0]


class _Follower:
    """Two polls' batches of lines, then final; ``pending`` as the core's follower keeps it."""

    def __init__(self, batches, since_seen: list):
        from pollinator.colonies.models import Log, Process, ProcessState

        self.batches = [[Log(message=m, timestamp=ts) for m, ts in batch] for batch in batches]
        self.process = Process(processid="p1", state=int(ProcessState.SUCCESS))
        self.last_timestamp = 0
        self.pending = 0
        self.since_seen = since_seen

    def __aiter__(self):
        return self._gen()

    async def _gen(self):
        for batch in self.batches:
            fresh = [line for line in batch if line.timestamp > self.since_seen[0]]
            self.pending = len(fresh)
            for line in fresh:
                self.pending -= 1
                self.last_timestamp = line.timestamp
                yield line


def test_trigger_starts_after_the_stored_cursor_and_writes_it_once_per_batch(comms, monkeypatch):
    import pollinator_airflow.triggers as triggers
    from pollinator_airflow.hooks import PollinatorHook
    from pollinator_airflow.triggers import PollinatorTrigger

    import fakes

    async def aget_settings(self):
        return fakes.settings()

    writes: list[int] = []
    save = LogCursorStore.save

    async def counting_save(self, since):
        writes.append(since)
        await save(self, since)

    monkeypatch.setattr(PollinatorHook, "aget_settings", aget_settings)
    monkeypatch.setattr(LogCursorStore, "save", counting_save)
    log = _Log()
    monkeypatch.setattr(PollinatorTrigger, "log", property(lambda self: log))
    asyncio.run(LogCursorStore(TI, "p1", _Log()).save(2))  # an earlier trigger of this try logged up to 2
    writes.clear()
    seen = [None]

    def follow(client, pid, since, interval):
        seen[0] = since
        return _Follower([[("a", 1), ("b", 2), ("c", 3)], [("d\ne", 4)]], seen)

    monkeypatch.setattr(triggers, "_follow", follow)
    trigger = PollinatorTrigger(process_id="p1", since=1)  # the kwargs stored at deferral: behind
    trigger.task_instance = TI
    events = asyncio.run(_collect(trigger))
    assert seen[0] == 2 and log.lines == ["c", "d", "e"]
    assert writes == [3, 4]  # after each batch, not each line
    assert events[0].payload["status"] == "success" and events[0].payload["last_timestamp"] == 4


async def _collect(trigger):
    return [event async for event in trigger.run()]
