"""Real clients against the local server: restart persistence, pycolonies, our ColoniesClient, the CLI entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pollinator.colonies import crypto
from pollinator.colonies.models import Conditions, File, FunctionSpec, Reference, S3Object
from pollinator.errors import NotFound, ServerError
from server_harness import Colony_, ServerThread, free_port, start_colony


@pytest.fixture(scope="module")
def colony(tmp_path_factory) -> Colony_:
    c = start_colony(tmp_path_factory.mktemp("clients"))
    yield c
    c.server.stop()


def spec(**kw) -> FunctionSpec:
    return FunctionSpec(funcname="f", maxexectime=60, maxwaittime=-1,
                        conditions=Conditions(colonyname="dev", executortype="capture-executor"), **kw)


def test_state_survives_restart(tmp_path: Path) -> None:
    c = start_colony(tmp_path)
    user, executor = c.client(c.user_key), c.client(c.executor_key)
    done = user.submit(spec())
    executor.assign(timeout=1)
    executor.add_log(done.processid, "kept\n")
    executor.close_successful(done.processid, ["out"])
    waiting = user.submit(spec())
    c.server.stop()

    c.server = ServerThread(tmp_path, c.server.app.state.ctx.server_id, port=c.server.port).start()
    try:
        user, executor = c.client(c.user_key), c.client(c.executor_key)
        assert user.get_process(done.processid).out == ["out"]
        assert [log.message for log in user.get_logs(done.processid)] == ["kept\n"]
        assert executor.assign(timeout=1).processid == waiting.processid  # queue and approval kept
        executor.add_log(waiting.processid, "after restart\n")
        first_ts = user.get_logs(done.processid)[0].timestamp
        assert user.get_logs(waiting.processid)[0].timestamp > first_ts
    finally:
        c.server.stop()


def test_our_client_every_message(colony: Colony_) -> None:
    user, executor = colony.client(colony.user_key), colony.client(colony.executor_key)
    owner = colony.client(colony.colony_key)
    assert user.get_colony().name == "dev"
    assert [e.executorname for e in user.get_executors()] == ["capture-1"]
    assert user.get_executor("capture-1").state == 1
    p = user.submit(spec(env={"A": "1"}, kwargs={"n": 3, "flag": False}))
    assert p.spec.env == {"A": "1"} and p.attributes[0].key == "A"
    assert [x.processid for x in user.get_processes(0)] == [p.processid]
    a = executor.assign(timeout=1)
    executor.set_output(a.processid, [{"k": 1}])
    executor.add_log(a.processid, "one\n")
    executor.add_log(a.processid, "two\n")
    logs = user.get_logs(a.processid)
    assert [log.message for log in user.get_logs(a.processid, since=logs[0].timestamp)] == ["two\n"]
    assert [log.message for log in user.get_logs(a.processid, count=1, latest=True)] == ["two\n"]
    assert [log.message for log in user.get_logs("", executor_name="capture-1")][-1] == "two\n"
    executor.close_successful(a.processid)
    assert user.get_process(a.processid).out == [{"k": 1}]
    failed = user.submit(spec())
    executor.assign(timeout=1)
    executor.close_failed(failed.processid, ["boom"])
    assert user.get_process(failed.processid).errors == ["boom"]
    assert user.get_colony_statistics().successfulprocesses >= 1
    user.remove_process(failed.processid)
    with pytest.raises(NotFound):
        user.get_process(failed.processid)
    s3 = Reference(protocol="s3", s3object=S3Object(server="127.0.0.1", port=9000, object="o1", bucket="b"))
    f1 = user.add_file(File(colonyname="dev", label="/x", name="a.txt", size=1, checksum="c1", ref=s3))
    f2 = user.add_file(File(colonyname="dev", label="/x/sub", name="b.txt", size=2, checksum="c2", ref=s3))
    assert f2.sequencenr == f1.sequencenr + 1
    assert user.get_file(label="/x", name="a.txt")[0].fileid == f1.fileid
    assert [f.name for f in user.get_files("/x")] == ["a.txt"]
    assert {label.name for label in user.get_file_labels("/x")} == {"/x", "/x/sub"}
    snap = user.create_snapshot("/x/", "snap")
    assert sorted(snap.fileids) == sorted([f1.fileid, f2.fileid]) and snap.label == "/x"
    assert user.get_snapshot(name="snap").snapshotid == snap.snapshotid
    assert [s.name for s in user.get_snapshots()] == ["snap"]
    user.remove_snapshot(snapshot_id=snap.snapshotid)
    with pytest.raises(ServerError, match="Snapshot not found"):
        user.get_snapshot(snapshot_id=snap.snapshotid)
    user.remove_file(file_id=f1.fileid)
    with pytest.raises(NotFound, match="Failed to get file"):
        user.get_file(label="/x", name="a.txt")
    owner.reject_executor("capture-1")
    owner.approve_executor("capture-1")


def test_pycolonies_client(colony: Colony_) -> None:
    from pycolonies import Colonies  # installs top-level crypto/model modules

    client = Colonies("127.0.0.1", colony.server.port)
    from model import Conditions as PyConditions, FuncSpec as PyFuncSpec

    spec_ = PyFuncSpec(funcname="echo", args=["hi"], maxexectime=60, maxwaittime=-1,
                       conditions=PyConditions(colonyname="dev", executortype="capture-executor"))
    submitted = client.submit_func_spec(spec_, colony.user_key)
    assigned = client.assign("dev", 1, colony.executor_key)
    assert assigned.processid == submitted.processid
    client.add_log(assigned.processid, "hello\n", colony.executor_key)
    logs = client.get_process_log("dev", assigned.processid, 100, 0, colony.user_key)
    assert [entry["message"] for entry in logs] == ["hello\n"]
    client.close(assigned.processid, ["done"], colony.executor_key)
    waited = client.wait(submitted, 5, colony.user_key)
    assert waited.state == 2 and client.get_process(submitted.processid, colony.user_key).output == ["done"]


def test_module_entry_point_exits_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port",
                             str(port), "--data-dir", str(tmp_path), "--server-id", "0" * 64], env=env)
    try:
        deadline = time.time() + 15
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "colonies.sqlite3").exists()
