"""Exactly once on a real one-node Slurm under executor faults (issue 16 items 1-3 and 9).

Real parts only: the session's local colony (Colonies-protocol server that counts maxexectime from
assignment and re-queues, moto S3 server), the one-node Slurm cluster (slurmctld + slurmd + munge),
and executors started here as ``pollinator executor start --backend slurm`` subprocesses, so they can
be killed (SIGKILL), stalled (SIGSTOP) and started again. S3 outages go through tests/fault_proxy.py
in front of moto for one executor only. The compute node is this host, so jobs count their runs in
files under the test's tmp dir.

What is checked with the cluster's own tools: ``squeue`` is sampled through each test (never two jobs
of one process in the queue at once) and the completion record (``jobcomp.txt``, this cluster's
``sacct``) says how every job ended and when.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

import pytest

from fault_proxy import FaultProxy
from pollinator.colonies.models import ProcessState
from pollinator.run import Job

SUBMITTED = re.compile(r"\[executor\] Slurm job (\d+) submitted")
pytestmark = pytest.mark.timeout(600)


def tally(key: str, n: int = 1) -> None:
    """Count for benchmarks/reliability_summary.py; else nothing."""
    try:
        import rel_tally
    except ImportError:
        return
    rel_tally.add(key, n)


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.3) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class SlurmExecutor:
    """``pollinator executor start --backend slurm`` in its own session, registered with the colony key."""

    def __init__(self, colony, cluster, tmp_path: Path, name: str, **env: str):
        self.name, self.colony, self.cluster = name, colony, cluster
        self.fs_dir = tmp_path / f"fs-{name}"
        self.log_dir = tmp_path / "executor-logs"
        self.env = {**os.environ, **colony.env(), **cluster.env(), **env}
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))

    def start(self) -> "SlurmExecutor":
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pollinator.cli.main", "executor", "start", "--name", self.name,
                "--type", "container-executor", "--fs-dir", str(self.fs_dir), "--max-jobs", "2", "--lenient",
                "--backend", "slurm"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        path = self.log_path
        wait_for(lambda: "serving colony" in path.read_text(errors="replace") or self.proc.poll() is not None,
                 90, f"executor {self.name} to start")
        assert self.proc.poll() is None, path.read_text()
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(90)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class QueueWatch:
    """Samples ``squeue`` for one process's jobs (job name = process id) until stopped."""

    def __init__(self, cluster, process_id: str):
        self.cluster, self.pid = cluster, process_id
        self.most_at_once = 0
        self.seen: list[set[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.cluster.run("squeue", "-h", "-n", self.pid, "-o", "%i|%T")
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0:
                jobs = {line.split("|")[0] for line in done.stdout.split() if line.strip()}
                self.seen.append(jobs)
                self.most_at_once = max(self.most_at_once, len(jobs))
            self._stop.wait(0.3)

    def stop(self) -> "QueueWatch":
        self._stop.set()
        self._thread.join(15)
        return self


def record(cluster, job_id: str, timeout: float = 60.0) -> dict[str, str]:
    """The job's line in the completion record, once it has one."""
    found: dict[str, dict[str, str]] = {}

    def look() -> bool:
        for rec in cluster.job_records():
            if rec.get("JobId") == job_id:
                found["rec"] = rec
                return True
        return False

    wait_for(look, timeout, f"Slurm job {job_id} in {cluster.jobcomp_path}")
    return found["rec"]


def in_queue(cluster, job_id: str) -> bool:
    done = cluster.run("squeue", "-h", "-j", job_id, "-o", "%T")
    return done.returncode == 0 and bool(done.stdout.strip())


class Run:
    """``Job.run`` in a thread (it follows, waits and downloads, as a user's DAG step does)."""

    def __init__(self, job: Job):
        self.job = job
        self.lines: list[str] = []
        self.result = None
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.result = self.job.run(on_log=lambda line: self.lines.append(str(getattr(line, "message", line))),
                                       timeout=480)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def text(self) -> str:
        return "\n".join(self.lines)

    def slurm_ids(self) -> list[str]:
        return [m.group(1) for line in list(self.lines) for m in [SUBMITTED.search(line)] if m]

    def join(self, timeout: float = 540.0):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        return self.result


def _job(settings, tmp_path: Path, executors: list[str], cmd: str, **kw) -> Job:
    fields = dict(name="slurmfault-" + os.urandom(4).hex(), executor_names=executors, cmd=cmd,
                  result_dir=tmp_path / "result", max_retries=3)
    fields.update(kw)
    return Job.inline(settings, **fields)


def _counted_lines(tmp_path: Path, lines: int) -> str:
    """Count the run, write which run it was into the results, print numbered lines a second apart: ``lines``
    of them once the test has made the file ``short``, 300 before (a run that is still going when the
    executor following it dies or stalls)."""
    return (f"echo run >> {tmp_path}/runs; n=$(wc -l < {tmp_path}/runs); "
            f"echo run $n > $POLLINATOR_RESULT_DIR/which-run.txt; "
            f"k=300; test -e {tmp_path}/short && k={lines}; "
            f"for i in $(seq 1 $k); do echo line $i of run $n; sleep 1; done")


def _succeeded(settings, pid: str, retries: int = 1):
    with settings.client() as client:
        process = client.get_process(pid)
    assert ProcessState(process.state) == ProcessState.SUCCESS
    assert process.retries == retries, "the server re-queued the process once (the lost attempt)"
    return process


@pytest.mark.parametrize("key", ["registers-itself", "fixed-key"])
def test_a_killed_executors_slurm_job_is_cancelled_when_it_starts_again(slurm_settings, slurm_colony, cluster,
                                                                         tmp_path, key):
    """SIGKILL the executor while its Slurm job runs: the job runs on, unfollowed. Started again under the
    same name, the executor scancels it at once; the process's next attempt runs alone, and the process
    ends SUCCESS once with every line of that run once.

    An executor that registers itself (colony key) replaces its dead registration, which puts the
    process back in the queue at once, with the same attempt number (as the Go server does); one with a
    fixed key (COLONIES_EXECUTOR_PRVKEY) gets it back when the server re-queues it at W + A."""
    name = f"pytest-kill-{uuid.uuid4().hex[:6]}"
    env = {}
    if key == "fixed-key":
        from pollinator.executor.registration import register_executor

        with slurm_settings.client() as c:
            env["COLONIES_EXECUTOR_PRVKEY"] = register_executor(
                c.with_key(slurm_colony.env()["COLONIES_COLONY_PRVKEY"]), name=name,
                executor_type="container-executor")
    retries = 1 if key == "fixed-key" else 0
    ex = SlurmExecutor(slurm_colony, cluster, tmp_path, name, **env).start()
    watch = None
    try:
        # the launcher keeps W = 30 s of run time; the server re-queues W + A = 35 s after assignment
        run = Run(_job(slurm_settings, tmp_path, [ex.name], _counted_lines(tmp_path, 8), walltime=30,
                       staging_allowance=5))
        wait_for(lambda: "line 2 of run 1" in run.text(), 120, "the first Slurm job to run")
        (tmp_path / "short").touch()
        (first,) = run.slurm_ids()
        pid = run.job.process_id
        watch = QueueWatch(cluster, pid)
        ex.kill()
        time.sleep(2)
        assert in_queue(cluster, first), "a killed executor's Slurm job runs on (the orphan this is about)"
        ex.start()
        wait_for(lambda: not in_queue(cluster, first), 60, f"the restarted executor to scancel job {first}")
        assert f"scancel Slurm job {first} (RUNNING): process {pid} attempt 1 was left by an earlier run" \
            in ex.log_text()
        result = run.join()
        watch.stop()
    finally:
        if watch is not None:
            watch.stop()
        ex.stop()
    assert result.ok
    _succeeded(slurm_settings, pid, retries)
    first_rec = record(cluster, first)
    assert first_rec["JobState"] == "CANCELLED"
    ids = run.slurm_ids()
    assert len(ids) == 2 and ids[0] == first, ids
    second_rec = record(cluster, ids[1])
    assert second_rec["JobState"] == "COMPLETED"
    assert first_rec["EndTime"] <= second_rec["StartTime"], (first_rec, second_rec)
    assert watch.most_at_once == 1, watch.seen
    # two runs: the one the dead executor started, the one of the re-queued attempt; the second whole
    assert (tmp_path / "runs").read_text() == "run\nrun\n"
    text = run.text()
    for i in range(1, 9):
        assert text.count(f"line {i} of run 2") == 1, text
    assert "line 9 of run 2" not in text
    assert (tmp_path / "result" / "which-run.txt").read_text().strip() == "run 2"
    tally("slurm_fault_scenarios")
    tally("faults_injected")
    tally("faults_survived")
    tally("processes_checked")
    tally("results_checked")
    tally("log_lines_checked", 8)


@pytest.mark.parametrize("phase", ["RUNNING", "PENDING"])
def test_an_attempt_that_lost_its_assignment_is_scancelled_and_uploads_and_closes_nothing(
        slurm_settings, slurm_colony, cluster, tmp_path, phase):
    """Executor A stalls (SIGSTOP) with its Slurm job RUNNING or PENDING; the server re-queues the process
    at its maxexectime and executor B takes attempt 2: B scancels A's job and waits for it to leave the
    queue before its own is submitted. A, resumed afterwards, finds its attempt lost: no close, no upload,
    no more log lines; the results are attempt 2's."""
    a = SlurmExecutor(slurm_colony, cluster, tmp_path, f"pytest-stall-{uuid.uuid4().hex[:6]}").start()
    from pollinator.executor.registration import register_executor

    b_name = f"pytest-take-{uuid.uuid4().hex[:6]}"
    with slurm_settings.client() as c:  # registered now (the client checks the names), started later
        b_key = register_executor(c.with_key(slurm_colony.env()["COLONIES_COLONY_PRVKEY"]), name=b_name,
                                  executor_type="container-executor")
    b = SlurmExecutor(slurm_colony, cluster, tmp_path, b_name, COLONIES_EXECUTOR_PRVKEY=b_key)
    blockers: list[str] = []
    watch = None
    try:
        if phase == "PENDING":  # OverSubscribe=FORCE:4: four jobs asking for every CPU fill the node
            cpus = str(cluster.cpus)
            blockers = [cluster.run("sbatch", "--parsable", "-c", cpus, "-o", "/dev/null", f"--chdir={tmp_path}",
                                    "-J", "blocker", "--wrap", "sleep 600").stdout.strip().split(";")[0]
                        for _ in range(4)]
        if phase == "RUNNING":
            # no launcher (the Go tool's rule): nothing ends the run before the server's re-queue at
            # maxexectime = W - 1 = 29 s from assignment; Slurm's --time is a minute
            job = _job(slurm_settings, tmp_path, [a.name, b.name], _counted_lines(tmp_path, 6), walltime=30,
                       launcher=False)
        else:  # pending behind the blockers past W + A = 30 s from assignment
            (tmp_path / "short").touch()
            job = _job(slurm_settings, tmp_path, [a.name, b.name], _counted_lines(tmp_path, 6), walltime=20,
                       staging_allowance=10)
        run = Run(job)
        if phase == "RUNNING":
            try:
                wait_for(lambda: "line 2 of run 1" in run.text() or run.error, 120, "A's Slurm job to run")
            except AssertionError:
                raise AssertionError(run.text()[-3000:] + repr(run.error)) from None
            (tmp_path / "short").touch()
        else:
            wait_for(lambda: re.search(r"Slurm job \d+ PENDING", run.text()) or run.error, 120,
                     "A's Slurm job to wait")
        (first,) = run.slurm_ids()
        pid = run.job.process_id
        watch = QueueWatch(cluster, pid)
        a.signal(signal.SIGSTOP)
        b.start()
        wait_for(lambda: f"Slurm job {first} of attempt 1 of this process (executor {a.name}) is still {phase}"
                 in run.text(), 120, "B to find A's job when it takes attempt 2")
        if blockers:
            cluster.run("scancel", *blockers)
            blockers = []
        result = run.join()
        with slurm_settings.client() as client:
            lines_before_resume = len(client.get_logs(pid, count=10000))
        a.signal(signal.SIGCONT)
        wait_for(lambda: re.search(rf"process {pid} attempt 1 done: process no longer assigned", a.log_text()),
                 90, "A to let its lost attempt go")
        watch.stop()
    finally:
        if blockers:
            cluster.run("scancel", *blockers)
        if watch is not None:
            watch.stop()
        a.stop()
        b.stop()
    assert result.ok
    process = _succeeded(slurm_settings, pid)
    with slurm_settings.client() as client:
        executors = {e.executorid: e.executorname for e in client.get_executors()}
        logs = "\n".join(str(getattr(line, "message", line)) for line in client.get_logs(pid, count=10000))
    assert executors.get(process.assignedexecutorid) == b.name  # closed by B, the attempt's owner
    first_rec = record(cluster, first)
    assert first_rec["JobState"] == "CANCELLED"
    ids = run.slurm_ids()
    assert len(ids) == 2 and ids[0] == first, ids
    second_rec = record(cluster, ids[1])
    assert second_rec["JobState"] == "COMPLETED" and first_rec["EndTime"] <= second_rec["StartTime"]
    assert watch.most_at_once == 1, watch.seen
    with slurm_settings.client() as client:
        assert len(client.get_logs(pid, count=10000)) == lines_before_resume  # A said nothing once resumed
    assert "executor stopped" not in logs and "walltime exceeded" not in logs
    # the results are attempt 2's: A uploaded nothing (its run was 1)
    runs = (tmp_path / "runs").read_text().count("run")
    assert runs == (2 if phase == "RUNNING" else 1)
    assert (tmp_path / "result" / "which-run.txt").read_text().strip() == f"run {runs}"
    for i in range(1, 7):
        assert logs.count(f"line {i} of run {runs}") == 1, logs
    tally("slurm_fault_scenarios")
    tally("faults_injected")
    tally("faults_survived")
    tally("processes_checked")
    tally("results_checked")
    tally("log_lines_checked", 6)


def test_s3_down_when_a_slurm_job_ends_delays_the_upload_and_loses_nothing(slurm_settings, slurm_colony, cluster,
                                                                             tmp_path):
    """S3 refuses every upload of the executor when its Slurm job ends: the results are kept and uploaded
    once S3 is back; the process ends SUCCESS once (one Slurm job) and its results download."""
    s3 = slurm_colony.settings().s3
    proxy = FaultProxy(s3.endpoint, flavor="s3")
    proxy._thread.start()
    ex = SlurmExecutor(slurm_colony, cluster, tmp_path, f"pytest-s3down-{uuid.uuid4().hex[:6]}",
                       AWS_S3_ENDPOINT=proxy.endpoint, POLLINATOR_EXECUTOR_UPLOAD_WINDOW="300")
    try:
        ex.start()
        write = (f"echo run >> {tmp_path}/runs; head -c 3145728 /dev/urandom > $POLLINATOR_RESULT_DIR/big.bin; "
                 f"sha256sum < $POLLINATOR_RESULT_DIR/big.bin > {tmp_path}/big.sha; echo written")
        run = Run(_job(slurm_settings, tmp_path, [ex.name], write, walltime=120))
        wait_for(lambda: run.job.process_id, 60, "the submission")
        proxy.fail(lambda method, path, body: method == "PUT", "5xx", times=None)  # every upload
        wait_for(lambda: "uploading results failed (try 2" in run.text() or run.error, 180,
                 "the upload to fail twice (botocore's own retries spent)")
        proxy.clear()
        result = run.join()
    finally:
        ex.stop()
        proxy.server.shutdown()
        proxy.server.server_close()
    assert result.ok, run.text()
    pid = run.job.process_id
    with slurm_settings.client() as client:
        process = client.get_process(pid)
    assert ProcessState(process.state) == ProcessState.SUCCESS and process.retries == 0
    assert len(run.slurm_ids()) == 1 and (tmp_path / "runs").read_text() == "run\n"
    assert record(cluster, run.slurm_ids()[0])["JobState"] == "COMPLETED"
    import hashlib

    got = (tmp_path / "result" / "big.bin").read_bytes()
    assert len(got) == 3 * 1024 * 1024
    assert hashlib.sha256(got).hexdigest() == (tmp_path / "big.sha").read_text().split()[0]
    assert proxy.total_injected >= 2
    assert not list((ex.fs_dir / "journal").glob("*.json"))  # nothing left owed
    tally("slurm_fault_scenarios")
    tally("faults_injected", proxy.total_injected)
    tally("faults_survived", proxy.total_injected)
    tally("processes_checked")
    tally("results_checked")
