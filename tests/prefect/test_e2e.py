"""@pollinator_task against a real local colony (server, moto S3, executors dev-k8s/dev-hpc) and Prefect."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prefect import flow
from prefect.settings import PREFECT_API_URL

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed
from pollinator.run import JobResult
from pollinator_prefect import pollinator_task

from prefect_api import flow_run_artifacts, flow_run_logs

REPO = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"(?:Submitted|Re-attached to) ColonyOS process ([0-9a-f]{64})")


@pollinator_task(executor_names=["dev-k8s"], walltime=120)
def add(x: int, y: int) -> dict:
    print(f"adding {x} and {y}", flush=True)
    return {"sum": x + y}


@pollinator_task(executor_names=["dev-hpc"], job_name="prefect-e2e-fail", walltime=120)
def explode(value: int) -> int:
    raise ValueError(f"bad input {value}")


@pollinator_task(executor_names=["dev-k8s"], job_name="prefect-e2e-slow", walltime=300, timeout_seconds=4)
def slow() -> int:
    import time

    print("slow: started", flush=True)
    time.sleep(120)
    return 1


@pollinator_task(kind="command", executor_names=["dev-hpc"], job_name="prefect-e2e-cmd", walltime=120)
async def shout(word: str) -> str:
    return f"sh -c 'echo {word}; echo {word} > $POLLINATOR_RESULT_DIR/word.txt'"


def _process_ids(flow_run_id) -> list[str]:
    return [m.group(1) for line in flow_run_logs(flow_run_id) for m in [SUBMITTED.search(line)] if m]


def _wait_state(settings, process_id: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    with settings.client() as client:
        while True:
            state = client.get_process(process_id).state
            if ProcessState(state).is_final or time.monotonic() > deadline:
                return state
            time.sleep(0.2)


def test_sync_flow_runs_remotely_with_live_logs_and_artifacts(in_colony_env):
    @flow
    def f():
        return add(2, 3)

    state = f(return_state=True)
    assert state.result() == {"sum": 5}
    run_id = state.state_details.flow_run_id
    logs = flow_run_logs(run_id)
    assert "adding 2 and 3" in logs
    [pid] = _process_ids(run_id)
    found = flow_run_artifacts(run_id)
    assert pid in found["colonyos-add"].data
    assert "SUCCESS" in found["colonyos-add-results"].data
    secrets = [in_colony_env[k] for k in ("COLONIES_PRVKEY", "AWS_S3_SECRETKEY", "COLONIES_COLONY_PRVKEY",
                                          "COLONIES_SERVER_PRVKEY")]
    for text in logs + [a.data for a in found.values()]:
        assert not any(secret in text for secret in secrets)


def test_async_flow_command_and_function_tasks(in_colony_env):
    @flow
    async def f():
        result = await shout("hello-async")
        total = add(result.state == "SUCCESS", 1)  # a sync task in an async flow: a value, not a coroutine
        return result, total

    result, total = asyncio.run(f())
    assert isinstance(result, JobResult) and result.ok
    assert "word.txt" in result.result_files
    assert total == {"sum": 2}


def test_remote_failure_fails_the_task_with_the_remote_error(in_colony_env):
    @flow
    def f():
        return explode(42)

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(JobFailed, match="bad input 42") as info:
        state.result()
    assert info.value.state == "FAILED"


def test_task_timeout_cancels_the_remote_process(in_colony_env, settings):
    @flow
    def f():
        return slow()

    state = f(return_state=True)
    assert state.is_failed() and state.name == "TimedOut"
    [pid] = _process_ids(state.state_details.flow_run_id)
    assert _wait_state(settings, pid) == ProcessState.CANCELLED


FLOW_SCRIPT = textwrap.dedent('''
    from prefect import flow
    from pollinator_prefect import pollinator_task

    @pollinator_task(executor_names=["dev-hpc"], job_name="prefect-e2e-sigterm", walltime=300)
    def long_job() -> int:
        import time
        print("long_job: started", flush=True)
        time.sleep(120)
        return 1

    @flow
    def {name}():
        return long_job()

    if __name__ == "__main__":
        {name}()
''')

ASYNC_FLOW_SCRIPT = textwrap.dedent('''
    import asyncio
    from prefect import flow
    from pollinator_prefect import pollinator_task

    @pollinator_task(kind="command", executor_names=["dev-hpc"], job_name="prefect-e2e-asigterm", walltime=300)
    async def long_job() -> str:
        return "sh -c 'echo long_job: started; sleep 120'"

    @flow
    async def {name}():
        return await long_job()

    if __name__ == "__main__":
        asyncio.run({name}())
''')


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_cancelled_flow_run_cancels_the_remote_process(in_colony_env, settings, tmp_path, flavour):
    """SIGTERM is how a Prefect runner cancels a flow run; the engine turns it into TerminationSignal."""
    script = tmp_path / "cancel_me.py"
    script.write_text((FLOW_SCRIPT if flavour == "sync" else ASYNC_FLOW_SCRIPT).format(name="cancel_me"))
    env = {**os.environ, **in_colony_env, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    pid, seen = None, []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            seen.append(line)
            pid = pid or (SUBMITTED.search(line).group(1) if SUBMITTED.search(line) else None)
            if "long_job: started" in line or time.monotonic() > deadline:
                break
        assert pid, "".join(seen)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_state(settings, pid) == ProcessState.CANCELLED, "".join(seen)


def test_example_flow_runs_against_the_local_colony(in_colony_env):
    env = {**os.environ, **in_colony_env, "PREFECT_API_URL": PREFECT_API_URL.value()}
    out = subprocess.run([sys.executable, str(REPO / "example_dags" / "cloud_to_hpc_flow.py")], env=env,
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "preprocess: wrote 200 rows" in text
    assert "train: epoch 2000/2000" in text
    assert "'ok': True" in text
