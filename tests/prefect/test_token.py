"""Client tokens: a restarted attempt finds its process again, a retry or a second call does not."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import uuid4

import pytest

from pollinator_prefect import token as tokens


def work(x: int) -> int:
    return x


def other(x: int) -> int:
    return x


@pytest.fixture(autouse=True)
def fresh_process():
    """Each test starts as a new Python process would: no calls counted yet."""
    tokens._counts.clear()
    tokens._occurrence_of_run.clear()


def ctx(flow_run_id, run_count=1, task_run_id=None):
    return SimpleNamespace(task_run=SimpleNamespace(id=task_run_id or uuid4(), flow_run_id=flow_run_id,
                                                    run_count=run_count))


def test_outside_a_task_run_there_is_no_token():
    assert tokens.client_token(work, {"x": 1}) is None


def test_a_restarted_attempt_gets_the_same_token():
    flow_run = uuid4()
    before_crash = tokens.client_token(work, {"x": 1}, ctx(flow_run))
    tokens._counts.clear()
    tokens._occurrence_of_run.clear()  # the process died; Prefect makes a new task run id
    assert tokens.client_token(work, {"x": 1}, ctx(flow_run)) == before_crash


def test_a_retry_of_the_same_task_run_gets_a_new_token():
    flow_run, run = uuid4(), uuid4()
    first = tokens.client_token(work, {"x": 1}, ctx(flow_run, 1, run))
    retry = tokens.client_token(work, {"x": 1}, ctx(flow_run, 2, run))
    assert first != retry
    assert tokens.client_token(work, {"x": 1}, ctx(flow_run, 2, run)) == retry  # same attempt, same token


def test_distinct_calls_get_distinct_tokens():
    flow_run = uuid4()
    seen = {
        tokens.client_token(work, {"x": 1}, ctx(flow_run)),
        tokens.client_token(work, {"x": 1}, ctx(flow_run)),  # called twice with the same arguments
        tokens.client_token(work, {"x": 2}, ctx(flow_run)),
        tokens.client_token(other, {"x": 1}, ctx(flow_run)),
        tokens.client_token(work, {"x": 1}, ctx(uuid4())),  # another flow run
    }
    assert len(seen) == 5


def test_unhashable_parameters_still_give_a_token():
    assert tokens.client_token(work, {"x": object()}, ctx(uuid4())).startswith("prefect-")
