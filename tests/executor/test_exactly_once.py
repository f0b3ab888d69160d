"""Exactly once, nothing lost: the executor's ending under S3 and Colonies outages (issue 16).

Real parts only: the local Colonies-protocol server and moto's S3 server over loopback HTTP, with
tests/fault_proxy.py in front of them for the executor (S3 PUTs failing, closes refused, replies
lost). The executor under test runs in-process with short retry windows.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from fault_proxy import FaultProxy, rpc_is
from pollinator.colonies import crypto
from pollinator.colonies.models import Conditions, Filesystem, ProcessState, SyncDirMount
from pollinator.config import Settings
from pollinator.executor import LocalExecutor
from pollinator.executor.registration import register_executor
from test_executor_integration import COLONY, EXEC_TYPE, LocalTestColony, log_text, spec, wait_final, wait_for

TYPE = "pytest-exactly-once"


def tally(key: str, n: int = 1) -> None:
    """Count for benchmarks/reliability_summary.py (which collects tests/reliability too); else nothing."""
    try:
        import rel_tally
    except ImportError:
        return
    rel_tally.add(key, n)


def tally_run(results_expected: int, results_found: int, runs: int, runs_asked: int, faults: int,
              lines_expected: int = 0, lines_found: int = 0) -> None:
    tally("faults_injected", faults)
    tally("faults_survived", faults if results_found == results_expected and runs == runs_asked else 0)
    tally("results_checked", results_expected)
    tally("results_lost", max(0, results_expected - results_found))
    tally("processes_checked")
    tally("extra_runs", max(0, runs - runs_asked))
    tally("log_lines_checked", lines_expected)
    tally("log_lines_lost", max(0, lines_expected - lines_found))


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    c = LocalTestColony(tmp_path_factory.mktemp("once-colony"))
    yield c
    c.close()


@pytest.fixture
def client(colony):
    with colony.settings.client() as c:
        yield c


@pytest.fixture
def proxies(colony):
    """(colonies proxy, s3 proxy) in front of the colony, for the executor only."""
    cp = FaultProxy(f"127.0.0.1:{colony.port}", flavor="colonies")
    sp = FaultProxy(colony.s3.endpoint, flavor="s3")
    cp._thread.start()
    sp._thread.start()
    yield cp, sp
    for p in (cp, sp):
        p.server.shutdown()
        p.server.server_close()


class Running:
    """An in-process executor behind the proxies; ``stop()`` waits for it."""

    def __init__(self, colony, proxies, fs_dir: Path, key: str, **kw):
        cp, sp = proxies
        settings = Settings(host="127.0.0.1", port=cp.port, colony_name=COLONY, prvkey=colony.settings.prvkey,
                            s3=colony.s3.model_copy(update={"endpoint": sp.endpoint}))
        self.ex = LocalExecutor(settings, name=kw.pop("name", "pytest-once"), executor_type=TYPE, fs_dir=fs_dir,
                                max_jobs=kw.pop("max_jobs", 2), executor_prvkey=key, poll_timeout=1,
                                cancel_poll=0.2, **kw)
        self.ex.policy.max_delay = 0.5
        self.thread = threading.Thread(target=self.ex.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.ex.stop()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def executor_key(colony):
    """A registered, approved executor key, kept across executor restarts (as COLONIES_EXECUTOR_PRVKEY)."""
    with colony.settings.client() as c:
        return register_executor(c.with_key(colony.colony_key), name=f"pytest-once-{uuid.uuid4().hex[:6]}",
                                 executor_type=TYPE)


def result_spec(label: str, cmd: str, **fields):
    fs = Filesystem(mount="/cfs", dirs=[SyncDirMount.model_validate(
        {"label": label, "dir": "/result", "keepfiles": False,
         "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}}})])
    assert '"' not in cmd and "$" not in cmd  # the executors join cmd and args unquoted, for sh -c
    s = spec({"cmd": f'{sys.executable} -c "{cmd}"'}, fs=fs, **fields)
    s.conditions.executortype = TYPE
    return s


WRITE_3MB = ("import os; print('ran once', flush=True); "
             "open('/cfs/result/big.bin','wb').write(bytes(range(256))*12288); print('written')")


def s3_put(method, path, body):
    return method == "PUT"


def pulled(colony, client, label, tmp_path) -> dict[str, int]:
    from pollinator.cfs import CFS

    out = tmp_path / f"pulled-{uuid.uuid4().hex[:6]}"
    CFS(client, colony.s3).pull(label, out)
    return {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_s3_down_at_job_end_delays_the_upload_and_loses_nothing(colony, client, proxies, executor_key, tmp_path):
    cp, sp = proxies
    sp.fail(s3_put, "5xx", times=None)  # S3 refuses every upload until cleared
    ex = Running(colony, proxies, tmp_path / "fs", executor_key, upload_window=120)
    try:
        label = f"/once/{uuid.uuid4().hex[:8]}/result"
        p = client.submit(result_spec(label, WRITE_3MB))
        wait_for(lambda: "uploading results failed (try 2" in log_text(client, p.processid), 60,
                 "the upload to fail twice (botocore's own retries spent)")
        sp.clear()
        done = wait_final(client, p.processid, 120)
        logs = log_text(client, p.processid)
        files = pulled(colony, client, label, tmp_path)
        tally_run(1, int(files == {"big.bin": 3 * 1024 * 1024}), logs.count("ran once"), 1, sp.total_injected)
        assert done.process_state == ProcessState.SUCCESS, (done.errors, logs)
        assert logs.count("ran once") == 1
        assert files == {"big.bin": 3 * 1024 * 1024}
        wait_for(lambda: not ex.ex.running_jobs(), 30, "the job to end")
        assert not ex.ex.journal.pending()
    finally:
        ex.stop()


def test_upload_failing_for_good_quarantines_and_a_restart_uploads(colony, client, proxies, executor_key, tmp_path):
    cp, sp = proxies
    sp.fail(s3_put, "5xx", times=None)
    fs_dir = tmp_path / "fs"
    ex = Running(colony, proxies, fs_dir, executor_key, upload_window=2)
    label = f"/once/{uuid.uuid4().hex[:8]}/result"
    try:
        p = client.submit(result_spec(label, WRITE_3MB))
        done = wait_final(client, p.processid, 60)
    finally:
        ex.stop()
    assert done.process_state == ProcessState.FAILED
    errors = " ".join(done.errors or [])
    where = fs_dir / "quarantine" / f"{p.processid}-0"
    assert "uploading results failed" in errors and str(where) in errors and "when it restarts" in errors
    assert (where / "result" / "big.bin").stat().st_size == 3 * 1024 * 1024  # kept, not deleted
    assert [e.process_id for e in ex.ex.journal.pending()] == [p.processid]

    sp.clear()  # S3 is back; a restarted executor (same key, same fs dir) finishes the upload
    again = Running(colony, proxies, fs_dir, executor_key, upload_window=60)
    try:
        wait_for(lambda: not again.ex.journal.pending(), 60, "the journal to be finished")
        files = pulled(colony, client, label, tmp_path)
        tally_run(1, int(files == {"big.bin": 3 * 1024 * 1024}), log_text(client, p.processid).count("ran once"),
                  1, sp.total_injected)
        assert files == {"big.bin": 3 * 1024 * 1024}
        assert not where.exists()
        assert client.get_process(p.processid).process_state == ProcessState.FAILED  # closed once, not again
    finally:
        again.stop()


def test_close_refused_for_a_while_is_retried_until_the_server_answers(colony, client, proxies, executor_key,
                                                                        tmp_path):
    cp, sp = proxies
    cp.fail(rpc_is("closesuccessfulmsg"), "5xx", times=4)
    cp.fail(rpc_is("closesuccessfulmsg"), "reset", times=1)  # maybe acted on, reply lost
    ex = Running(colony, proxies, tmp_path / "fs", executor_key)
    try:
        p = client.submit(result_spec(f"/once/{uuid.uuid4().hex[:8]}/result", "print('ran once')"))
        done = wait_final(client, p.processid, 60)
        runs = log_text(client, p.processid).count("ran once")
        tally_run(1, int(done.process_state == ProcessState.SUCCESS), runs, 1, cp.total_injected)
        assert done.process_state == ProcessState.SUCCESS
        assert cp.injected["5xx"] == 4 and runs == 1
        wait_for(lambda: not ex.ex.running_jobs(), 30, "the job to end")
        assert not ex.ex.journal.pending()
    finally:
        ex.stop()


def test_failed_close_whose_reply_was_lost_counts_as_delivered(colony, client, proxies, executor_key, tmp_path):
    cp, sp = proxies
    cp.fail(rpc_is("closefailedmsg"), "reset", times=3)
    ex = Running(colony, proxies, tmp_path / "fs", executor_key)
    try:
        s = spec({"cmd": "echo failing; exit 3"})
        s.conditions.executortype = TYPE
        p = client.submit(s)
        done = wait_final(client, p.processid, 60)
        assert done.process_state == ProcessState.FAILED and "exit code 3" in " ".join(done.errors or [])
        wait_for(lambda: ex.ex.finished, 30, "the job to end")
        assert ex.ex.finished[-1] == (p.processid, "failed")
    finally:
        ex.stop()


def test_close_pending_through_an_outage_is_journaled_and_a_restart_closes_it(colony, client, proxies, executor_key,
                                                                              tmp_path):
    cp, sp = proxies
    rule = cp.fail(rpc_is("closesuccessfulmsg"), "drop", times=None)  # the server is "down" for closes
    fs_dir = tmp_path / "fs"
    ex = Running(colony, proxies, fs_dir, executor_key, close_window=2)
    try:
        p = client.submit(result_spec(f"/once/{uuid.uuid4().hex[:8]}/result", "print('ran once')"))
        wait_for(lambda: ex.ex.finished, 60, "the job to give up closing")
        assert ex.ex.finished[-1] == (p.processid, "close pending (journaled)")
        assert client.get_process(p.processid).process_state == ProcessState.RUNNING
        assert [e.process_id for e in ex.ex.journal.pending()] == [p.processid]
    finally:
        ex.stop()
    assert rule.hits >= 2
    cp.clear()
    again = Running(colony, proxies, fs_dir, executor_key)
    try:
        done = wait_final(client, p.processid, 60)
        runs = log_text(client, p.processid).count("ran once")
        tally_run(1, int(done.process_state == ProcessState.SUCCESS), runs, 1, rule.hits)
        assert done.process_state == ProcessState.SUCCESS
        assert runs == 1  # closed, not run again
        wait_for(lambda: not again.ex.journal.pending(), 30, "the journal to be finished")
    finally:
        again.stop()


def test_requeued_during_upload_outage_is_not_closed_and_the_new_attempt_runs_alone(colony, client, proxies,
                                                                                   executor_key, tmp_path):
    """Attempt 1 ends during an S3 outage past maxexectime: the server re-queues, the same executor gets
    attempt 2; attempt 1 is stopped and never closes; attempt 2 runs in its own dir and succeeds."""
    cp, sp = proxies
    sp.fail(s3_put, "5xx", times=None)
    marker = tmp_path / "attempts.txt"
    cmd = (f"import os,sys; open({str(marker)!r},'a').write('x'); "
           "print('attempt dir', os.getcwd(), flush=True); open('/cfs/result/r.txt','w').write('ok')")
    ex = Running(colony, proxies, tmp_path / "fs", executor_key, upload_window=120)
    try:
        label = f"/once/{uuid.uuid4().hex[:8]}/result"
        p = client.submit(result_spec(label, cmd, maxexectime=4, maxretries=2))
        wait_for(lambda: client.get_process(p.processid).retries >= 1, 30, "the server to re-queue the process")
        wait_for(lambda: marker.exists() and marker.read_text() == "xx", 30, "attempt 2 to run")
        sp.clear()
        done = wait_final(client, p.processid, 60)
        files = pulled(colony, client, label, tmp_path)
        tally_run(1, int(files == {"r.txt": 2}), len(marker.read_text()), done.retries + 1, sp.total_injected)
        assert done.process_state == ProcessState.SUCCESS, done.errors
        assert done.retries == 1 and marker.read_text() == "xx"  # one run per attempt the server asked for
        assert files == {"r.txt": 2}
        wait_for(lambda: len(ex.ex.finished) == 2, 30, "both attempts to end")
        assert [o for _p, o in ex.ex.finished] == ["process no longer assigned to this executor", "success"]
        assert not ex.ex.journal.pending() and not list((tmp_path / "fs" / "jobs").iterdir())
    finally:
        ex.stop()


def test_nul_byte_in_output_loses_no_line(colony, client, proxies, executor_key, tmp_path):
    ex = Running(colony, proxies, tmp_path / "fs", executor_key)
    try:
        s = spec({"cmd": "printf 'line 1\\nline 2\\nnul \\000 here\\nline 4\\nline 5\\nline 6\\n'"})
        s.conditions.executortype = TYPE
        p = client.submit(s)
        done = wait_final(client, p.processid, 30)
        logs = log_text(client, p.processid)
        got = [l for l in logs.splitlines() if not l.startswith("[executor]")]
        want = ["line 1", "line 2", "nul \\x00 here", "line 4", "line 5", "line 6"]
        tally_run(0, 0, 1, 1, 1, len(want), sum(1 for w in want if w in got))
        assert done.process_state == ProcessState.SUCCESS
        assert got == want
    finally:
        ex.stop()


def test_logs_survive_a_server_outage_of_seconds(colony, client, proxies, executor_key, tmp_path):
    cp, sp = proxies
    ex = Running(colony, proxies, tmp_path / "fs", executor_key)
    try:
        s = spec({"cmd": "for i in $(seq 1 40); do echo line $i; sleep 0.05; done"})
        s.conditions.executortype = TYPE
        rule = cp.fail(rpc_is("addlogmsg"), "drop", times=None)
        p = client.submit(s)
        wait_for(lambda: rule.hits >= 8, 30, "several addlogs to fail")
        cp.clear()
        done = wait_final(client, p.processid, 60)
        lines = [l for l in log_text(client, p.processid).splitlines() if not l.startswith("[executor]")]
        tally_run(0, 0, 1, 1, rule.hits, 40, len(set(lines) & {f"line {i}" for i in range(1, 41)}))
        assert done.process_state == ProcessState.SUCCESS
        assert lines == [f"line {i}" for i in range(1, 41)]  # every line, once, in order
    finally:
        ex.stop()
