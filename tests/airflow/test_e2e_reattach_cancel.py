"""Crash safety and cancellation against the local colony, driving the operator and trigger directly.

Runtime context objects are small stand-ins (no Airflow DB needed); the core
pipeline, the server and the executors are real.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from fakes import FakeStore, FakeTI, context
from pollinator.colonies.models import ProcessState
from pollinator_airflow.operators import PollinatorOperator
from pollinator_airflow.triggers import PollinatorTrigger


@pytest.fixture
def conn_env(in_colony_env):
    """The operator finds the colony through AIRFLOW_CONN_COLONIES_DEFAULT, as in a deployment."""
    assert json.loads(in_colony_env["AIRFLOW_CONN_COLONIES_DEFAULT"])["conn_type"] == "colonies"
    return in_colony_env


def _op(task_id: str, cmd: str, **kw) -> PollinatorOperator:
    # executors run `sh -c "<cmd> <args...>"` (as the Go executors do), so cmd may be a whole shell line
    return PollinatorOperator(task_id=task_id, executor_names=["dev-hpc"], cmd=cmd,
                              name=task_id.replace("_", "-"), poll_interval=0.5, **kw)


def _state(settings, pid: str) -> str:
    with settings.client() as c:
        return ProcessState(c.get_process(pid).state).name


def _wait_state(settings, pid: str, wanted: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = _state(settings, pid)
        if state == wanted:
            return state
        time.sleep(0.2)
    return state


def test_same_token_reattaches_to_one_process(conn_env, settings):
    ti = FakeTI(dag_id="reattach", task_id="slow", run_id="r1", try_number=1)
    first = _op("slow", "sleep 3; echo done")
    pid = first.submit_job(context(ti))
    # a restarted worker runs the same try again: a new operator object, the same token
    second = _op("slow", "sleep 3; echo done")
    assert second.submit_job(context(ti)) == pid
    from pollinator.run.token import token_label

    with settings.client() as c:
        label = token_label("reattach/slow/r1/-1/1")
        same = [p for s in ProcessState for p in c.get_processes(int(s), count=100, label=label)]
    assert [p.processid for p in same] == [pid]
    assert second.get_job_result(pid, context(ti))["state"] == "SUCCESS"


def test_retry_reattaches_via_task_state_store(conn_env, settings):
    store = FakeStore()
    ti1 = FakeTI(dag_id="durable", task_id="job", run_id="r1", try_number=1)
    o1 = _op("durable_job", "sleep 4; echo finished")
    pid = o1.submit_job(context(ti1, store))
    store.set(o1.external_id_key, pid)
    # try 1's worker died; try 2 must pick the running process up, not submit another
    ti2 = FakeTI(dag_id="durable", task_id="job", run_id="r1", try_number=2)
    value = _op("durable_job", "sleep 4; echo finished").execute(context(ti2, store))
    assert value["process_id"] == pid and value["state"] == "SUCCESS"
    assert ti2.xcoms["process_id"] == pid


def test_on_kill_cancels_remote_process(conn_env, settings):
    o = _op("to_cancel", "echo started; sleep 60")
    ti = FakeTI(dag_id="cancel", task_id="to_cancel", run_id="r1")
    errors: list[BaseException] = []

    def run():
        try:
            o.execute(context(ti))
        except BaseException as exc:  # noqa: BLE001 - we want whatever execute raised
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while not o.process_id and time.monotonic() < deadline:
        time.sleep(0.1)
    assert o.process_id
    _wait_state(settings, o.process_id, "RUNNING")
    o.on_kill()
    t.join(30)
    assert not t.is_alive()
    assert _wait_state(settings, o.process_id, "CANCELLED") == "CANCELLED"
    assert errors and isinstance(errors[0], AirflowException) and "CANCELLED" in str(errors[0])


def test_deferred_trigger_follows_and_on_kill_cancels(conn_env, settings):
    o = _op("deferred_cancel", "echo started; sleep 60", deferrable=True)
    ti = FakeTI(dag_id="cancel", task_id="deferred_cancel", run_id="r2")
    with pytest.raises(TaskDeferred) as deferred:
        o.execute(context(ti, FakeStore()))
    trigger: PollinatorTrigger = deferred.value.trigger
    trigger = PollinatorTrigger(**trigger.serialize()[1])  # as the triggerer rebuilds it

    async def scenario():
        task = asyncio.create_task(_first_event(trigger))
        await asyncio.sleep(2)
        assert not task.done()  # still following a running process
        task.cancel()  # the user cleared the task: the triggerer cancels, then calls on_kill
        await trigger.on_kill()
        # a fresh trigger (e.g. a restarted triggerer) sees the final state at once
        return await asyncio.wait_for(_first_event(PollinatorTrigger(**trigger.serialize()[1])), 30)

    event = asyncio.run(scenario())
    assert event.payload["status"] == "cancelled" and event.payload["state"] == "CANCELLED"
    assert _state(settings, trigger.process_id) == "CANCELLED"


async def _first_event(trigger):
    async for event in trigger.run():
        return event
