"""Walltime means run time (issue 16): what the spec says, what the executor enforces, what the server sees."""

from __future__ import annotations

import time

import pytest

from executor_fakes import FakeClient, process
from pollinator.colonies.models import Conditions, ProcessState
from pollinator.errors import ProjectError
from pollinator.executor.job_runner import LocalBackend
from pollinator.executor.process_job import ProcessJob
from pollinator.executor.strict import Conformance
from pollinator.spec import build_spec
from test_executor_integration import client, colony, executor, spec, wait_final, log_text  # noqa: F401


def run_job(proc, tmp_path, assigned_at=None):
    client = FakeClient()
    job = ProcessJob(proc, client=client, backend=LocalBackend(kill_grace=0.5), fs_dir=tmp_path / "fs",
                     cancel_poll=0.2, executor_id="exec-id", assigned_at=assigned_at)
    job.run()
    return client, job


def test_walltime_counts_from_the_start_of_the_command_not_from_assignment(tmp_path):
    """Assigned 60 s ago (a long staging), walltime 2: the job still gets its run time."""
    proc = process({"cmd": "echo start; sleep 1; echo after-one-second; sleep 30"},
                   conditions=Conditions(walltime=2), maxexectime=-1)
    client, _job = run_job(proc, tmp_path, assigned_at=time.monotonic() - 60)
    kind, errors = client.closed
    assert kind == "failed" and errors[0].startswith("walltime exceeded: the job was killed after its walltime of 2 s")
    assert "after-one-second" in client.lines


def test_the_server_deadline_is_a_hard_stop_the_executor_reports_itself(tmp_path):
    """maxexectime counts from assignment: the executor ends the attempt before the server would re-queue
    it, and closes it failed naming why."""
    proc = process({"cmd": "echo start; sleep 30"}, conditions=Conditions(walltime=100), maxexectime=2)
    client, _job = run_job(proc, tmp_path)
    kind, errors = client.closed
    assert kind == "failed" and errors[0] == "walltime exceeded"
    assert "server's deadline for this attempt came first" in errors[1]


def test_walltime_exceeded_is_closed_once_and_never_rerun(executor, client):  # noqa: F811
    """Through the local colony with retries left: the executor's own close comes first, so the server never
    re-queues the attempt for its maxexectime."""
    p = client.submit(spec({"cmd": "echo started; sleep 60"}, conditions=Conditions(walltime=600), maxexectime=3,
                           maxretries=3))
    done = wait_final(client, p.processid, 30)
    assert done.process_state == ProcessState.FAILED and done.retries == 0
    assert done.errors[0] == "walltime exceeded"
    assert log_text(client, p.processid).count("started") == 1


def test_staging_allowance_goes_into_the_spec_within_the_executors_rule(monkeypatch):
    monkeypatch.setenv("POLLINATOR_STAGING_ALLOWANCE", "300")
    s = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60)
    assert (s.conditions.walltime, s.maxexectime, s.env["POLLINATOR_WALLTIME"]) == (360, 360, "60")
    assert Conformance(strict=True).refusal(s) == []  # ValidateFuncSpec: 0 < maxexectime <= walltime
    monkeypatch.delenv("POLLINATOR_STAGING_ALLOWANCE")
    s = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60)
    assert (s.conditions.walltime, s.maxexectime, "POLLINATOR_WALLTIME" in s.env) == (60, 59, False)
    monkeypatch.setenv("POLLINATOR_STAGING_ALLOWANCE", "soon")
    with pytest.raises(ProjectError, match="POLLINATOR_STAGING_ALLOWANCE"):
        build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


@pytest.mark.parametrize("escape", [
    "setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' > /dev/null 2>&1 < /dev/null &",
    "{python} -c \"import subprocess; p = subprocess.Popen(['sleep', '300'], start_new_session=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); open('{pidfile}', 'w').write(str(p.pid))\"",
])
def test_children_in_new_sessions_end_with_the_job(tmp_path, escape):
    import sys

    pidfile = tmp_path / "child.pid"
    cmd = escape.format(pidfile=pidfile, python=sys.executable) + f"\nwhile [ ! -s {pidfile} ]; do sleep 0.05; done; echo done"
    client, _job = run_job(process({"cmd": cmd}), tmp_path)
    assert client.closed == ("success", [])
    pid = int(pidfile.read_text())
    assert not _alive(pid), "the escaped child outlived its job"
    assert any("outside its process group" in line for line in client.lines)
