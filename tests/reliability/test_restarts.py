"""Real-life process faults: the server, the client and an executor die mid-job (kill -9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rel_tally
from rel_helpers import cli, wait_for
from pollinator.colonies.models import ProcessState
from pollinator.dev.controller import MAX_EXEC_EXCEEDED
from pollinator.run import Job
from pollinator.run.token import token_label

N_LINES = 60


@pytest.mark.timeout(120)
def test_server_killed_and_restarted_mid_follow_loses_and_doubles_nothing(private_colony, tmp_path):
    colony = private_colony(("rel-exec",))
    job = Job.inline(colony.settings, name="rel-restart", executor_names=["rel-exec"], walltime=90,
                     result_dir=tmp_path / "res",
                     cmd=f"sh -c 'for i in $(seq 1 {N_LINES}); do echo n=$i; sleep 0.05; done; "
                         "echo kept > $POLLINATOR_RESULT_DIR/r.txt'")
    lines: list[str] = []
    got_some = threading.Event()
    outcome: dict[str, object] = {}

    def on_log(text: str) -> None:
        if text.startswith("n="):
            lines.append(text)
            if len(lines) >= 8:
                got_some.set()

    def run() -> None:
        try:
            outcome["result"] = job.run(on_log=on_log, timeout=100)
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    follower = threading.Thread(target=run, daemon=True)
    follower.start()
    assert got_some.wait(60), "the job never started printing"
    colony.kill("server")
    rel_tally.add("faults_injected")
    colony.restart_server()
    follower.join(100)
    assert not follower.is_alive(), "job.run hung after the server restart"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.state == "SUCCESS"
    assert lines == [f"n={i}" for i in range(1, N_LINES + 1)], f"lost/doubled/reordered: {lines}"
    assert (tmp_path / "res" / "r.txt").read_text().strip() == "kept"
    rel_tally.add("faults_survived")
    rel_tally.add("log_lines_checked", N_LINES)
    rel_tally.add("files_checked")
    job.close()


def _run_json(project: Path) -> dict:
    try:
        return json.loads((project / ".pollinator" / "run.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.timeout(150)
def test_cli_killed_after_submit_reattaches_to_the_same_process(tmp_path, colony_env, client):
    project = tmp_path / "proj"
    project.mkdir()
    made = cli(["new", "-e", "dev-hpc"], project, colony_env)
    assert made.returncode == 0, made.stderr
    text = (project / "project.yaml").read_text().replace("pip3 install numpy", "")
    (project / "project.yaml").write_text(text)
    (project / "cfs" / "src" / "main.py").write_text(
        "import os, time\nprint('begin', flush=True)\ntime.sleep(3)\nprint('the end', flush=True)\n"
        "open(os.path.join(os.environ['PROJECT_DIR'], 'result', 'result.txt'), 'w').write('r')\n")
    first = subprocess.Popen([sys.executable, "-m", "pollinator.cli.main", "run", "--follow"], cwd=project,
                             env={**os.environ, **colony_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        state = wait_for(lambda: _run_json(project).get("process_id") and _run_json(project), 60,
                         what="the first run recording its process id")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    rel_tally.add("faults_injected")
    token, pid = state["token"], state["process_id"]
    assert client.get_process(pid).state in (ProcessState.WAITING, ProcessState.RUNNING)

    again = cli(["run", "--follow"], project, colony_env, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"re-attached to process {pid}" in again.stderr
    assert "the end" in again.stdout
    same_token = [p for state_ in ProcessState for p in client.get_processes(state_, label=token_label(token))]
    assert [p.processid for p in same_token] == [pid], "a second process was submitted"
    assert client.get_process(pid).state == ProcessState.SUCCESS
    assert (project / "cfs" / "result" / "result.txt").exists()
    assert not (project / ".pollinator" / "run.json").exists()
    rel_tally.add("faults_survived")
    rel_tally.add("files_checked")


@pytest.mark.timeout(120)
def test_executor_killed_mid_job_is_requeued_or_fails_with_exec_time_exceeded(private_colony, tmp_path):
    colony = private_colony(("rel-exec",))
    # the server re-queues a dead executor's process walltime + staging allowance after assignment (6 s
    # here; the default allowance, 600 s, would outlast the wait)
    job = Job.inline(colony.settings, name="rel-exec-death", executor_names=None, walltime=4, staging_allowance=2,
                     max_retries=1, cmd="sh -c 'echo attempt; sleep 1; echo finished'")
    pid = job.submit()
    seen = wait_for(lambda: any("attempt" in ln.message for ln in job.client.get_logs(pid)), 30,
                    what="the first attempt starting")
    assert seen
    first = job.client.get_process(pid)
    assert first.state == ProcessState.RUNNING and first.retries == 0
    colony.kill("executor-rel-exec")
    rel_tally.add("faults_injected")
    colony.start_executor("rel-exec-2")
    process = job.wait(timeout=60, poll=0.2)
    if process.state == ProcessState.SUCCESS:
        assert process.retries == 1, "completed without being requeued?"
        logs = "".join(ln.message for ln in job.client.get_logs(pid))
        assert "finished" in logs
    else:
        assert process.state == ProcessState.FAILED
        assert any(MAX_EXEC_EXCEEDED in e for e in process.errors), process.errors
    assert process.assignedexecutorid != first.assignedexecutorid or process.state == ProcessState.FAILED
    rel_tally.add("faults_survived")
    rel_tally.note("executor_death_outcome", ProcessState(process.state).name)
    job.close()
