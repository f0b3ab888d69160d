"""The run pipeline through the local colony onto a real Slurm cluster (dev-hpc, --backend slurm).

Skipped (with the reason) where slurmctld is not installed. The walltime test
waits for Slurm itself to time the job out: ``--time`` counts whole minutes
and the controller checks limits every 30 s, so it takes 60-95 s.
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


def test_walltime_exceeded_is_slurm_timeout(slurm_settings, cluster, tmp_path, monkeypatch):
    lines: list[str] = []
    # With a staging allowance the server's deadline (maxexectime) is walltime + allowance, so it is the
    # executor that enforces the 60 s of run time (docs/hpc.md, the deadline rule), as in production.
    monkeypatch.setenv("POLLINATOR_STAGING_ALLOWANCE", "240")
    with _job(slurm_settings, tmp_path, cmd="sh -c 'echo started; sleep 600'", walltime=60, max_retries=1) as job:
        with pytest.raises(JobFailed) as info:
            job.run(on_log=lines.append, timeout=300)
    assert info.value.state == "FAILED"
    (slurm_id,) = _slurm_ids(lines)
    # Walltime is run time: the executor scancels the job after 60 s RUNNING (Slurm's own --time, whole
    # minutes checked every ~30 s, would be later); Slurm may still win the race with its TIMEOUT.
    ours = f"Slurm job {slurm_id} ran for its walltime of 60 s; the executor cancelled it"
    slurms = f"Slurm job {slurm_id} TIMEOUT after walltime 00:01:00"
    assert ours in info.value.errors or slurms in info.value.errors, info.value.errors
    assert info.value.errors[0].startswith("walltime exceeded")
    assert "started" in "".join(lines)
    assert _record(cluster, slurm_id)["JobState"] in ("CANCELLED", "TIMEOUT")


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
