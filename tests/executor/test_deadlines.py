"""Walltime means run time (issue 16): what the spec says, what the executor enforces, what the server sees."""

from __future__ import annotations

import os
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


def test_staging_allowance_goes_into_the_spec_within_the_executors_rule():
    s = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60, staging_allowance=300)
    assert (s.conditions.walltime, s.maxexectime, s.env["POLLINATOR_WALLTIME"]) == (360, 360, "60")
    assert Conformance(strict=True).refusal(s) == []  # ValidateFuncSpec: 0 < maxexectime <= walltime
    s = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60)  # the Go tool's builder
    assert (s.conditions.walltime, s.maxexectime, "POLLINATOR_WALLTIME" in s.env) == (60, 59, False)
    s = build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=0, staging_allowance=300)
    assert (s.conditions.walltime, s.maxexectime, "POLLINATOR_WALLTIME" in s.env) == (86400, 86399, False)
    with pytest.raises(ProjectError, match="staging_allowance: -1 is negative"):
        build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60, staging_allowance=-1)
    with pytest.raises(ProjectError, match="env may not set POLLINATOR_WALLTIME"):
        build_spec("c", project_name="p", snapshot_id=None, cmd="true", walltime=60, env={"POLLINATOR_WALLTIME": "9"})


def _job_spec(**fields):
    from pollinator.run.build import build_job_spec
    from pollinator.run.options import JobOptions

    return build_job_spec("c", JobOptions.build(name="p", cmd="true", **fields))


def test_a_job_gets_its_walltime_as_run_time_with_a_default_allowance(monkeypatch):
    """The rule is the default for Pollinator's jobs; the job's own value beats the site's variable."""
    monkeypatch.delenv("POLLINATOR_STAGING_ALLOWANCE", raising=False)
    s = _job_spec(walltime=3)
    assert (s.conditions.walltime, s.maxexectime, s.env["POLLINATOR_WALLTIME"]) == (603, 603, "3")
    monkeypatch.setenv("POLLINATOR_STAGING_ALLOWANCE", "20m")
    assert (_job_spec(walltime=3).maxexectime, _job_spec(walltime=3, staging_allowance=30).maxexectime) == (1203, 33)
    s = _job_spec(walltime=3, staging_allowance=0)  # 0: the Go tool's fields exactly
    assert (s.conditions.walltime, s.maxexectime, "POLLINATOR_WALLTIME" in s.env) == (3, 2, False)
    s = _job_spec(walltime=3, launcher=False)  # nothing in such a job keeps its run time on the ColonyOS executors
    assert (s.conditions.walltime, s.maxexectime, "POLLINATOR_WALLTIME" in s.env) == (3, 2, False)
    monkeypatch.setenv("POLLINATOR_STAGING_ALLOWANCE", "soon")
    with pytest.raises(ProjectError, match="POLLINATOR_STAGING_ALLOWANCE: 'soon' is not a staging allowance"):
        _job_spec(walltime=3)
    with pytest.raises(ProjectError, match="staging_allowance: .*not a staging allowance"):
        _job_spec(walltime=3, staging_allowance="soon")


def test_project_yaml_stagingallowance_is_read_named_in_errors_and_written_only_when_set(tmp_path, monkeypatch):
    from pollinator.project import load_project

    monkeypatch.delenv("POLLINATOR_STAGING_ALLOWANCE", raising=False)
    (tmp_path / "project.yaml").write_text("projectname: p\nconditions:\n  walltime: 60\n  stagingAllowance: 15m\n"
                                           "environment:\n  cmd: echo\n")
    project = load_project(tmp_path)
    assert project.conditions.staging_allowance == 900
    assert "stagingAllowance: 900" in project.dump_yaml()
    options = project.job_options()
    assert options.staging_allowance == 900
    (tmp_path / "project.yaml").write_text("projectname: p\nconditions:\n  walltime: 60\nenvironment:\n  cmd: echo\n")
    project = load_project(tmp_path)
    assert project.conditions.staging_allowance is None and "stagingAllowance" not in project.dump_yaml()
    (tmp_path / "project.yaml").write_text("projectname: p\nconditions:\n  stagingAllowance: -5\n")
    with pytest.raises(ProjectError, match="conditions.stagingAllowance"):
        load_project(tmp_path)


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


# -- the launcher keeps the run time itself, on every executor family ------------------------------------

def _shells(tmp_path_factory=None) -> list:
    """/bin/sh (dash on Debian), and busybox's ash with nothing but busybox applets on PATH (a minimal image)."""
    import shutil

    shells = [pytest.param("/bin/sh", id="sh")]
    busybox = shutil.which("busybox")
    shells.append(pytest.param(busybox or "", id="busybox",
                               marks=pytest.mark.skipif(not busybox, reason="busybox is not installed")))
    return shells


def _run_launcher(tmp_path, shell: str, *, cmd: str, init_cmd: str = "", walltime: int = 2, signal_after=None):
    import json
    import os
    import signal as sig
    import subprocess

    from pollinator.launcher import Launcher

    script = tmp_path / "launch.sh"
    script.write_text(Launcher(cmd=cmd, init_cmd=init_cmd).script())
    result = tmp_path / "result"
    env = {"POLLINATOR_RESULT_DIR": str(result), "POLLINATOR_WALLTIME": str(walltime), "COLONIES_PROCESS_ID": "p1",
           "PATH": os.environ["PATH"]}
    argv = [shell, str(script)]
    if shell.endswith("busybox"):
        applets = tmp_path / "bin"
        applets.mkdir(exist_ok=True)
        for old in applets.iterdir():
            old.unlink()
        for name in subprocess.run([shell, "--list"], capture_output=True, text=True).stdout.split():
            (applets / name).symlink_to(shell)
        env["PATH"] = str(applets)
        argv = [str(applets / "sh"), str(script)]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        wait_file, signum = signal_after
        deadline = time.monotonic() + 30
        while not (tmp_path / wait_file).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum or sig.SIGTERM)
    out, err = proc.communicate(timeout=60)
    record = json.loads((result / ".pollinator" / "exit.json").read_text())
    return proc.returncode, out, err, record


@pytest.mark.parametrize("shell", _shells())
def test_the_launcher_stops_the_command_and_its_children_after_the_walltime(tmp_path, shell):
    """W = 2: exit 124, the exit record says why, the command's whole process group is gone."""
    cmd = "sleep 300 & echo $! > child.pid; echo started; sleep 300; echo never"
    code, out, err, record = _run_launcher(tmp_path, shell, cmd=cmd, walltime=2)
    assert code == 124 and "started" in out and "never" not in out
    assert record == {"exit_code": 124, "complete": True, "stage": "cmd", "process_id": "p1", "rank": "0",
                      "reason": "walltime exceeded (2 s)"}
    assert "pollinator: walltime exceeded: the job was stopped in its cmd after 2 s of run time" in err
    assert not _alive(int((tmp_path / "child.pid").read_text()))


@pytest.mark.parametrize("shell", _shells())
def test_the_launcher_counts_the_init_cmd_and_leaves_a_quick_job_alone(tmp_path, shell):
    code, out, _err, record = _run_launcher(tmp_path, shell, cmd="echo cmd-ran", init_cmd="echo init; sleep 300")
    assert code == 124 and "init" in out and "cmd-ran" not in out
    assert (record["stage"], record["reason"]) == ("init-cmd", "walltime exceeded (2 s)")
    code, out, _err, record = _run_launcher(tmp_path, shell, cmd="echo quick; exit 3", walltime=300)
    assert code == 3 and out == "quick\n" and (record["exit_code"], record["reason"]) == (3, "")


def _shell_argv(shell: str, script) -> list[str]:
    return [shell, "sh", str(script)] if shell.endswith("busybox") else [shell, str(script)]


@pytest.mark.parametrize("shell", _shells())
def test_the_launcher_stops_a_watchdog_that_missed_its_first_term(tmp_path, shell):
    """The race behind "walltime exceeded" on a job that ended in milliseconds: the launcher TERMs the
    watchdog as the command ends, and a TERM that lands just after the watchdog's fork (before its trap)
    is lost. Played deterministically: the launcher's own stop function against a child that swallows its
    first TERM. A single TERM and a wait (the old code) waits the child's 30 s out."""
    import re
    import subprocess

    from pollinator.launcher import _BODY

    functions = "\n".join(re.search(rf"^{name}\(\) {{\n.*?^}}$", _BODY, re.S | re.M).group(0)
                          for name in ("_pollinator_exited", "_pollinator_stop_dog"))
    script = tmp_path / "stop.sh"
    script.write_text(functions + """
( trap 'trap - TERM; echo swallowed > swallowed' TERM; touch ready; i=0
  while [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done ) &
_pollinator_dog=$!
while [ ! -e ready ]; do sleep 0.01; done
_pollinator_stop_dog
echo stopped
""")
    started = time.monotonic()
    out = subprocess.run(_shell_argv(shell, script), cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout
    assert out == "stopped\n" and (tmp_path / "swallowed").exists()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("shell", _shells())
def test_quick_jobs_under_a_watchdog_all_end_at_once_and_succeed(tmp_path, shell):
    """Many quick commands under walltime 30, 16 at a time: each ends in seconds, exit 0, no walltime
    reason (one in ~600 waited out its walltime and was reported "walltime exceeded" before the fix)."""
    import json
    import subprocess

    from pollinator.launcher import Launcher

    script = tmp_path / "launch.sh"
    script.write_text(Launcher(cmd="sh -c 'for i in 1 2 3; do echo line$i; done'").script())
    runs = 320 if shell == "/bin/sh" else 160
    started = time.monotonic()
    for batch in range(0, runs, 16):
        procs = []
        for i in range(batch, batch + 16):
            env = {"POLLINATOR_RESULT_DIR": str(tmp_path / f"r{i}"), "POLLINATOR_WALLTIME": "30",
                   "PATH": os.environ["PATH"]}
            procs.append(subprocess.Popen(_shell_argv(shell, script), env=env, cwd=tmp_path,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert [p.wait(60) for p in procs] == [0] * 16
    assert time.monotonic() - started < 25, "a quick job waited for its watchdog"
    for i in range(runs):
        record = json.loads((tmp_path / f"r{i}" / ".pollinator" / "exit.json").read_text())
        assert (record["exit_code"], record["reason"]) == (0, "")


@pytest.mark.parametrize("shell", _shells())
def test_a_signal_to_the_launcher_reaches_the_command(tmp_path, shell):
    """A cancel (SIGTERM to the launcher, scancel) stops the command's group too, though it has a session of its own."""
    cmd = "sleep 300 & echo $! > child.pid; sleep 300"
    code, _out, _err, record = _run_launcher(tmp_path, shell, cmd=cmd, walltime=300, signal_after=("child.pid", None))
    assert code == 143 and (record["exit_code"], record["reason"]) == (143, "")
    assert not _alive(int((tmp_path / "child.pid").read_text()))


@pytest.mark.parametrize("shell", _shells())
def test_a_signal_to_the_whole_job_is_no_walltime(tmp_path, shell):
    """scancel and srun --kill-on-bad-exit signal every process of the job, the watchdog's sleep included:
    a sleep cut short must not read as the walltime running out."""
    import signal as sig
    import subprocess

    cmd = "echo $$ > cmd.pid; sleep 300"
    script = tmp_path / "launch.sh"
    from pollinator.launcher import Launcher

    script.write_text(Launcher(cmd=cmd).script())
    env = {"POLLINATOR_RESULT_DIR": str(tmp_path / "result"), "POLLINATOR_WALLTIME": "300", "PATH": os.environ["PATH"]}
    argv = [shell, "sh", str(script)] if shell.endswith("busybox") else [shell, str(script)]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "cmd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    watchdog_sleeps = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 300"]
    for pid in watchdog_sleeps:  # every `sleep 300` of this test: the command's and the watchdog's
        if os.getsid(int(pid)) == proc.pid:
            os.kill(int(pid), sig.SIGTERM)  # the watchdog's (the command's sleep is in a session of its own)
    time.sleep(0.5)
    os.killpg(proc.pid, sig.SIGTERM)
    assert proc.wait(30) == 143
    record = (tmp_path / "result" / ".pollinator" / "exit.json").read_text()
    assert '"reason": ""' in record and "walltime" not in record


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_the_exit_records_reason_is_what_the_client_reports():
    from pollinator.run.exit_record import ExitRecord, failure, reasons

    over = ExitRecord(exit_code=124, complete=True, process_id="p", reason="walltime exceeded (3 s)")
    message, code = failure([over], "p")
    assert code == 124 and message.startswith("walltime exceeded (3 s): the launcher stopped the command")
    rank1 = over.model_copy(update={"rank": "1"})
    assert reasons([over, rank1, ExitRecord(exit_code=0, complete=True, process_id="p")], "p") == \
        ["walltime exceeded (3 s)"]
    assert reasons([over.model_copy(update={"process_id": "other"})], "p") == []  # another process's record
    assert ExitRecord.model_validate({"exit_code": 0, "complete": True}).reason == ""  # a v1 launcher's record
