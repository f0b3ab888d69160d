"""A re-queued process shows as a marked new attempt in the follower (issue 16), through the local colony."""

from __future__ import annotations

import threading
import uuid

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.executor.registration import register_executor
from pollinator.run.follow import ATTEMPT_PREFIX, follow_logs
from test_executor_integration import LocalTestColony, spec, wait_for

TYPE = "pytest-attempts"


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    c = LocalTestColony(tmp_path_factory.mktemp("attempt-colony"))
    yield c
    c.close()


def test_second_attempt_is_marked_between_the_two_runs(colony):
    """An executor that takes the process and goes silent: the server re-queues it after maxexectime; the
    next attempt's lines come after one marker naming the attempt, its executor and why."""
    with colony.settings.client() as user:
        name = f"pytest-attempts-{uuid.uuid4().hex[:6]}"
        key = register_executor(user.with_key(colony.colony_key), name=name, executor_type=TYPE)
        ex = user.with_key(key)
        s = spec({"cmd": "true"}, maxexectime=2, maxretries=3)
        s.conditions.executortype = TYPE
        p = user.submit(s)
        seen: list[str] = []

        def follow() -> None:
            for line in follow_logs(user, p.processid, max_interval=0.1):
                seen.append(line.message)

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        assert ex.assign(timeout=5).processid == p.processid
        ex.add_log(p.processid, "line 001\n")  # attempt 1, then its executor is gone
        wait_for(lambda: user.get_process(p.processid).state == ProcessState.WAITING, 20, "the re-queue")
        assert ex.assign(timeout=5).retries == 1
        wait_for(lambda: any(m.startswith(ATTEMPT_PREFIX) for m in seen), 20, "the attempt marker")
        ex.add_log(p.processid, "line 001\n")
        ex.close_successful(p.processid, [])
        follower.join(20)
    assert seen[0] == "line 001\n" and seen[-1] == "line 001\n" and len(seen) == 3
    assert seen[1].startswith(f"{ATTEMPT_PREFIX}2 of 4 on {name}: the previous attempt did not end within "
                              f"maxexectime (2 s from assignment")


def test_a_process_nobody_takes_gets_a_warning_naming_who_is_registered(colony):
    with colony.settings.client() as user:
        register_executor(user.with_key(colony.colony_key), name="pytest-idle", executor_type="pytest-idle-type")
        s = spec({"cmd": "true"})
        s.conditions.executortype = "pytest-nobody"
        p = user.submit(s)
        follower = follow_logs(user, p.processid, max_interval=0.05)
        follower.waiting.after = 0.3
        line = next(iter(follower))
        user.cancel_process(p.processid)
    assert line.message.startswith("[pollinator] still waiting for an executor after 0 s: the process asks for "
                                   "executor type 'pytest-nobody', and no approved executor registered in the colony matches.")
    assert "pytest-idle (pytest-idle-type)" in line.message
