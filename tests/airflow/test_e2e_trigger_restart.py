"""The log cursor travels: a trigger rebuilt mid-job from its serialized kwargs logs every remote line once.

Against the local colony: the operator submits and defers; the trigger follows the process in an event
loop; mid-job it is cancelled (as a triggerer shutting down cancels its triggers) and a new trigger is
built from ``serialize()`` (as the next triggerer builds it) and runs to the end. Across both, every
remote line is one log record, exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from airflow.sdk.exceptions import TaskDeferred

from fakes import FakeStore, FakeTI, context
from pollinator_airflow.operators import PollinatorOperator
from pollinator_airflow.triggers import PollinatorTrigger

LINES = 60


class _Records:
    def __init__(self):
        self.records: list[str] = []

    def _add(self, msg, *args, **kw):
        self.records.append(msg % args if args else msg)

    info = warning = debug = error = exception = _add


def test_trigger_rebuilt_mid_job_logs_each_remote_line_once(in_colony_env, monkeypatch):
    records = _Records()
    monkeypatch.setattr(PollinatorTrigger, "log", property(lambda self: records))
    script = f"for i in $(seq 1 {LINES}); do echo line-$i; sleep 0.05; done"
    op = PollinatorOperator(task_id="restart", executor_names=["dev-hpc"], cmd=script, job_name="trigger-restart",
                            deferrable=True, poll_interval=0.2)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(FakeTI(dag_id="restart", task_id="restart", run_id="r1"), FakeStore()))
    first = PollinatorTrigger(**deferred.value.trigger.serialize()[1])

    def delivered() -> int:
        return sum(1 for r in records.records if r.startswith("line-"))

    async def scenario():
        task = asyncio.create_task(_first_event(first))
        while delivered() < 15:  # mid-job: some lines shown, more to come
            assert not task.done(), records.records
            await asyncio.sleep(0.02)
        task.cancel()  # the triggerer stops
        with pytest.raises(asyncio.CancelledError):
            await task
        assert delivered() < LINES
        second = PollinatorTrigger(**first.serialize()[1])  # the next triggerer rebuilds it from its kwargs
        return await asyncio.wait_for(_first_event(second), 120)

    event = asyncio.run(scenario())
    assert event.payload["status"] == "success", event.payload
    user = [r for r in records.records if r.startswith("line-")]
    counts = Counter(user)
    assert sorted(counts) == sorted(f"line-{i}" for i in range(1, LINES + 1))
    assert set(counts.values()) == {1}, [line for line, n in counts.items() if n > 1]
    assert all("\n" not in r for r in records.records)  # one record per remote line
    assert user == [f"line-{i}" for i in range(1, LINES + 1)]  # in order

    # the worker finishing the task after the event needs nothing but the process id
    value = op.execute_complete(context(FakeTI(dag_id="restart", task_id="restart", run_id="r1")), event.payload)
    assert value["state"] == "SUCCESS"


async def _first_event(trigger):
    async for event in trigger.run():
        return event
