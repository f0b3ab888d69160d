"""@pollinator_task through Prefect's real deployment path: ``serve()`` in its own process, runs made from the API.

The served script runs flows in a runner subprocess, which is exactly where a
function defined in ``__main__`` arrives pickled by value (its code has no
file, ``<dynamic-code>``; Python then looks its lines up in whatever the script
file holds *now*). The test edits the script once the deployments are served,
as a person working on their flow does: the function form still ships the
code that is being served only because the source was captured at decoration.
The same flows also go through ``flow.from_source(...).deploy()`` to a process
work pool polled by ``prefect worker start``. Cancelling a flow run from the API must cancel the
ColonyOS process and say so in the run's log. Everything runs against the
session's Prefect test server and local colony; timeouts are generous for a
loaded 2-core box, and the served process group is always shut down.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling

from pollinator.colonies.models import ProcessState

from prefect_api import flow_run_logs

pytestmark = pytest.mark.timeout(900)  # serve() start-up plus a flow run on a loaded 2-core box

REPO = Path(__file__).resolve().parents[2]
SUBMITTED = re.compile(r"(?:Submitted|Re-attached to) ColonyOS process ([0-9a-f]{64})")
STARTUP_TIMEOUT = 240
RUN_TIMEOUT = 300

SERVED = textwrap.dedent('''
    import json
    from prefect import flow, get_run_logger
    from pollinator_prefect import pollinator_task

    FACTOR = 10

    @pollinator_task(executor_names=["dev-k8s"], job_name="served-fn", walltime=300)
    def scaled(x: int) -> dict:
        return {"x": x, "scaled": x * FACTOR}

    @pollinator_task(kind="command", executor_names=["dev-hpc"], job_name="served-cmd", walltime=300)
    def rows(n: int) -> str:
        return ("sh -c 'mkdir -p $POLLINATOR_RESULT_DIR/.pollinator && "
                "echo \\"{\\\\\\"rows\\\\\\": %d}\\" > $POLLINATOR_RETURN'" % n)

    @pollinator_task(kind="command", executor_names=["dev-hpc"], job_name="served-long-cmd", walltime=600)
    def long_cmd() -> str:
        return "sh -c 'echo long: started; sleep 300'"

    @pollinator_task(executor_names=["dev-k8s"], job_name="served-long-fn", walltime=600)
    def long_fn() -> int:
        import time
        print("long: started", flush=True)
        time.sleep(300)
        return 1

    @flow
    def served(x: int = 3, mode: str = "both") -> dict:
        if mode == "long-command":
            return long_cmd().return_value
        if mode == "long-function":
            return long_fn()
        value = {"fn": scaled(x), "cmd": rows(x).return_value}
        get_run_logger().info("SERVED-RESULT %s", json.dumps(value, sort_keys=True))
        return value

    if __name__ == "__main__":
        served.serve(name="d")  # the flow runs in a subprocess, its functions pickled by value
''')


@pytest.fixture(scope="module")
def served_flows(tmp_path_factory, colony_env):
    """``python flows.py`` serving two deployments; yields the deployment ids by name."""
    root = tmp_path_factory.mktemp("served")
    script = root / "flows.py"
    script.write_text(SERVED)
    log_path = root / "serve.log"
    env = {**os.environ, **colony_env, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=root, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ids = _wait_for_deployments(proc, log_path, ["served/d"])
        script.write_text("# edited while served\n" * 40 + "import json\n")  # what is served stays what ran
        yield ids
    finally:
        _stop(proc)


def _wait_for_deployments(proc, log_path: Path, names: list[str]) -> dict[str, UUID]:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    found: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        while len(found) < len(names):
            assert proc.poll() is None, f"serve() exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"deployments not served in time: {log_path.read_text()[-3000:]}"
            for name in names:
                if name in found:
                    continue
                try:
                    found[name] = client.read_deployment_by_name(name).id
                except Exception:  # noqa: BLE001 - not created yet
                    pass
            time.sleep(1)
    return found


def _stop(proc) -> None:
    """SIGINT is how a person stops `serve()`; then the whole group, whatever is left of it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _run(deployment_id: UUID, parameters: dict) -> UUID:
    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id


def _wait_run(flow_run_id: UUID, until=lambda s: s.is_final(), timeout: float = RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and until(run.state):
                return run
            assert time.monotonic() < deadline, f"flow run {flow_run_id} still {run.state}"
            time.sleep(1)


def _wait_logs(flow_run_id: UUID, wanted, timeout: float = 90) -> list[str]:
    """The run's log lines once one satisfies ``wanted`` (the served process ships them in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = flow_run_logs(flow_run_id)
        if any(wanted(m) for m in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(2)


def _process_ids(flow_run_id: UUID) -> list[str]:
    return [m.group(1) for line in flow_run_logs(flow_run_id) for m in [SUBMITTED.search(line)] if m]


def _wait_state(settings, process_id: str, wanted, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    with settings.client() as client:
        while True:
            state = client.get_process(process_id).state
            if state in wanted or ProcessState(state).is_final or time.monotonic() > deadline:
                return state
            time.sleep(0.5)


def test_a_served_deployment_runs_the_function_and_the_command_form(served_flows, settings):
    flow_run_id = _run(served_flows["served/d"], {"x": 4})
    run = _wait_run(flow_run_id)
    logs = _wait_logs(flow_run_id, lambda m: m.startswith("SERVED-RESULT "))
    assert run.state.is_completed(), "\n".join(logs[-40:])
    [line] = [m for m in logs if m.startswith("SERVED-RESULT ")]
    assert json.loads(line.split(" ", 1)[1]) == {"fn": {"x": 4, "scaled": 40}, "cmd": {"rows": 4}}
    assert "Shipped module globals with served-fn: FACTOR" in logs  # names, never values
    pids = _process_ids(flow_run_id)
    assert len(pids) == 2
    with settings.client() as client:
        assert {client.get_process(p).state for p in pids} == {ProcessState.SUCCESS}


@pytest.mark.parametrize("kind", ["command", "function"])
def test_cancelling_a_served_run_from_the_api_cancels_the_colonyos_process(served_flows, settings, kind):
    flow_run_id = _run(served_flows["served/d"], {"mode": f"long-{kind}"})
    deadline = time.monotonic() + RUN_TIMEOUT
    pids: list[str] = []
    while not pids:
        assert time.monotonic() < deadline, "\n".join(flow_run_logs(flow_run_id)[-40:])
        time.sleep(1)
        pids = _process_ids(flow_run_id)
    [pid] = pids
    assert _wait_state(settings, pid, (ProcessState.RUNNING,)) == ProcessState.RUNNING
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Cancelling(), force=True)
    run = _wait_run(flow_run_id, lambda s: s.is_cancelled() or s.is_final())
    assert run.state.is_cancelled(), run.state
    assert _wait_state(settings, pid, ()) == ProcessState.CANCELLED
    logs = _wait_logs(flow_run_id, lambda m: f"Cancelling ColonyOS process {pid}" in m)
    assert any(f"Cancelling ColonyOS process {pid}" in m for m in logs), "\n".join(logs[-40:])


DEPLOY = textwrap.dedent('''
    import sys
    from prefect import flow

    flow.from_source(source=sys.argv[1], entrypoint="flows.py:served").deploy(
        name="p", work_pool_name=sys.argv[2], print_next_steps=False)
''')


@pytest.fixture(scope="module")
def process_pool_deployment(tmp_path_factory, colony_env):
    """``from_source(...).deploy()`` to a process work pool, and ``prefect worker start`` polling it."""
    root = tmp_path_factory.mktemp("deployed")
    (root / "flows.py").write_text(SERVED)
    (root / "deploy.py").write_text(DEPLOY)
    pool = f"pollinator-{uuid.uuid4().hex[:8]}"
    prefect = str(Path(sys.executable).with_name("prefect"))
    env = {**os.environ, **colony_env, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "core"), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    for argv in ([prefect, "work-pool", "create", pool, "--type", "process"],
                 [sys.executable, str(root / "deploy.py"), str(root), pool]):
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log_path = root / "worker.log"
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", pool, "--type", "process"], cwd=root,
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield _wait_for_deployments(worker, log_path, ["served/p"])["served/p"], log_path
    finally:
        _stop(worker)


def test_a_process_pool_deployment_runs_both_forms(process_pool_deployment, settings):
    deployment_id, log_path = process_pool_deployment
    flow_run_id = _run(deployment_id, {"x": 6})
    run = _wait_run(flow_run_id)
    logs = _wait_logs(flow_run_id, lambda m: m.startswith("SERVED-RESULT "))
    assert run.state.is_completed(), "\n".join(logs[-40:]) + log_path.read_text()[-3000:]
    [line] = [m for m in logs if m.startswith("SERVED-RESULT ")]
    assert json.loads(line.split(" ", 1)[1]) == {"fn": {"x": 6, "scaled": 60}, "cmd": {"rows": 6}}

