"""One process from assigned to closed, against a fake client and a fake CFS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from executor_fakes import FakeCFS, FakeClient, process
from pollinator.colonies.models import Conditions, Filesystem, SnapshotMount, SyncDirMount
from pollinator.errors import UnsafePathError
from pollinator.executor.backend import AbortSignal
from pollinator.executor.job_runner import LocalBackend
from pollinator.executor.launch import JobSpecError, PathMapper, job_base_env, plan_execute, walltime_of
from pollinator.executor.process_job import ProcessJob


def run_job(proc, tmp_path, client=None, cfs=None, abort=None, **kw):
    client = client or FakeClient()
    job = ProcessJob(proc, client=client, backend=LocalBackend(kill_grace=0.5), fs_dir=tmp_path / "fs",
                     cfs=cfs, abort=abort, cancel_poll=kw.pop("cancel_poll", 0.2), executor_id="exec-id", **kw)
    job.run()
    return client, job


# -- launch: paths, env, kwargs -------------------------------------------------------------------------
def test_path_mapper_rewrites_whole_components_only(tmp_path):
    m = PathMapper(tmp_path, "/cfs", "PID")
    fs = str(tmp_path.resolve())
    assert m.rewrite("/cfs/pollinator/x/main.py") == f"{fs}/pollinator/x/main.py"
    assert m.rewrite("/cfs") == fs
    assert m.rewrite("PYTHONPATH=/a:/cfs/lib") == f"PYTHONPATH=/a:{fs}/lib"
    assert m.rewrite("'/cfs/a b'") == f"'{fs}/a b'"
    assert m.rewrite("/cfsdata /data/cfs/x ./cfs") == "/cfsdata /data/cfs/x ./cfs"
    assert m.rewrite("/cfs/{processid}/out") == f"{fs}/PID/out"


def test_local_dir_stays_inside_fs_dir(tmp_path):
    m = PathMapper(tmp_path, "/cfs", "PID")
    assert m.local_dir("/pollinator/p/src") == tmp_path.resolve() / "pollinator/p/src"
    assert m.local_dir("/cfs/data") == tmp_path.resolve() / "data"
    with pytest.raises(UnsafePathError):
        m.local_dir("/../../etc")


def test_plan_env_and_command(tmp_path):
    proc = process({"cmd": "python3", "args": ["/cfs/pollinator/p/src/main.py", 3, True],
                    "init-cmd": "pip install -r /cfs/req.txt", "docker-image": "python:3.12"},
                   env={"PROJECT_DIR": "/cfs/pollinator/p", "FOO": "x:/cfs/y"},
                   conditions=Conditions(nodes=2, processespernode=3, walltime=100), maxexectime=50,
                   fs=Filesystem(mount="/cfs"))
    base = {"PATH": "/usr/bin", "COLONIES_PRVKEY": "k" * 64, "AWS_S3_SECRETKEY": "s", "MY_TOKEN": "t",
            "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root"}
    plan = plan_execute(proc, tmp_path, output_file=tmp_path / "o.json", base_env=base)
    fs = str(tmp_path.resolve())
    assert plan.command == f"python3 {fs}/pollinator/p/src/main.py 3 true"
    assert plan.init_command == f"pip install -r {fs}/req.txt"
    assert plan.env["PROJECT_DIR"] == f"{fs}/pollinator/p" and plan.cwd == Path(fs) / "pollinator/p"
    assert plan.env["FOO"] == f"x:{fs}/y"
    assert plan.env["COLONIES_PROCESS_ID"] == proc.processid
    assert plan.env["PATH"] == "/usr/bin" and plan.env["HOME"] == "/root"
    for secret in ("COLONIES_PRVKEY", "AWS_S3_SECRETKEY", "MY_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in plan.env
    assert plan.ranks == 6 and plan.ranks_per_node == 3
    assert plan.walltime == 100 and plan.image == "python:3.12"  # run time; maxexectime is the server's


def test_spec_env_may_carry_a_secret_on_purpose(tmp_path):
    proc = process({"cmd": "true"}, env={"COLONIES_PRVKEY": "mine"})
    plan = plan_execute(proc, tmp_path, base_env={"COLONIES_PRVKEY": "executor's"})
    assert plan.env["COLONIES_PRVKEY"] == "mine"
    assert plan.env["PROJECT_DIR"] == str(tmp_path.resolve())


def test_walltime_choice():
    """Run time: conditions.walltime, or env.POLLINATOR_WALLTIME when a staging allowance was folded in;
    maxexectime (counted by the server from assignment) is not a run time."""
    assert walltime_of(process({}, maxexectime=-1).spec) == 0
    assert walltime_of(process({}, maxexectime=60).spec) == 0
    assert walltime_of(process({}, maxexectime=0, conditions=Conditions(walltime=5)).spec) == 5
    assert walltime_of(process({}, env={"POLLINATOR_WALLTIME": "7"}, maxexectime=300,
                               conditions=Conditions(walltime=307)).spec) == 7


def test_missing_cmd_is_a_spec_error(tmp_path):
    with pytest.raises(JobSpecError):
        plan_execute(process({"args": ["x"]}), tmp_path)


def test_job_base_env_filters():
    env = job_base_env({"COLONIES_SERVER_HOST": "h", "AWS_S3_BUCKET": "b", "PATH": "/bin", "DB_PASSWORD": "p"})
    assert env == {"PATH": "/bin"}


# -- ProcessJob -------------------------------------------------------------------------------------------
def test_echo_job_succeeds_with_its_log(tmp_path):
    client, job = run_job(process({"cmd": "echo", "args": ["hello", "world"]}, env={"FOO": "bar"}), tmp_path)
    assert client.closed == ("success", [])
    assert client.lines == ["hello world"]


def test_env_reaches_the_job(tmp_path, monkeypatch):
    monkeypatch.setenv("COLONIES_PRVKEY", "a" * 64)
    monkeypatch.setenv("AWS_S3_SECRETKEY", "supersecret")
    cmd = 'echo "$FOO|$COLONIES_PROCESS_ID|${COLONIES_PRVKEY:-none}|${AWS_S3_SECRETKEY:-none}|$PWD"'
    client, _ = run_job(process({"cmd": cmd}, env={"FOO": "bar"}), tmp_path)
    fs = (tmp_path / "fs").resolve()
    assert client.lines == [f"bar|{'p' * 64}|none|none|{fs}"]


def test_failing_job_reports_exit_code_and_stderr(tmp_path):
    client, _ = run_job(process({"cmd": "echo out; echo boom >&2; exit 3"}), tmp_path)
    kind, errors = client.closed
    assert kind == "failed"
    assert "exit code 3" in errors[0] and errors[-1] == "boom"


def test_output_file_becomes_out(tmp_path):
    cmd = """echo '{"answer": 42}' > "$POLLINATOR_OUTPUT_FILE\""""
    client, _ = run_job(process({"cmd": cmd}), tmp_path)
    assert client.closed == ("success", [{"answer": 42}])


def test_output_file_must_be_json(tmp_path):
    client, _ = run_job(process({"cmd": 'echo nope > "$POLLINATOR_OUTPUT_FILE"'}), tmp_path)
    assert client.closed[0] == "failed" and "JSON" in client.closed[1][0]


def test_unknown_funcname_fails_clearly(tmp_path):
    client, _ = run_job(process({"cmd": "echo"}, funcname="train"), tmp_path)
    assert client.closed[0] == "failed" and "unsupported funcname 'train'" in client.closed[1][0]


def test_walltime_exceeded(tmp_path):
    start = time.monotonic()
    client, _ = run_job(process({"cmd": "echo started; sleep 30"}, conditions=Conditions(walltime=1)), tmp_path)
    assert time.monotonic() - start < 5
    assert client.closed[0] == "failed" and client.closed[1][0].startswith("walltime exceeded")
    assert client.lines == ["started"]


def test_init_cmd_runs_once_before_the_ranks(tmp_path):
    proc = process({"cmd": 'echo "run $POLLINATOR_RANK $(cat init.txt)"', "init-cmd": "echo once >> init.txt"},
                   conditions=Conditions(nodes=1, processespernode=2))
    client, _ = run_job(proc, tmp_path)
    assert client.closed == ("success", [])
    assert sorted(client.lines) == ["[rank 0] run 0 once", "[rank 1] run 1 once"]


def test_failing_init_cmd_stops_the_job(tmp_path):
    client, _ = run_job(process({"cmd": "echo never", "init-cmd": "exit 4"}), tmp_path)
    assert client.closed[0] == "failed" and "init-cmd" in client.closed[1][0] and "4" in client.closed[1][0]
    assert "never" not in client.lines


def test_rank_failure_fails_process(tmp_path):
    proc = process({"cmd": '[ "$POLLINATOR_RANK" != 2 ]'}, conditions=Conditions(nodes=3, processespernode=1))
    client, _ = run_job(proc, tmp_path)
    assert client.closed[0] == "failed" and "rank 2" in client.closed[1][0]


def test_docker_image_is_mentioned_once(tmp_path):
    client, _ = run_job(process({"cmd": "echo hi", "docker-image": "ubuntu:22.04"}), tmp_path)
    assert client.lines[0].startswith("[executor] docker-image 'ubuntu:22.04' is not run in a container")
    assert client.lines[1:] == ["hi"]


def test_cancel_kills_and_stays_silent(tmp_path):
    client = FakeClient()
    marker = tmp_path / "after"
    threading.Timer(0.5, client.cancel).start()
    start = time.monotonic()
    _, job = run_job(process({"cmd": f"echo going; sleep 30; touch {marker}"}), tmp_path, client=client)
    assert time.monotonic() - start < 3
    assert job.outcome == "cancelled" and client.closed is None
    assert client.lines == ["going"] and not marker.exists()


def test_stop_closes_failed(tmp_path):
    abort = AbortSignal()
    threading.Timer(0.3, abort.set, args=("executor stopped",)).start()
    client, _ = run_job(process({"cmd": "sleep 30"}), tmp_path, abort=abort)
    assert client.closed[0] == "failed" and client.closed[1][0].startswith("executor stopped")


def test_mounts_stage_and_settle(tmp_path):
    cfs = FakeCFS()
    cfs.labels["/pollinator/p/data"] = {"hello.txt": b"Hello world!"}
    fs = Filesystem(mount="/cfs", snapshots=[
        SnapshotMount(snapshotid="snap1", label="/pollinator/p/src", dir="/pollinator/p/snap1/src",
                      keepfiles=False, keepsnapshot=False)],
        dirs=[SyncDirMount.model_validate({"label": "/pollinator/p/result", "dir": "/pollinator/p/result",
                                           "keepfiles": False,
                                           "onconflicts": {"onstart": {"keeplocal": False},
                                                           "onclose": {"keeplocal": True}}}),
              SyncDirMount.model_validate({"label": "/pollinator/p/data", "dir": "/pollinator/p/data",
                                           "keepfiles": True})])
    cmd = 'cat $PROJECT_DIR/data/hello.txt $PROJECT_DIR/snap1/src/snap.txt > $PROJECT_DIR/result/r.txt; echo ok'
    proc = process({"cmd": cmd}, env={"PROJECT_DIR": "/cfs/pollinator/p"}, fs=fs)
    client, _ = run_job(proc, tmp_path, cfs=cfs)
    assert client.closed == ("success", [])
    assert cfs.labels["/pollinator/p/result"]["r.txt"] == b"Hello world!snapshot snap1"
    root = (tmp_path / "fs").resolve()
    kinds = [c[0] for c in cfs.calls]
    assert kinds == ["download", "sync", "sync", "sync", "sync", "remove_snapshot"]
    assert ("sync", root / "pollinator/p/result", "/pollinator/p/result", True) in cfs.calls  # onclose keeplocal
    assert not (root / "pollinator/p/result").exists() and not (root / "pollinator/p/snap1/src").exists()
    assert (root / "pollinator/p/data/hello.txt").exists()  # keepfiles
    assert "ok" in client.lines


def test_mounts_without_storage_fail_clearly(tmp_path):
    fs = Filesystem(mount="/cfs", dirs=[SyncDirMount(label="/x", dir="/x")])
    client, _ = run_job(process({"cmd": "true"}, fs=fs), tmp_path, cfs=None)
    assert client.closed[0] == "failed" and "no S3 storage" in client.closed[1][0]


def test_requeued_process_is_let_go(tmp_path):
    """maxexectime + maxretries: the server requeues (retries+1) and may assign it to us again."""
    client = FakeClient()

    def requeue() -> None:
        with client.lock:
            client.retries = 1

    threading.Timer(0.4, requeue).start()
    start = time.monotonic()
    _, job = run_job(process({"cmd": "sleep 30"}), tmp_path, client=client)
    assert time.monotonic() - start < 3
    assert client.closed is None and job.outcome == "process no longer assigned to this executor"


def test_missing_project_dir_outside_fs_fails_clearly(tmp_path):
    missing = tmp_path / "elsewhere"
    client, _ = run_job(process({"cmd": "true"}, env={"PROJECT_DIR": str(missing)}), tmp_path)
    assert client.closed[0] == "failed" and "could not be started" in client.closed[1][0]
    assert not missing.exists()
