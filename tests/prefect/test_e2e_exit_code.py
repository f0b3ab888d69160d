"""A failing command on an executor that closes SUCCESS (as the ColonyOS Kube executor does) fails the task.

The ``kube_mimic`` executor (tests/conftest.py) ignores exit codes; Pollinator's
launcher records the real one and the core turns the SUCCESS into a failure.
"""

from __future__ import annotations

import pytest
from prefect import flow

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed
from pollinator_prefect import pollinator_task


@pollinator_task(kind="command", executor_names=["kube-mimic"], job_name="prefect-exit-cmd", walltime=120)
def failing_command() -> str:
    return "echo about to fail; exit 7"


@pollinator_task(executor_names=["kube-mimic"], job_name="prefect-exit-fn", walltime=120)
def failing_function() -> int:
    raise SystemExit(5)


@pytest.mark.parametrize("task, code", [(failing_command, 7), (failing_function, 5)])
def test_failing_command_fails_the_prefect_task_with_the_real_exit_code(in_colony_env, settings, kube_mimic,
                                                                      task, code):
    @flow
    def f():
        return task()

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(JobFailed) as info:
        state.result()
    assert info.value.exit_code == code and info.value.state == "FAILED"
    assert f"exited with code {code}" in str(info.value)
    with settings.client() as client:  # the executor said SUCCESS
        assert client.get_process(info.value.process_id).state == ProcessState.SUCCESS
