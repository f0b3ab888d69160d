"""Walltime means run time, through the whole pipeline and a local colony (issue 16 item 4).

Real parts: the local Colonies-protocol server (which counts maxexectime from assignment and
re-queues, as the Go server does) and moto's S3 server over loopback HTTP; the job goes through
``Job.run`` (launcher, run files, per-run labels) to an in-process local executor behind
tests/fault_proxy.py, which can make its S3 downloads (staging) slow. The executor runs on this
host, so the job counts its runs and stamps its start and stop in files under the test's tmp dir.

Deadline rule under test (docs/hpc.md): walltime W with staging allowance A sends
``env.POLLINATOR_WALLTIME`` = W and walltime = maxexectime = W + A; the launcher stops the job after
W seconds of its own run time and the attempt ends FAILED "walltime exceeded (W s)", once.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from fault_proxy import FaultProxy
from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed
from pollinator.executor.registration import register_executor
from pollinator.run import Job
from test_exactly_once import Running, tally
from test_executor_integration import LocalTestColony

TYPE = "pytest-walltime"


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    c = LocalTestColony(tmp_path_factory.mktemp("walltime-colony"))
    yield c
    c.close()


@pytest.fixture
def client(colony):
    with colony.settings.client() as c:
        yield c


@pytest.fixture
def proxies(colony):
    """(colonies proxy, s3 proxy) for the executor; S3 replies the rules mark "slow" take 5 s."""
    cp = FaultProxy(f"127.0.0.1:{colony.port}", flavor="colonies")
    sp = FaultProxy(colony.s3.endpoint, flavor="s3", slow_s=5.0)
    cp._thread.start()
    sp._thread.start()
    yield cp, sp
    for p in (cp, sp):
        p.server.shutdown()
        p.server.server_close()


@pytest.fixture
def executor(colony, proxies, tmp_path):
    with colony.settings.client() as c:
        key = register_executor(c.with_key(colony.colony_key), name=f"pytest-wall-{uuid.uuid4().hex[:6]}",
                                executor_type=TYPE)
    running = _Running(colony, proxies, tmp_path / "fs", key)
    yield running
    running.stop()


class _Running(Running):
    """tests/executor/test_exactly_once.py's in-process executor, of this module's type."""

    def __init__(self, colony, proxies, fs_dir: Path, key: str):
        import threading

        from pollinator.config import Settings
        from pollinator.executor import LocalExecutor
        from test_executor_integration import COLONY

        cp, sp = proxies
        settings = Settings(host="127.0.0.1", port=cp.port, colony_name=COLONY, prvkey=colony.settings.prvkey,
                            s3=colony.s3.model_copy(update={"endpoint": sp.endpoint}))
        self.ex = LocalExecutor(settings, name="pytest-wall", executor_type=TYPE, fs_dir=fs_dir, max_jobs=2,
                                executor_prvkey=key, poll_timeout=1, cancel_poll=0.2)
        self.thread = threading.Thread(target=self.ex.run_forever, daemon=True)
        self.thread.start()


def _job(colony, tmp_path: Path, cmd: str, **fields) -> Job:
    return Job.inline(colony.settings, name="wall-" + os.urandom(4).hex(), cmd=cmd, executor_type=TYPE,
                      result_dir=tmp_path / "result", **fields)


def _stamped(tmp_path: Path) -> str:
    """A command that counts its runs and stamps its start, and its stop when it is sent SIGTERM."""
    return (f"echo run >> {tmp_path}/runs; date +%s.%N > {tmp_path}/start; "
            f"trap 'date +%s.%N > {tmp_path}/stop; exit 143' TERM; echo started; sleep 120 & wait $!")


def _seconds(path: Path) -> float:
    return float(path.read_text().strip())


def test_past_its_walltime_a_job_ends_failed_once_and_walltime_3_gets_3_s(colony, client, executor, tmp_path):
    """W = 3, A = 6: stopped by its launcher after 3 s of run time (not 2), FAILED with the reason, one run;
    the server's deadline (9 s from assignment) passes without a re-queue."""
    lines: list[str] = []
    with _job(colony, tmp_path, _stamped(tmp_path), walltime=3, staging_allowance=6, max_retries=3) as job:
        submitted = time.monotonic()
        with pytest.raises(JobFailed) as info:
            job.run(on_log=lambda line: lines.append(str(getattr(line, "message", line))), timeout=120)
        pid = job.handle.process_id
    failed = info.value
    assert failed.state == "FAILED"
    assert failed.errors[0].startswith("walltime exceeded (3 s): the job's launcher stopped it (exit code 124)"), \
        failed.errors
    ran = _seconds(tmp_path / "stop") - _seconds(tmp_path / "start")
    assert ran >= 2.5, f"the job was stopped after {ran:.2f} s of its 3 s walltime"
    time.sleep(max(0.0, submitted + 9 + 3 - time.monotonic()))  # past maxexectime from assignment
    process = client.get_process(pid)
    assert process.process_state == ProcessState.FAILED and process.retries == 0
    assert (tmp_path / "runs").read_text() == "run\n"
    assert "".join(lines).count("started") == 1
    runs = (tmp_path / "runs").read_text().count("run")
    tally("walltime_scenarios")
    tally("walltime_ended_once", int(runs == 1 and process.retries == 0))
    tally("processes_checked")
    tally("extra_runs", max(0, runs - 1))


def test_staging_longer_than_the_walltime_does_not_use_it_up(colony, client, executor, proxies, tmp_path):
    """Every S3 download of the executor takes 5 s, longer than W = 3; within A the job still gets its
    3 s of run time: a 2 s job succeeds, once."""
    _cp, sp = proxies
    sp.fail(lambda method, path, body: method == "GET", "slow", times=None)
    cmd = f"echo run >> {tmp_path}/runs; date +%s.%N > {tmp_path}/start; sleep 2; echo done"
    with _job(colony, tmp_path, cmd, walltime=3, staging_allowance=60) as job:
        submitted = time.time()
        result = job.run(timeout=120)
    assert result.ok and (tmp_path / "runs").read_text() == "run\n"
    assert _seconds(tmp_path / "start") - submitted > 5, "the staging was not slow: nothing was shown"
    assert client.get_process(result.process_id).retries == 0
    assert sp.injected["slow"] >= 1
    tally("walltime_scenarios")
    tally("processes_checked")


def test_with_the_go_rule_the_same_staging_eats_the_walltime(colony, client, executor, proxies, tmp_path):
    """The contrast: staging allowance 0 is the Go tool's maxexectime = walltime - 1 from assignment, so the
    same slow staging leaves the job no time at all (what issue 16 saw on a full Slurm queue)."""
    _cp, sp = proxies
    sp.fail(lambda method, path, body: method == "GET", "slow", times=None)
    cmd = f"echo run >> {tmp_path}/runs; sleep 2; echo done"
    with _job(colony, tmp_path, cmd, walltime=3, staging_allowance=0, max_retries=1) as job:
        with pytest.raises(JobFailed) as info:
            job.run(timeout=120)
    # the server's deadline ends it (the executor's own close, or the server's re-queue and then its FAILED)
    assert any("server's deadline" in e or "Maximum execution time limit exceeded" in e
               for e in info.value.errors), info.value.errors


def test_a_dead_executor_is_still_caught_by_the_servers_requeue(colony, client, proxies, tmp_path):
    """The rule keeps what maxexectime is for: an executor takes the process and dies (no log, no close);
    W + A after the assignment the server re-queues it and a live executor runs it, once."""
    with colony.settings.client() as c:
        silent = c.with_key(register_executor(c.with_key(colony.colony_key), executor_type=TYPE,
                                              name=f"pytest-dead-{uuid.uuid4().hex[:6]}"))
        live_key = register_executor(c.with_key(colony.colony_key), executor_type=TYPE,
                                     name=f"pytest-live-{uuid.uuid4().hex[:6]}")
    lines: list[str] = []
    cmd = f"echo run >> {tmp_path}/runs; echo done"
    live = None
    try:
        with _job(colony, tmp_path, cmd, walltime=2, staging_allowance=4, max_retries=2) as job:
            pid = job.submit()
            assert silent.assign(timeout=10).processid == pid  # and then it is gone
            live = _Running(colony, proxies, tmp_path / "fs", live_key)
            result = job.run(on_log=lambda line: lines.append(str(getattr(line, "message", line))), timeout=120)
    finally:
        silent.close()
        if live is not None:
            live.stop()
    assert result.ok
    process = client.get_process(pid)
    assert process.retries == 1 and (tmp_path / "runs").read_text() == "run\n"
    assert any("did not end within maxexectime (6 s from assignment" in line for line in lines), lines
    tally("walltime_scenarios")
    tally("processes_checked")


def test_behind_a_kube_like_success_the_client_reports_walltime_exceeded(settings, kube_mimic, tmp_path):
    """On an executor that closes SUCCESS whatever the exit code and times nothing itself (the ColonyOS Kube
    executor, here the session colony's kube-mimic), the launcher still stops the job after its walltime and
    the client reports FAILED with the reason from the exit record."""
    cmd = f"echo run >> {tmp_path}/runs; echo started; sleep 120"
    with Job.inline(settings, name="wall-kube-" + os.urandom(4).hex(), cmd=cmd, executor_names=[kube_mimic],
                    walltime=3, result_dir=tmp_path / "result") as job:
        with pytest.raises(JobFailed) as info:
            job.run(timeout=120)
    assert info.value.state == "FAILED" and info.value.exit_code == 124
    assert info.value.errors[0].startswith("walltime exceeded (3 s): the launcher stopped the command (exit code "
                                           "124); the executor closed process"), info.value.errors
    with settings.client() as client:
        process = client.get_process(info.value.process_id)
    assert process.state == ProcessState.SUCCESS and process.retries == 0  # what the executor said, once
    assert (tmp_path / "runs").read_text() == "run\n"
    tally("walltime_scenarios")
    tally("walltime_ended_once")
    tally("processes_checked")
