"""The run pipeline through the local colony onto a real Slurm cluster (dev-hpc, --backend slurm).

Skipped (with the reason) where slurmctld is not installed. Walltime is run
time (docs/hpc.md, the deadline rule): the job's launcher keeps it to the
second, Slurm's ``--time`` (walltime + staging allowance) is only a backstop.
"""

from __future__ import annotations

import os
import re
import time
from typing import Optional

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed
from pollinator.executor.slurm_cli import SlurmCli
from pollinator.run import Job

SUBMITTED = re.compile(r"\[executor\] Slurm job (\d+) submitted")


def _job(settings, tmp_path, **kw) -> Job:
    fields = dict(name="slurm-" + os.urandom(4).hex(), executor_names=["dev-hpc"], result_dir=tmp_path / "result",
                  walltime=300)
    fields.update(kw)
    return Job.inline(settings, **fields)


def _slurm_ids(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines for m in [SUBMITTED.search(line)] if m]


def _final_state(cluster, job_id: str, timeout: float = 30.0) -> Optional[str]:
    """The job's final state as the controller reports it (scontrol/sacct through the backend's CLI)."""
    cli = SlurmCli(env={**os.environ, **cluster.env()})
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = cli.job_info(job_id)
        if info is not None and info.final:
            return info.state
        time.sleep(0.5)
    return info.state if info else None


def _record(cluster, job_id: str, timeout: float = 15.0) -> dict[str, str]:
    """The job's line in the cluster's completion record (jobcomp/filetxt: this cluster's sacct)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in cluster.job_records():
            if rec.get("JobId") == job_id:
                return rec
        time.sleep(0.3)
    raise AssertionError(f"Slurm job {job_id} is not in {cluster.jobcomp_path}")


def test_two_ranks_both_log_without_secrets(slurm_settings, cluster, tmp_path):
    lines: list[str] = []
    cmd = ("sh -c 'echo hello from rank $POLLINATOR_RANK of $POLLINATOR_WORLD_SIZE, Slurm task $SLURM_PROCID; "
           "test -z \"$COLONIES_PRVKEY$COLONIES_COLONY_PRVKEY$COLONIES_EXECUTOR_PRVKEY$AWS_S3_SECRETKEY\" "
           "&& echo no secrets here'")
    with _job(slurm_settings, tmp_path, cmd=cmd, nodes=1, processes_per_node=2, cpu="500m", mem="64Mi") as job:
        result = job.run(on_log=lines.append, timeout=120)
    assert result.state == "SUCCESS", lines
    text = "".join(lines)
    assert "[rank 0] hello from rank 0 of 2, Slurm task 0" in text
    assert "[rank 1] hello from rank 1 of 2, Slurm task 1" in text
    assert "[rank 0] no secrets here" in text and "[rank 1] no secrets here" in text
    assert "ntasks-per-node=2" in text and "cpus-per-task=1" in text and "mem=64M" in text
    (slurm_id,) = _slurm_ids(lines)
    # the job is in the state source, and in the completion record with both tasks
    assert _final_state(cluster, slurm_id) == "COMPLETED"
    record = _record(cluster, slurm_id)
    assert record["JobState"] == "COMPLETED" and record["ProcCnt"] == "2"
    assert record["Name"] == result.process_id


def test_output_file_and_failing_rank(slurm_settings, tmp_path):
    with _job(slurm_settings, tmp_path, cmd="sh -c 'echo [1, 2] > $POLLINATOR_OUTPUT_FILE'") as job:
        result = job.run(timeout=120)
    assert result.output == [1, 2]

    lines: list[str] = []
    cmd = "sh -c 'if [ $POLLINATOR_RANK = 1 ]; then echo rank one gives up >&2; exit 7; fi; sleep 120'"
    with _job(slurm_settings, tmp_path, cmd=cmd, processes_per_node=2) as job:
        t0 = time.monotonic()
        with pytest.raises(JobFailed) as info:
            job.run(on_log=lines.append, timeout=120)
    assert time.monotonic() - t0 < 60  # --kill-on-bad-exit stops rank 0 at once
    errors = info.value.errors
    assert errors[0].startswith("2 of 2 ranks failed"), errors
    assert any(re.match(r"Slurm job \d+ FAILED: rank 1 exited with code 7", e) for e in errors), errors
    assert "[rank 1] rank one gives up" in errors


def _stamped(tmp_path) -> str:
    """A command that counts its runs in a file (the node is this host) and then outlives any walltime."""
    return f"echo run >> {tmp_path}/runs; echo started; sleep 600"


def test_past_its_walltime_a_slurm_job_ends_failed_once(slurm_settings, slurm_colony, cluster, tmp_path):
    """Walltime 5 s with the default staging allowance: the launcher stops the job after 5 s of run time; one
    Slurm job, FAILED "walltime exceeded (5 s)", never re-run though retries are left (docs/hpc.md, the
    deadline rule). ``--time`` is walltime + allowance, 605 s, rounded up to minutes: a backstop."""
    lines: list[str] = []
    with _job(slurm_settings, tmp_path, cmd=_stamped(tmp_path), walltime=5, max_retries=3) as job:
        with pytest.raises(JobFailed) as info:
            job.run(on_log=lines.append, timeout=300)
        pid = job.handle.process_id
    assert info.value.state == "FAILED"
    assert info.value.errors[0].startswith("walltime exceeded (5 s): the job's launcher stopped it"), \
        info.value.errors
    (slurm_id,) = _slurm_ids(lines)
    text = "".join(lines)
    assert "started" in text and "time=00:11:00" in text
    assert _record(cluster, slurm_id)["JobState"] == "FAILED"
    assert (tmp_path / "runs").read_text() == "run\n"
    with slurm_colony.settings().client() as client:
        assert client.get_process(pid).retries == 0


def test_a_full_queue_does_not_use_up_the_walltime(slurm_settings, cluster, tmp_path):
    """The node is full: the job waits PENDING behind other jobs for longer than its walltime (5 s), then
    runs its 3 s and succeeds, in one Slurm job (with the Go tool's rule it was cancelled while pending)."""
    import threading

    cpus = str(cluster.cpus)
    # OverSubscribe=FORCE:4 lets four jobs share each CPU: four jobs asking for every CPU fill the node
    blockers = [cluster.run("sbatch", "--parsable", "-c", cpus, "-o", "/dev/null", f"--chdir={tmp_path}",
                            "-J", "blocker", "--wrap", "sleep 600").stdout.strip().split(";")[0] for _ in range(4)]
    stamps: dict[str, float] = {}
    released = threading.Event()

    def release() -> None:
        cluster.run("scancel", *blockers)
        released.set()

    def on_log(line: str) -> None:
        lines.append(line)
        for state in ("PENDING", "RUNNING"):
            if f"] Slurm job " in line and f" {state}" in line and state not in stamps:
                stamps[state] = time.monotonic()
                if state == "PENDING":
                    threading.Timer(15, release).start()

    lines: list[str] = []
    cmd = f"echo run >> {tmp_path}/runs; sleep 3; echo done"
    try:
        with _job(slurm_settings, tmp_path, cmd=cmd, walltime=5, cpu="1", max_retries=3) as job:
            result = job.run(on_log=on_log, timeout=300)
    finally:
        if not released.is_set():
            release()
    assert result.ok, lines
    assert "PENDING" in stamps and "RUNNING" in stamps, lines
    assert stamps["RUNNING"] - stamps["PENDING"] > 5, "the job did not wait in the queue longer than its walltime"
    assert len(_slurm_ids(lines)) == 1 and (tmp_path / "runs").read_text() == "run\n"
    assert "done" in "".join(lines)


def test_cancel_scancels_the_slurm_job(slurm_settings, cluster, tmp_path):
    lines: list[str] = []
    with _job(slurm_settings, tmp_path, cmd="sh -c 'echo started; sleep 300'") as job:
        job.submit()
        for line in job.follow(deadline=time.monotonic() + 60):
            lines.append(line.message)
            if "started" in line.message:
                break
        job.cancel()
        assert job.wait(timeout=30).state == ProcessState.CANCELLED
    (slurm_id,) = _slurm_ids(lines)
    assert _final_state(cluster, slurm_id) == "CANCELLED"
    assert _record(cluster, slurm_id)["JobState"] == "CANCELLED"
    # nothing of the job is left running on the node
    done = cluster.run("squeue", "-h", "-j", slurm_id)
    assert done.stdout.strip() == ""
