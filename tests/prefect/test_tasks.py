"""@pollinator_task against a scripted stand-in for the core Job: the Prefect side of the contract."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from prefect import flow
from prefect.states import State

from pollinator.errors import ConfigError, ProjectError
from pollinator.run import JobResult
from pollinator_prefect import ColonyOSCredentials, pollinator_task

from prefect_api import flow_run_artifacts, flow_run_logs
from prefect_fakes import ENV, PRVKEY, S3_SECRET, Script, install

CREDS = ColonyOSCredentials.from_env(ENV)


@pytest.fixture
def script(monkeypatch) -> Script:
    s = Script()
    install(monkeypatch, s)
    return s


def _flow_run_id(state: State):
    return state.state_details.flow_run_id


@pollinator_task(credentials=CREDS, executor_names=["dev-hpc"], cpu="2", mem="4Gi", walltime=600,
                 inputs={"prep": "/pollinator/prep/result"}, retries=0, task_run_name="train-{epochs}")
def train(epochs: int, lr: float = 0.1) -> dict:
    return {"loss": lr / epochs}


def test_function_form_returns_the_remote_value_and_passes_options(script):
    script.return_value = {"loss": 0.01}

    @flow
    def f():
        return train(10)

    assert f() == {"loss": 0.01}
    job = script.jobs[0]
    assert job.kind == "function"
    assert job.call["func"].__name__ == "train" and job.call["func"] is not train.fn
    assert job.call["args"] == (10, 0.1) and job.call["kwargs"] == {}  # Prefect binds the defaults
    assert job.call["options"] == dict(name="train", executor_names=["dev-hpc"], cpu="2", mem="4Gi", walltime=600,
                                       inputs={"prep": "/pollinator/prep/result"})
    assert job.token and job.token.startswith("prefect-")
    assert job.closed
    # the source was captured at decoration and travels with the task
    assert job.call["source"].source.startswith("def train(epochs: int, lr: float=0.1) -> dict:")


def test_prefect_options_pass_through():
    assert train.retries == 0
    assert train.task_run_name == "train-{epochs}"
    assert train.name == "train"
    assert list(inspect.signature(train.fn).parameters) == ["epochs", "lr"]


def test_a_sync_function_gives_a_sync_task_even_in_an_async_flow(script):
    script.return_value = 7

    @flow
    async def f():
        value = train(1)
        assert not inspect.isawaitable(value)
        return value

    assert asyncio.run(f()) == 7


def test_async_command_form_awaits_and_returns_the_job_result(script, tmp_path):
    @pollinator_task(kind="command", credentials=CREDS, project_dir=tmp_path, executor_names=["dev-k8s"])
    async def preprocess(rows: int) -> str:
        await asyncio.sleep(0)
        return f"python3 prep.py --rows {rows}"

    @flow
    async def f():
        return await preprocess(5)

    result = asyncio.run(f())
    assert isinstance(result, JobResult) and result.ok
    job = script.jobs[0]
    assert job.kind == "project" and job.call["project_dir"] == tmp_path
    assert job.call["options"] == {"cmd": "python3 prep.py --rows 5", "executor_names": ["dev-k8s"]}


def test_command_form_inline_with_a_list_command(script):
    @pollinator_task(kind="command", credentials=CREDS, image="python:3.12", job_name="sweep")
    def sweep(n: int) -> list:
        return ["python3", "-c", f"print({n})"]

    @flow
    def f():
        return sweep(3)

    assert f().state == "SUCCESS"
    job = script.jobs[0]
    assert job.kind == "inline"
    assert job.call["options"] == {"name": "sweep", "cmd": "python3", "args": ["-c", "print(3)"],
                                   "image": "python:3.12"}


def test_a_bad_command_fails_the_task_before_submitting(script):
    @pollinator_task(kind="command", credentials=CREDS)
    def nothing() -> str:
        return ""

    @flow
    def f():
        return nothing()

    state = f(return_state=True)
    assert state.is_failed()
    assert "must return the command" in str(state.result(raise_on_failure=False))
    assert script.jobs == []


def test_remote_lines_reach_the_prefect_run_logger(script):
    script.lines = ["epoch 1 loss 0.5", "epoch 2 loss 0.25 (100%)"]

    @flow
    def f():
        return train(2)

    state = f(return_state=True)
    messages = flow_run_logs(_flow_run_id(state))
    assert "epoch 1 loss 0.5" in messages and "epoch 2 loss 0.25 (100%)" in messages
    assert any("Submitted ColonyOS process proc-1" in m for m in messages)


def test_remote_failure_fails_the_task_with_the_remote_errors(script):
    script.outcomes = ["fail"]

    @flow
    def f():
        return train(2)

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="remote boom"):
        state.result()
    table = flow_run_artifacts(_flow_run_id(state))["colonyos-train-results"].data
    assert "remote boom" in table and "FAILED" in table


def test_retry_after_a_remote_failure_submits_with_a_new_token(script):
    script.outcomes = ["fail", "ok"]
    script.return_value = "second time lucky"
    flaky = train.with_options(retries=1, retry_delay_seconds=0)

    @flow
    def f():
        return flaky(3)

    assert f() == "second time lucky"
    assert len(script.jobs) == 2
    assert script.jobs[0].token != script.jobs[1].token


def test_a_project_error_is_not_retried(script):
    """No retry can fix bad input or an invalid return value: one attempt, the error as it was."""
    script.outcomes = ["usage", "ok"]
    flaky = train.with_options(retries=3, retry_delay_seconds=0)

    @flow
    def f():
        return flaky(3)

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(ProjectError, match="not valid JSON"):
        state.result()
    assert len(script.jobs) == 1


def test_two_calls_with_the_same_arguments_are_two_jobs(script):
    @flow
    def f():
        return train(4), train(4)

    f()
    assert len({job.token for job in script.jobs}) == 2


def test_artifacts_link_the_dashboard_and_list_results_without_secrets(script):
    @flow
    def f():
        return train(5)

    state = f(return_state=True)
    found = flow_run_artifacts(_flow_run_id(state))
    assert set(found) == {"colonyos-train", "colonyos-train-results"}
    assert "(https://dash.example/process?processid=proc-1)" in found["colonyos-train"].data
    table = found["colonyos-train-results"].data
    assert "metrics.json" in table and "model\\|v1.bin" in table and "SUCCESS" in table
    assert "| results in ColonyFS | `/pollinator/fake/result` |" in table
    assert "downloaded to" not in table  # no result_dir chosen: no worker folder to point at
    for artifact in found.values():
        assert PRVKEY not in str(artifact.data) and S3_SECRET not in str(artifact.data)
    for line in flow_run_logs(_flow_run_id(state)):
        assert PRVKEY not in line and S3_SECRET not in line


def test_task_timeout_interrupts_the_wait_and_the_job_cancels(script):
    script.outcomes = ["hang"]
    slow = train.with_options(timeout_seconds=1)

    @flow
    def f():
        return slow(1)

    state = f(return_state=True)
    assert state.is_failed()
    assert state.name == "TimedOut"
    assert script.jobs[0].cancelled
    assert any(m.startswith("Cancelling ColonyOS process proc-1: the task run was interrupted")
               for m in flow_run_logs(_flow_run_id(state)))


def test_async_task_timeout_cancels_too(script):
    script.outcomes = ["hang"]

    @pollinator_task(kind="command", credentials=CREDS, timeout_seconds=1)
    async def sleepy() -> str:
        return "sleep 600"

    @flow
    async def f():
        return await sleepy()

    state = asyncio.run(f(return_state=True))
    assert state.is_failed()
    assert script.jobs[0].cancelled


def test_credentials_default_to_the_environment(script, monkeypatch):
    for key in list(ENV):
        monkeypatch.delenv(key, raising=False)

    @pollinator_task()
    def from_env() -> int:
        return 1

    @flow
    def f():
        return from_env()

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="COLONIES_"):
        state.result()
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    assert f() is None  # the fake returns script.return_value
    assert script.jobs[-1].call["settings"] == CREDS.get_settings()


def test_credentials_by_block_name(script):
    CREDS.save("pollinator-unit", overwrite=True)

    @pollinator_task(credentials="pollinator-unit")
    def by_name() -> int:
        return 1

    @pollinator_task(credentials="pollinator-unit", kind="command")
    async def by_name_async() -> str:
        return "true"

    @flow
    async def f():
        by_name()
        await by_name_async()

    asyncio.run(f())
    assert [job.call["settings"] for job in script.jobs] == [CREDS.get_settings()] * 2


def test_decoration_errors_are_immediate():
    with pytest.raises(ValueError, match="kind"):
        pollinator_task(kind="shell")
    with pytest.raises(ValueError, match="project_dir needs kind='command'"):
        pollinator_task(project_dir=".")


def test_the_task_takes_every_core_option_by_the_core_name(script, tmp_path):
    """One list: the core's JobOptions. Every option but cmd/args (what a command function returns) is an
    argument of the same name; the core's ``name`` is ``job_name`` here, since ``name=`` is Prefect's."""
    from pollinator.run.options import OPTION_NAMES, JobOptions

    params = inspect.signature(pollinator_task).parameters
    assert set(OPTION_NAMES) - {"name", "cmd", "args"} <= set(params)
    assert "job_name" in params and "name" not in params  # name= goes to prefect.task

    given = dict(image="python:3.12", env={"A": "1"}, init_cmd="true", rebuild_image=True, source="run.py",
                 executor_names=["dev-hpc"], executor_type="hpc-executor", nodes=2, processes_per_node=4, cpu="2",
                 mem="4Gi", gpu_count=1, gpu_name="a100", walltime="1h", max_retries=2, staging_allowance=120, priority=7,
                 inputs={"prep": "/pollinator/prep/result"}, src_dir=tmp_path / "src", data_dir=tmp_path / "data",
                 result_dir=tmp_path / "result", result_label="/pollinator/everything/latest", launcher=False)
    assert set(given) | {"name", "cmd", "args"} == set(OPTION_NAMES)  # a new core option fails this until added

    @pollinator_task(kind="command", credentials=CREDS, job_name="everything", name="prefect-task-name", **given)
    def everything() -> list:
        return ["python3", "-V"]

    assert everything.name == "prefect-task-name"

    @flow
    def f():
        return everything()

    assert f().state == "SUCCESS"
    sent = script.jobs[0].call["options"]
    assert sent == {"name": "everything", "cmd": "python3", "args": ["-V"], **given}
    JobOptions.build(**sent)  # and the core takes them as they are


def test_a_function_task_refuses_the_options_a_function_job_sets_itself():
    with pytest.raises(ProjectError, match=r"kind='function'\): source=, src_dir= cannot be given"):
        pollinator_task(source="x.py", src_dir=".")
