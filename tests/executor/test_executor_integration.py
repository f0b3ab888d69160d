"""The executor against the real local Colonies-protocol server and moto's real S3 HTTP server.

Everything goes over loopback HTTP: the server runs as ``python -m
pollinator.dev.server``, S3 is ``moto.server.ThreadedMotoServer``, jobs are
submitted with our ColoniesClient as a colony user, and the executor under
test registers itself with the colony key and runs in a thread.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from pydantic import SecretStr

from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import (Colony, Conditions, Filesystem, FunctionSpec, Process, ProcessState,
                                        SnapshotMount, SyncDirMount, User)
from pollinator.config import S3Settings, Settings

COLONY = "dev"
EXEC_TYPE = "pytest-local-executor"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pollinator.dev.server") is None,
                                reason="the local Colonies server (pollinator.dev.server) is not written yet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LocalTestColony:
    """Server + moto + colony + user, as the tests need them."""

    def __init__(self, root: Path):
        from moto.server import ThreadedMotoServer

        self.root = root
        self.server_key, self.colony_key, self.user_key = (crypto.generate_private_key() for _ in range(3))
        s3_port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        self.moto.start()
        self.s3 = S3Settings(endpoint=f"127.0.0.1:{s3_port}", access_key=SecretStr("testing"),
                             secret_key=SecretStr("testing-secret"), bucket="pytest-executor")
        import boto3

        boto3.client("s3", endpoint_url=self.s3.url, aws_access_key_id="testing",
                     aws_secret_access_key="testing-secret", region_name="us-east-1").create_bucket(
            Bucket=self.s3.bucket)

        self.port = free_port()
        data = root / "server"
        data.mkdir()
        self.log = open(root / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pollinator.dev.server", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data), "--server-id", crypto.id_from_private_key(self.server_key)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "the server to listen", 0.1)
        server = ColoniesClient("127.0.0.1", self.port, self.server_key, COLONY)
        server.add_colony(Colony(colonyid=crypto.id_from_private_key(self.colony_key), name=COLONY))
        server.with_key(self.colony_key).add_user(
            User(colonyname=COLONY, userid=crypto.id_from_private_key(self.user_key), name="pytest-user"))
        server.close()
        self.settings = Settings(host="127.0.0.1", port=self.port, colony_name=COLONY,
                                 prvkey=SecretStr(self.user_key), s3=self.s3)

    def env(self) -> dict[str, str]:
        return {"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(self.port), "COLONIES_TLS": "false",
                "COLONIES_COLONY_NAME": COLONY, "COLONIES_PRVKEY": self.user_key,
                "COLONIES_COLONY_PRVKEY": self.colony_key, "AWS_S3_ENDPOINT": self.s3.endpoint,
                "AWS_S3_ACCESSKEY": "testing", "AWS_S3_SECRETKEY": "testing-secret",
                "AWS_S3_BUCKET": self.s3.bucket, "AWS_S3_TLS": "false"}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.moto.stop()


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    c = LocalTestColony(tmp_path_factory.mktemp("executor-colony"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def executor(colony, tmp_path_factory):
    from pollinator.executor import LocalExecutor

    ex = LocalExecutor(colony.settings, name="pytest-exec", executor_type=EXEC_TYPE,
                       fs_dir=tmp_path_factory.mktemp("executor-fs"), max_jobs=4,
                       register_with_colony_prvkey=colony.colony_key, poll_timeout=1, cancel_poll=0.3)
    thread = threading.Thread(target=ex.run_forever, daemon=True)
    thread.start()
    yield ex
    ex.stop()
    thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def client(colony):
    with colony.settings.client() as c:
        yield c


def spec(kwargs: dict, **fields: Any) -> FunctionSpec:
    conditions = fields.pop("conditions", Conditions())
    conditions = conditions.model_copy(update={"colonyname": COLONY, "executortype": EXEC_TYPE})
    fields.setdefault("maxwaittime", -1)
    fields.setdefault("maxexectime", 120)
    return FunctionSpec(funcname=fields.pop("funcname", "execute"), kwargs=kwargs, conditions=conditions, **fields)


def wait_final(client: ColoniesClient, process_id: str, timeout: float = 30) -> Process:
    return wait_for(lambda: (p := client.get_process(process_id)).is_final and p, timeout, "a final state")


def log_text(client: ColoniesClient, process_id: str) -> str:
    return "".join(entry.message for entry in client.get_logs(process_id))


def test_executor_registered_and_approved(executor, client):
    found = {e.executorname: e for e in client.get_executors()}
    assert found["pytest-exec"].state == 1 and found["pytest-exec"].executortype == EXEC_TYPE


def test_echo_job_succeeds_and_its_log_is_readable(executor, client):
    p = client.submit(spec({"cmd": "echo", "args": ["hello", "world"]}, env={"FOO": "bar"}))
    done = wait_final(client, p.processid)
    assert done.process_state == ProcessState.SUCCESS, done.errors
    assert done.out == []
    assert log_text(client, p.processid) == "hello world\n"


def test_failing_job_reports_exit_code_and_stderr(executor, client):
    p = client.submit(spec({"cmd": "echo some output; echo it broke >&2; exit 3"}))
    done = wait_final(client, p.processid)
    assert done.process_state == ProcessState.FAILED
    assert "exit code 3" in done.errors[0] and "it broke" in done.errors


def test_output_file_is_the_process_output(executor, client):
    p = client.submit(spec({"cmd": """echo '[1, "two", {"three": 3}]' > "$POLLINATOR_OUTPUT_FILE\""""}))
    done = wait_final(client, p.processid)
    assert done.process_state == ProcessState.SUCCESS and done.out == [1, "two", {"three": 3}]


def test_walltime_exceeded(executor, client):
    t0 = time.monotonic()
    p = client.submit(spec({"cmd": "echo started; sleep 60"}, conditions=Conditions(walltime=2), maxexectime=-1))
    done = wait_final(client, p.processid)
    assert time.monotonic() - t0 < 10
    assert done.process_state == ProcessState.FAILED
    assert done.errors[0].startswith("walltime exceeded"), done.errors
    assert "started" in log_text(client, p.processid)


def test_cancel_kills_the_job(executor, client, tmp_path):
    pidfile = tmp_path / "pid"
    marker = tmp_path / "finished"
    p = client.submit(spec({"cmd": f"echo $$ > {pidfile}; echo started; sleep 60; touch {marker}"}))
    wait_for(lambda: "started" in log_text(client, p.processid), 15, "the job to start")
    client.cancel_process(p.processid)
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True

    wait_for(gone, 6, "the cancelled job's shell to be killed")
    wait_for(lambda: (p.processid, "cancelled") in executor.finished, 10, "the executor to let go of the job")
    final = client.get_process(p.processid)
    assert final.process_state == ProcessState.CANCELLED and not marker.exists()


def test_unknown_funcname_fails_clearly(executor, client):
    p = client.submit(spec({"cmd": "echo"}, funcname="train_model"))
    done = wait_final(client, p.processid)
    assert done.process_state == ProcessState.FAILED and "unsupported funcname 'train_model'" in done.errors[0]


def test_ranks_run_locally(executor, client):
    p = client.submit(spec({"cmd": 'echo "rank $POLLINATOR_RANK of $POLLINATOR_WORLD_SIZE"'},
                           conditions=Conditions(nodes=2, processespernode=2)))
    done = wait_final(client, p.processid)
    assert done.process_state == ProcessState.SUCCESS, done.errors
    lines = sorted(log_text(client, p.processid).splitlines())
    assert lines == [f"[rank {r}] rank {r} of 4" for r in range(4)]


def test_jobs_run_concurrently(executor, client):
    t0 = time.monotonic()
    ids = [client.submit(spec({"cmd": "sleep 1.5"})).processid for _ in range(4)]
    for pid in ids:
        assert wait_final(client, pid).process_state == ProcessState.SUCCESS
    assert time.monotonic() - t0 < 5.5  # 4 x 1.5 s serially would be 6 s+


def test_snapshot_and_sync_dirs(executor, client, colony, tmp_path, monkeypatch):
    from pollinator.cfs import CFS

    project = "pytest-proj"
    root = f"/pollinator/{project}"
    src, data = tmp_path / "src", tmp_path / "data"
    src.mkdir()
    data.mkdir()
    (src / "main.py").write_text(
        "import os\n"
        "proj = os.environ['PROJECT_DIR']\n"
        "text = open(os.path.join(proj, 'data', 'hello.txt')).read()\n"
        "print('read:', text)\n"
        "os.makedirs(os.path.join(proj, 'result'), exist_ok=True)\n"
        "open(os.path.join(proj, 'result', 'result.txt'), 'w').write(text.upper())\n")
    (data / "hello.txt").write_text("Hello world!")
    cfs = CFS(client, colony.s3)
    cfs.sync(src, f"{root}/src", True)
    cfs.sync(data, f"{root}/data", True)
    snap = cfs.create_snapshot(f"{root}/src", f"pytest-{time.time_ns()}")

    fs = Filesystem(mount="/cfs", snapshots=[
        SnapshotMount(snapshotid=snap.snapshotid, label=f"{root}/src", dir=f"{root}/{snap.snapshotid}/src",
                      keepfiles=False, keepsnapshot=False)],
        dirs=[SyncDirMount.model_validate({"label": f"{root}/result", "dir": f"{root}/result", "keepfiles": False,
                                           "onconflicts": {"onstart": {"keeplocal": False},
                                                           "onclose": {"keeplocal": True}}}),
              SyncDirMount.model_validate({"label": f"{root}/data", "dir": f"{root}/data", "keepfiles": True,
                                           "onconflicts": {"onstart": {"keeplocal": False},
                                                           "onclose": {"keeplocal": False}}})])
    monkeypatch.setenv("POLLINATOR_KEEP_JOB_DIRS", "1")  # look at what keepfiles left behind in the job's /cfs
    p = client.submit(spec({"cmd": sys.executable, "args": [f"/cfs{root}/{snap.snapshotid}/src/main.py"],
                            "docker-image": "python:3.12-slim"},
                           env={"PROJECT_DIR": f"/cfs{root}"}, fs=fs))
    done = wait_final(client, p.processid, 60)
    logs = log_text(client, p.processid)
    assert done.process_state == ProcessState.SUCCESS, (done.errors, logs)
    assert "read: Hello world!" in logs and "not run in a container" in logs

    out = tmp_path / "pulled"
    cfs.pull(f"{root}/result", out)
    assert (out / "result.txt").read_text() == "HELLO WORLD!"
    local = executor.job_dir(p.processid) / root.lstrip("/")
    assert not (local / "result").exists() and not (local / snap.snapshotid / "src").exists()
    assert (local / "data" / "hello.txt").exists()  # keepfiles
    assert snap.snapshotid not in {s.snapshotid for s in client.get_snapshots()}  # keepsnapshot=False


def test_cli_start_and_sigterm_closes_running_job(colony, client, tmp_path):
    env = {**os.environ, **colony.env()}
    log = open(tmp_path / "executor.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pollinator.cli.main", "executor", "start", "--name", "pytest-cli",
                             "--type", "pytest-cli-type", "--fs-dir", str(tmp_path / "fs"), "--max-jobs", "2",
                             "--poll-timeout", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: any(e.executorname == "pytest-cli" and e.state == 1 for e in client.get_executors()),
                 20, "the CLI executor to register")
        s = spec({"cmd": "echo started; sleep 60"}).model_copy(deep=True)
        s.conditions.executortype = "pytest-cli-type"
        p = client.submit(s)
        wait_for(lambda: "started" in log_text(client, p.processid), 15, "the job to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        done = client.get_process(p.processid)
        assert done.process_state == ProcessState.FAILED and done.errors[0].startswith("executor stopped")
        left = {e.executorname: e.state for e in client.get_executors()}
        assert left.get("pytest-cli", -1) != 1  # deregistered (gone, or kept as UNREGISTERED)
        text = (tmp_path / "executor.log").read_text()
        assert colony.colony_key not in text and colony.user_key not in text and "testing-secret" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_log_lines_stream_while_the_job_runs(executor, client):
    p = client.submit(spec({"cmd": "echo first; sleep 2; echo second"}))
    t0 = time.monotonic()
    wait_for(lambda: "first" in log_text(client, p.processid), 10, "the first line")
    seen_after = time.monotonic() - t0
    assert "second" not in log_text(client, p.processid)
    assert client.get_process(p.processid).process_state == ProcessState.RUNNING
    assert seen_after < 1.5
    assert wait_final(client, p.processid).process_state == ProcessState.SUCCESS
    assert log_text(client, p.processid) == "first\nsecond\n"


def test_named_process_starts_promptly_with_several_waiters_of_its_type(colony, client, tmp_path):
    """Four executors of one type wait; the server (real-server mode) wakes ONE of them per submit, by type.
    Each process names one executor and must still start within a generous bound (the pacing keeps a poll
    start every ~0.5 s; a single 10 s long-poll took up to 10 s here). Not a timing benchmark: see
    benchmarks/pickup_latency.py for the figures."""
    from pollinator.colonies.models import parse_go_time
    from pollinator.executor import LocalExecutor

    kind = "pytest-pickup-type"
    executors = [LocalExecutor(colony.settings, name=f"pickup-{i}", executor_type=kind, fs_dir=tmp_path / f"e{i}",
                               max_jobs=2, register_with_colony_prvkey=colony.colony_key) for i in range(4)]
    threads = [threading.Thread(target=ex.run_forever, daemon=True) for ex in executors]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(ex.pacer.polls >= 2 for ex in executors), 20, "every executor to be polling")
        for ex in reversed(executors):
            s = spec({"cmd": "true"}).model_copy(deep=True)
            s.conditions.executortype = kind
            s.conditions.executornames = [ex.name]
            p = wait_final(client, client.submit(s).processid)
            assert p.process_state == ProcessState.SUCCESS and p.assignedexecutorid == ex.executor_id
            waited = (parse_go_time(p.starttime) - parse_go_time(p.submissiontime)).total_seconds()
            assert waited < 4.0, f"{ex.name} started its process {waited:.1f} s after the submit"
    finally:
        for ex in executors:
            ex.stop()
        for thread in threads:
            thread.join(30)
