"""Queue semantics: long-poll assign, priorities, name targeting, deadlines, cancel, subscriptions."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from pollinator.colonies import crypto
from pollinator.colonies.models import Conditions, Executor, FunctionSpec
from pollinator.colonies.rpc import encode_envelope
from pollinator.errors import BadRequest, NotFound
from server_harness import Colony_, start_colony


@pytest.fixture(scope="module")
def colony(tmp_path_factory) -> Colony_:
    c = start_colony(tmp_path_factory.mktemp("sched"))
    yield c
    c.server.stop()


def spec(**kw) -> FunctionSpec:
    cond = kw.pop("conditions", Conditions(colonyname="dev", executortype="capture-executor"))
    base = {"funcname": "f", "maxexectime": 60, "maxwaittime": -1}
    base.update(kw)
    return FunctionSpec(conditions=cond, **base)


def drain(colony: Colony_) -> None:
    executor = colony.client(colony.executor_key)
    while True:
        try:
            p = executor.assign(timeout=-1)
        except NotFound:
            return
        executor.close_successful(p.processid)


def test_assign_timeouts(colony: Colony_) -> None:
    drain(colony)
    executor = colony.client(colony.executor_key)
    with pytest.raises(BadRequest, match="Invalid timeout value, timeout cannot be zero"):
        executor.assign(timeout=0)
    t0 = time.perf_counter()
    with pytest.raises(NotFound, match="No process available for assignment"):
        executor.assign(timeout=-1)
    assert time.perf_counter() - t0 < 0.2
    t0 = time.perf_counter()
    with pytest.raises(NotFound):
        executor.assign(timeout=1)
    assert 0.95 < time.perf_counter() - t0 < 1.5


def test_longpoll_wakes_on_submit(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    got: dict = {}

    def poll() -> None:
        got["p"] = executor.assign(timeout=10)
        got["t"] = time.perf_counter()

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    submitted = user.submit(spec())
    thread.join(5)
    assert got["p"].processid == submitted.processid
    assert (got["t"] - t0) < 0.1
    assert got["p"].execdeadline == "0001-01-01T00:00:00Z"  # as the Go reply
    assert user.get_process(submitted.processid).execdeadline != "0001-01-01T00:00:00Z"
    executor.close_successful(submitted.processid)


def test_priority_then_submission_order_and_names(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    other_key = crypto.generate_private_key()
    owner = colony.client(colony.colony_key)
    owner.add_executor(Executor(executorid=crypto.id_from_private_key(other_key), executortype="capture-executor",
                                executorname="other", colonyname="dev"))
    owner.approve_executor("other")
    targeted = user.submit(spec(conditions=Conditions(colonyname="dev", executortype="capture-executor",
                                                      executornames=["other"])))
    first = user.submit(spec())
    second = user.submit(spec())
    urgent = user.submit(spec(priority=5))
    order = [executor.assign(timeout=-1).processid for _ in range(3)]
    assert order == [urgent.processid, first.processid, second.processid]
    with pytest.raises(NotFound):
        executor.assign(timeout=-1)  # the targeted one is not for capture-1
    assert colony.client(other_key).assign(timeout=-1).processid == targeted.processid
    wrong_type = user.submit(spec(conditions=Conditions(colonyname="dev", executortype="elsewhere")))
    with pytest.raises(NotFound):
        executor.assign(timeout=-1)
    user.cancel_process(wrong_type.processid)


def test_maxexectime_fails_without_retries(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    p = user.submit(spec(maxexectime=1, maxretries=0))
    executor.assign(timeout=1)
    deadline = time.time() + 5
    while user.get_process(p.processid).state != 3 and time.time() < deadline:
        time.sleep(0.1)
    got = user.get_process(p.processid)
    assert (got.state, got.errors, got.isassigned) == (3, ["Maximum execution time limit exceeded"], True)
    status, reply = colony.raw({"msgtype": "closesuccessfulmsg", "processid": p.processid, "out": []},
                               colony.executor_key)
    assert (status, reply["message"]) == (400, "Tried to set failed process as successful")


def test_maxexectime_requeues_while_retries_left(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    p = user.submit(spec(maxexectime=1, maxretries=1))
    executor.assign(timeout=1)
    deadline = time.time() + 5
    while user.get_process(p.processid).state != 0 and time.time() < deadline:
        time.sleep(0.1)
    got = user.get_process(p.processid)
    assert (got.state, got.retries, got.isassigned, got.assignedexecutorid) == (0, 1, False, "")
    status, reply = colony.raw({"msgtype": "closesuccessfulmsg", "processid": p.processid, "out": []},
                               colony.executor_key)
    assert (status, reply["message"]) == (403, "Failed to close process as successful, process is not assigned")
    again = executor.assign(timeout=1)
    assert again.processid == p.processid and again.retries == 1
    executor.close_successful(p.processid)


def test_maxwaittime_fails_waiting_process(colony: Colony_) -> None:
    user = colony.client(colony.user_key)
    p = user.submit(spec(maxwaittime=1, conditions=Conditions(colonyname="dev", executortype="nobody")))
    assert p.waitdeadline != "0001-01-01T00:00:00Z"
    deadline = time.time() + 5
    while user.get_process(p.processid).state != 3 and time.time() < deadline:
        time.sleep(0.1)
    assert user.get_process(p.processid).errors == ["Maximum waiting time limit exceeded"]


def test_cancel_waiting_and_running(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    waiting = user.submit(spec())
    user.cancel_process(waiting.processid)
    got = user.get_process(waiting.processid)
    assert got.state == 4 and got.endtime != "0001-01-01T00:00:00Z"
    running = user.submit(spec())
    assert executor.assign(timeout=1).processid == running.processid
    user.cancel_process(running.processid)
    status, reply = colony.raw({"msgtype": "addlogmsg", "processid": running.processid, "message": "x"},
                               colony.executor_key)
    assert (status, reply["message"]) == (403, "Failed to set output, process is not running")
    status, reply = colony.raw({"msgtype": "closesuccessfulmsg", "processid": running.processid, "out": []},
                               colony.executor_key)
    assert (status, reply["message"]) == (400, "Tried to set cancelled process as successful")
    status, reply = colony.raw({"msgtype": "cancelprocessmsg", "processid": running.processid},
                               colony.user_key)
    assert (status, reply["message"]) == (400, "Tried to cancel already cancelled process")


def _subscribe(colony: Colony_, process_id: str, state: int, timeout: int) -> list[dict]:
    msg = {"msgtype": "subscribeprocessmsg", "colonyname": "dev", "processid": process_id,
           "executortype": "capture-executor", "state": state, "timeout": timeout}
    replies = []
    with connect(f"ws://127.0.0.1:{colony.server.port}/pubsub") as ws:
        ws.send(json.dumps(encode_envelope(msg, colony.user_key)))
        try:
            reply = json.loads(ws.recv(timeout=timeout + 2))
            replies.append(json.loads(base64.b64decode(reply["payload"])))
        except (TimeoutError, ConnectionClosed):
            pass  # the server closes the connection at the subscription's timeout
    return replies


def test_subscribe_process_immediate_and_later(colony: Colony_) -> None:
    drain(colony)
    executor, user = colony.client(colony.executor_key), colony.client(colony.user_key)
    p = user.submit(spec())
    assert _subscribe(colony, p.processid, 0, 5)[0]["state"] == 0  # already there: sent at once
    got: dict = {}

    def wait() -> None:
        got["replies"] = _subscribe(colony, p.processid, 2, 5)
        got["t"] = time.perf_counter()

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)
    executor.assign(timeout=1)
    t0 = time.perf_counter()
    executor.close_successful(p.processid, ["done"])
    thread.join(6)
    assert got["replies"][0]["state"] == 2 and got["replies"][0]["processid"] == p.processid
    assert got["t"] - t0 < 0.2
    t0 = time.perf_counter()
    assert _subscribe(colony, p.processid, 3, 1) == []  # never reached: closed at the timeout
    assert time.perf_counter() - t0 < 2.5


def _two_waiters_then_named_submit(colony: Colony_, executor_type: str) -> tuple[object, object, str]:
    """Executors a then b (one type) long-poll; a spec naming b is submitted; returns what each first poll got."""
    owner, user = colony.client(colony.colony_key), colony.client(colony.user_key)
    keys = {name: crypto.generate_private_key() for name in ("a", "b")}
    for name, key in keys.items():
        owner.add_executor(Executor(executorid=crypto.id_from_private_key(key), executortype=executor_type,
                                    executorname=f"{executor_type}-{name}", colonyname="dev"))
        owner.approve_executor(f"{executor_type}-{name}")
    events = colony.server.app.state.ctx.events
    got: dict = {}

    def poll(name: str) -> None:
        try:
            got[name] = colony.client(keys[name]).assign(timeout=3)
        except NotFound as exc:
            got[name] = exc

    threads = []
    for n, name in enumerate(("a", "b"), start=1):  # a registers first, so round-robin wakes a first
        threads.append(threading.Thread(target=poll, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while events.waiting(executor_type) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events.waiting(executor_type) == n
    submitted = user.submit(spec(conditions=Conditions(colonyname="dev", executortype=executor_type,
                                                       executornames=[f"{executor_type}-b"])))
    for thread in threads:
        thread.join(10)
    if isinstance(got["b"], NotFound):  # the named executor asks again after its long-poll, as on the real server
        got["b again"] = colony.client(keys["b"]).assign(timeout=-1)
    return got, keys, submitted.processid


def test_submit_wakes_one_waiter_of_the_type_not_the_named_one(colony: Colony_) -> None:
    """The Go server wakes ONE assign long-poll per submit, by executor type (round-robin), not by name:
    the woken executor cannot take a process naming another, and the named one sees it only when its
    own long-poll times out (FACTS, Added 2026-11-30)."""
    got, _keys, pid = _two_waiters_then_named_submit(colony, "wake-by-type")
    assert isinstance(got["a"], NotFound)  # woken, could not take it, waited on until its timeout
    assert isinstance(got["b"], NotFound), "the named executor was woken; the real server would not wake it"
    assert got["b again"].processid == pid
    colony.client(_keys["b"]).close_successful(pid)


def test_wake_all_mode_wakes_the_named_waiter(tmp_path) -> None:
    """``wake_all`` (kinder than production, off by default) hands the process to the named waiter at once."""
    kind = start_colony(tmp_path / "wake-all", wake_all=True)
    try:
        got, keys, pid = _two_waiters_then_named_submit(kind, "wake-all")
        assert isinstance(got["a"], NotFound)
        assert got["b"].processid == pid
        kind.client(keys["b"]).close_successful(pid)
    finally:
        kind.server.stop()
