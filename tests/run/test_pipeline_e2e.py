"""The run pipeline against a real local colony: server, moto S3 and local executors over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed, JobTimeout, ProjectError
from pollinator.run import Job, remote_function_job

PY = sys.executable


def _cli(args, cwd, env, timeout=120, **kw):
    """`pollinator ...` through the console script's own entry (start-up trims included)."""
    return subprocess.run([PY, "-m", "pollinator.cli", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, **kw)


def test_seed_walkthrough_new_then_run_follow(tmp_path, colony_env):
    """`pollinator new -e X`, edit main.py, `pollinator run --follow`: output printed, result.txt home."""
    proj = tmp_path / "seed"
    proj.mkdir()
    out = _cli(["new", "-e", "dev-k8s"], proj, colony_env)
    assert out.returncode == 0, out.stderr
    # no container engine on the local executor: skip the scaffold's `pip3 install numpy`
    text = (proj / "project.yaml").read_text().replace("pip3 install numpy", "")
    (proj / "project.yaml").write_text(text)
    main = proj / "cfs" / "src" / "main.py"
    main.write_text(main.read_text() + "\nprint('edited by the user')\n")
    out = _cli(["run", "--follow"], proj, colony_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Hello world!" in out.stdout
    assert "edited by the user" in out.stdout
    assert (proj / "cfs" / "result" / "result.txt").read_text() == "Hello, World!"
    assert not (proj / ".pollinator" / "run.json").exists()


def _inline(settings, tmp_path, **kw):
    fields = dict(name="t-" + os.urandom(4).hex(), image="python:3.12", executor_names=["dev-k8s"],
                  result_dir=tmp_path / "result", walltime=120)
    fields.update(kw)
    return Job.inline(settings, **fields)


def test_inline_job_logs_and_result_files(settings, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "job.py").write_text(
        "import os\n"
        "for i in range(5): print('line', i, flush=True)\n"
        "open(os.path.join(os.environ['POLLINATOR_RESULT_DIR'], 'out.txt'), 'w').write('done')\n")
    lines: list[str] = []
    with _inline(settings, tmp_path, cmd="python3", source="job.py", src_dir=src) as job:
        result = job.run(on_log=lines.append)
    assert [ln for ln in lines if ln.startswith("line")] == [f"line {i}" for i in range(5)]
    assert result.state == "SUCCESS" and result.ok
    assert "out.txt" in result.result_files
    assert (tmp_path / "result" / "out.txt").read_text() == "done"
    assert result.seconds is not None


def test_remote_failure_surfaces_errors(settings, tmp_path):
    with _inline(settings, tmp_path, cmd="sh -c 'echo about to fail >&2; exit 3'") as job:
        with pytest.raises(JobFailed) as info:
            job.run()
    assert info.value.state == "FAILED"
    assert any("3" in e for e in info.value.errors), info.value.errors
    assert "about to fail" in " ".join(info.value.errors)


def test_walltime_exceeded_fails(settings, tmp_path):
    with _inline(settings, tmp_path, cmd="sleep 30", walltime=2, max_retries=1) as job:
        with pytest.raises(JobFailed) as info:
            job.run(timeout=60)
    assert info.value.state == "FAILED"


def test_cancel_from_client(settings, tmp_path):
    with _inline(settings, tmp_path, cmd="sh -c 'echo started; sleep 60'") as job:
        job.submit()
        follower = job.follow()
        for line in follower:
            if "started" in line.message:
                break
        job.cancel()
        process = job.wait(timeout=30)
    assert process.state == ProcessState.CANCELLED


def test_client_timeout_cancels_remote(settings, tmp_path):
    with _inline(settings, tmp_path, cmd="sleep 60") as job:
        with pytest.raises(JobTimeout):
            job.run(timeout=2)
        assert job.wait(timeout=30).state == ProcessState.CANCELLED


def test_same_token_reattaches_instead_of_submitting_twice(settings, tmp_path):
    token = "dag/task/run/" + os.urandom(4).hex()
    first = _inline(settings, tmp_path, cmd="sh -c 'sleep 2; echo once'", token=token)
    pid = first.submit()
    second = _inline(settings, tmp_path, cmd="sh -c 'sleep 2; echo once'", token=token)
    assert second.submit() == pid and second.attached
    assert Job.find_existing(settings, token).processid == pid
    result = second.run()
    assert result.process_id == pid and result.ok


def test_attach_after_detach_gets_logs_and_results(settings, tmp_path):
    job = _inline(settings, tmp_path, cmd="sh -c 'echo from-detached; echo r > $POLLINATOR_RESULT_DIR/r.txt'")
    pid = job.submit()
    job.close()
    lines: list[str] = []
    with Job.attach(settings, pid, result_dir=tmp_path / "attached") as again:
        result = again.run(on_log=lines.append)  # follows from the first line, whether running or done
    assert result.process_id == pid and "from-detached" in lines
    assert (tmp_path / "attached" / "r.txt").read_text().strip() == "r"


def test_chaining_b_reads_a_result_label_without_client_download(settings, tmp_path):
    a = _inline(settings, tmp_path / "a", cmd="sh -c 'echo 41 > $POLLINATOR_RESULT_DIR/answer.txt'",
                result_dir=None)
    ra = a.run()
    assert "answer.txt" in ra.result_files
    assert not (tmp_path / "a").exists(), "A's results were not to be downloaded"
    b = _inline(settings, tmp_path / "b", executor_names=["dev-hpc"], inputs={"prep": ra.result_label},
                cmd="sh -c 'cat $POLLINATOR_INPUT_PREP/answer.txt'")
    spec = b.spec()
    assert any(m.label == ra.result_label for m in spec.fs.snapshots)
    lines = []
    b.run(on_log=lines.append)
    assert "41" in lines


def add(x, y):
    return {"sum": x + y, "items": [x, y]}


def test_remote_python_function(settings, tmp_path):
    with remote_function_job(settings, add, (2, 3), executor_names=["dev-k8s"]) as job:
        result = job.run()
    assert result.return_value == {"sum": 5, "items": [2, 3]}


def test_remote_function_refuses_closures(settings):
    y = 3

    def closure(x):
        return x + y

    with pytest.raises(ProjectError, match="enclosing"):
        remote_function_job(settings, closure, (1,))


def test_bad_options_submit_nothing(settings, client):
    before = len(client.get_processes(ProcessState.WAITING)) + len(client.get_processes(ProcessState.RUNNING))
    with pytest.raises(ProjectError, match="nodes"):
        Job.inline(settings, name="bad", cmd="true", nodes=0)
    with pytest.raises(ProjectError, match="mem"):
        Job.inline(settings, name="bad", cmd="true", mem="lots").submit()
    after = len(client.get_processes(ProcessState.WAITING)) + len(client.get_processes(ProcessState.RUNNING))
    assert after == before


def test_failed_attempt_with_same_token_is_submitted_anew(settings, tmp_path):
    token = "retry/" + os.urandom(4).hex()
    with pytest.raises(JobFailed) as first:
        _inline(settings, tmp_path, cmd="false", token=token).run()
    again = _inline(settings, tmp_path, cmd="true", token=token)
    result = again.run()
    assert not again.attached and result.process_id != first.value.process_id and result.ok


async def add_async(x, y):
    import asyncio

    await asyncio.sleep(0)
    return x + y


def test_remote_async_function(settings):
    with remote_function_job(settings, add_async, (2, 40), executor_names=["dev-hpc"]) as job:
        assert job.run().return_value == 42


def test_local_colony_is_found_only_where_asked(local_colony):
    """The CLI looks for a running `pollinator dev` colony; configuration never does by itself."""
    from pollinator.config import Settings
    from pollinator.dev.colony import discover_settings
    from pollinator.errors import ConfigError

    env = {"POLLINATOR_DEV_DIR": str(local_colony.data_dir)}
    found = discover_settings(env)
    assert found.port == local_colony.settings().port
    assert discover_settings(env, default_dir=False).port == found.port  # named explicitly: the opt-in
    with pytest.raises(ConfigError, match="COLONIES_PRVKEY"):
        Settings.from_env(env)  # a worker with no COLONIES_* variables does not guess
    with pytest.raises(Exception, match="COLONIES_SERVER_HOST"):
        discover_settings({"COLONIES_PRVKEY": "a" * 64, "POLLINATOR_DEV_DIR": str(local_colony.data_dir)})


def test_ctrl_c_while_following_cancels_the_remote_process(tmp_path, colony_env, client):
    """Not a TTY: Ctrl-C cancels at once, exit 130; the process ends CANCELLED."""
    import signal

    proj = tmp_path / "ctrlc"
    proj.mkdir()
    assert _cli(["new", "-e", "dev-k8s"], proj, colony_env).returncode == 0
    (proj / "cfs" / "src" / "main.py").write_text("import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    (proj / "project.yaml").write_text((proj / "project.yaml").read_text().replace("pip3 install numpy", ""))
    proc = subprocess.Popen([PY, "-m", "pollinator.cli", "run", "--follow"], cwd=proj,
                            env={**os.environ, **colony_env, "PYTHONFAULTHANDLER": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if "working" in line:
            break
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the CLI did not end within 60 s of Ctrl-C:\n{err}") from None
    assert proc.returncode == 130, err
    pid = next(word for word in err.split() if len(word) == 64)
    assert client.get_process(pid).state == ProcessState.CANCELLED


def _project(root: Path, name: str, executor: str, cmd: str) -> Path:
    root.mkdir(parents=True)
    (root / "project.yaml").write_text(
        f"projectname: {name}\nconditions:\n  executorNames: [{executor}]\n  walltime: 120\n"
        f"environment:\n  cmd: {json.dumps(cmd)}\n")
    return root


def test_cli_input_flag_step_b_reads_step_a_result(tmp_path, colony_env):
    """`pollinator run --input prep=/pollinator/<A>/result`: B reads the file A wrote, on another executor."""
    a_name = "inp-a-" + os.urandom(4).hex()
    a = _project(tmp_path / "a", a_name, "dev-k8s", "sh -c 'echo from-A > $POLLINATOR_RESULT_DIR/prep.txt'")
    out = _cli(["run", "--follow"], a, colony_env)
    assert out.returncode == 0, out.stdout + out.stderr
    b = _project(tmp_path / "b", "inp-b-" + os.urandom(4).hex(), "dev-hpc",
                 "sh -c 'ls -A $POLLINATOR_INPUT_PREP; cp $POLLINATOR_INPUT_PREP/prep.txt $POLLINATOR_RESULT_DIR/got.txt'")
    out = _cli(["run", "--follow", "--input", f"prep=/pollinator/{a_name}/result"], b, colony_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (b / "cfs" / "result" / "got.txt").read_text() == "from-A\n"
    # the input mount and the fetched results hold the user's files only (no Go .cfs markers, no internals)
    assert "prep.txt" in out.stdout.split() and ".cfs" not in out.stdout.split()
    assert sorted(p.name for p in (b / "cfs" / "result").rglob("*")) == ["got.txt"]
    assert sorted(p.name for p in (a / "cfs" / "result").rglob("*")) == ["prep.txt"]
