"""The log cursor travels: a trigger rebuilt mid-job from its DEFERRAL kwargs logs every remote line once.

Against the local colony: the operator submits and defers; the trigger follows the process in an event
loop; mid-job it is cancelled (as a triggerer shutting down cancels its triggers) and a new trigger is
built from the kwargs the task stored when it deferred (as the next triggerer builds it: not from the
running trigger, whose cursor is further on). The cursor reaches the new trigger through the task
instance's ``pollinator_log_cursor`` XCom, served here by a stand-in for the triggerer's supervisor comms
(the same messages the real one answers; ``test_e2e_triggerer_process.py`` runs the real triggerer).
Across both, every remote line is one log record, exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import TaskDeferred

from fakes import FakeStore, FakeTI, context
from pollinator_airflow.log_cursor import CURSOR_KEY
from pollinator_airflow.operators import PollinatorOperator
from pollinator_airflow.triggers import PollinatorTrigger

LINES = 60


class _Records:
    def __init__(self):
        self.records: list[str] = []

    def _add(self, msg, *args, **kw):
        self.records.append(msg % args if args else msg)

    info = warning = debug = error = exception = _add


class _SupervisorComms:
    """Answers GetXCom / SetXCom as the triggerer's supervisor does, from a dict (the metadata DB)."""

    def __init__(self):
        self.xcoms: dict[tuple, object] = {}
        self.writes = 0

    async def asend(self, msg):
        from airflow.sdk.execution_time.comms import GetXCom, SetXCom, XComResult

        where = (msg.dag_id, msg.run_id, msg.task_id, msg.map_index)
        if isinstance(msg, SetXCom):
            self.xcoms[where + (msg.key,)] = msg.value
            self.writes += 1
            return None
        if isinstance(msg, GetXCom):
            return XComResult(key=msg.key, value=self.xcoms.get(where + (msg.key,)))
        raise AssertionError(f"unexpected message {msg!r}")


def _deferred(name: str):
    op = PollinatorOperator(task_id=name, executor_names=["dev-hpc"], name=name.replace("_", "-"),
                            cmd=f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done",
                            deferrable=True, poll_interval=0.2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(FakeTI(dag_id="restart", task_id=name, run_id="r1"), FakeStore()))
    return op, dict(deferred.value.trigger.serialize()[1])  # what the metadata DB stores at deferral


def _restart_mid_job(kwargs: dict, records: _Records, ti) -> object:
    """Run a trigger from ``kwargs`` until 15 lines are logged, cancel it, run a new one from the same kwargs."""

    def delivered() -> int:
        return sum(1 for r in records.records if r.startswith("line-"))

    def build():
        trigger = PollinatorTrigger(**kwargs)
        trigger.task_instance = ti  # as the triggerer sets it
        return trigger

    async def scenario():
        task = asyncio.create_task(_first_event(build()))
        while delivered() < 15:  # mid-job: some lines shown, more to come
            assert not task.done(), records.records
            await asyncio.sleep(0.02)
        task.cancel()  # the triggerer stops
        with pytest.raises(asyncio.CancelledError):
            await task
        assert delivered() < LINES
        return await asyncio.wait_for(_first_event(build()), 120)

    return asyncio.run(scenario())


def test_trigger_rebuilt_from_deferral_kwargs_logs_each_remote_line_once(in_colony_env, monkeypatch):
    from airflow.sdk.execution_time import task_runner

    records = _Records()
    monkeypatch.setattr(PollinatorTrigger, "log", property(lambda self: records))
    comms = _SupervisorComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    op, kwargs = _deferred("restart")
    assert kwargs["since"] == 0
    ti = SimpleNamespace(dag_id="restart", task_id="restart", run_id="r1", map_index=-1, try_number=1)
    event = _restart_mid_job(kwargs, records, ti)

    assert event.payload["status"] == "success", event.payload
    user = [r for r in records.records if r.startswith("line-")]
    counts = Counter(user)
    assert sorted(counts) == sorted(f"line-{i}" for i in range(1, LINES + 1))
    assert set(counts.values()) == {1}, [line for line, n in counts.items() if n > 1]
    assert all("\n" not in r for r in records.records)  # one record per remote line
    assert user == [f"line-{i}" for i in range(1, LINES + 1)]  # in order
    stored = comms.xcoms[("restart", "r1", "restart", -1, CURSOR_KEY)]
    assert stored == {"process_id": kwargs["process_id"], "since": event.payload["last_timestamp"]}
    assert comms.writes < LINES  # once per batch of lines, not once per line

    # the worker finishing the task after the event needs nothing but the process id
    value = op.execute_complete(context(FakeTI(dag_id="restart", task_id="restart", run_id="r1")), event.payload)
    assert value["state"] == "SUCCESS"


def test_without_the_cursor_store_a_rebuilt_trigger_repeats_lines(in_colony_env, monkeypatch):
    """The control: with no supervisor comms the deferral kwargs are all a new trigger has (said once)."""
    from airflow.sdk.execution_time import task_runner

    records = _Records()
    monkeypatch.setattr(PollinatorTrigger, "log", property(lambda self: records))
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", None, raising=False)
    _op, kwargs = _deferred("no_store")
    ti = SimpleNamespace(dag_id="restart", task_id="no_store", run_id="r1", map_index=-1, try_number=1)
    event = _restart_mid_job(kwargs, records, ti)

    assert event.payload["status"] == "success", event.payload
    counts = Counter(r for r in records.records if r.startswith("line-"))
    assert counts["line-1"] == 2 and counts[f"line-{LINES}"] == 1
    assert sum(1 for r in records.records if r.startswith("Log cursor not kept")) == 2  # once per trigger


async def _first_event(trigger):
    async for event in trigger.run():
        return event
