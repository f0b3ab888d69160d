"""The Slurm commands the backend uses (sbatch, scontrol, sacct, scancel), each with a timeout.

A login node's Slurm commands can hang when the controller is busy or down;
every call here has a timeout and turns failures into :class:`SlurmError`
so the backend's loop can retry instead of blocking a job slot forever.

``squeue --me`` lists the jobs not yet over, with the comment the backend
tags each job with (process, attempt, executor): how a job of an attempt
that is no longer followed by anyone is found and cancelled.

Job state comes from ``scontrol show job -o`` (the controller's record: state,
reason, exit code, time limit, nodes; kept ``MinJobAge`` seconds after the
end, 300 by default, far longer than our one-second polling needs). When the
controller has already forgotten the job, ``sacct`` answers on sites with
accounting (slurmdbd).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from pollinator.errors import PollinatorError

FINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})
"""States a job does not leave (sbatch --no-requeue: NODE_FAIL and PREEMPTED are final too)."""

_JOB_ID = re.compile(r"^(\d+)")
_KV = re.compile(r"(\w[\w/:]*)=(\S*)")


class SlurmError(PollinatorError):
    """A Slurm command failed, timed out or could not be run."""


@dataclass(frozen=True)
class JobInfo:
    """What the backend needs to know about a job at one moment."""

    job_id: str
    state: str
    """Base state, e.g. ``RUNNING``, ``TIMEOUT``, ``CANCELLED`` (sacct's "CANCELLED by 0" is cut)."""
    reason: str = ""
    exit_code: str = ""
    """Slurm's ``code:signal``."""
    time_limit: str = ""
    nodes: str = ""
    source: str = "scontrol"

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def exit_status(self) -> Optional[int]:
        """The exit code in the subprocess convention (negative = killed by that signal); None if unknown."""
        code, _, sig = self.exit_code.partition(":")
        try:
            if sig and int(sig):
                return -int(sig)
            return int(code)
        except ValueError:
            return None


@dataclass(frozen=True)
class QueuedJob:
    """One line of ``squeue``: a job the controller still has pending, running or completing."""

    job_id: str
    state: str
    name: str
    comment: str


class SlurmCli:
    """Runs Slurm's client commands with a timeout and a controlled environment."""

    def __init__(self, *, timeout: float = 30.0, env: Optional[Mapping[str, str]] = None, bin_dir: str = ""):
        self.timeout = timeout
        self.env = dict(env) if env is not None else None
        self.bin_dir = bin_dir

    def _argv(self, name: str, args: Sequence[str]) -> list[str]:
        return [os.path.join(self.bin_dir, name) if self.bin_dir else name, *args]

    def run(self, name: str, args: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            timeout: Optional[float] = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self._argv(name, args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  env=dict(env) if env is not None else self.env,
                                  timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{name} did not answer within {timeout or self.timeout:g} s") from None
        except OSError as exc:
            raise SlurmError(f"could not run {name}: {exc}") from None
        if check and done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(f"{name} failed (exit {done.returncode}): {' '.join(detail[-3:]) or 'no output'}")
        return done

    # -- the calls ------------------------------------------------------------------------------
    def submit(self, script: Path, *, env: Mapping[str, str]) -> str:
        """``sbatch --parsable``; returns the job id. The job's environment is ``env`` (--export=ALL)."""
        done = self.run("sbatch", ["--parsable", "--export=ALL", str(script)], env=env)
        match = _JOB_ID.match(done.stdout.strip())
        if not match:
            raise SlurmError(f"sbatch printed no job id: {done.stdout.strip()!r}")
        return match.group(1)

    def cancel(self, job_id: str) -> None:
        self.run("scancel", [job_id])

    def queued(self, *, name: str = "") -> list[QueuedJob]:
        """This user's jobs that are not over (``squeue --me``), only those called ``name`` if given."""
        args = ["-h", "--me", "-o", "%i|%T|%j|%k"] + (["-n", name] if name else [])
        done = self.run("squeue", args)
        jobs = []
        for line in done.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4 and _JOB_ID.match(parts[0]):
                jobs.append(QueuedJob(job_id=parts[0], state=parts[1], name=parts[2], comment=parts[3]))
        return jobs

    def job_info(self, job_id: str) -> Optional[JobInfo]:
        """The job's current record (scontrol, else sacct); None when neither knows it."""
        done = self.run("scontrol", ["show", "job", "-o", job_id], check=False)
        if done.returncode == 0 and done.stdout.strip():
            fields = dict(_KV.findall(done.stdout))
            if fields.get("JobState"):
                return JobInfo(job_id=job_id, state=fields["JobState"], reason=fields.get("Reason", ""),
                               exit_code=fields.get("ExitCode", ""), time_limit=fields.get("TimeLimit", ""),
                               nodes=fields.get("NodeList", ""))
        elif "invalid job id" not in (done.stderr or "").lower():
            raise SlurmError(f"scontrol failed: {(done.stderr or done.stdout).strip()}")
        return self.sacct_info(job_id)

    def sacct_info(self, job_id: str) -> Optional[JobInfo]:
        """The job as accounting records it; None without accounting or when it has no record."""
        done = self.run("sacct", ["-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode,Timelimit,NodeList"],
                        check=False)
        if done.returncode != 0:
            return None
        for line in done.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 5 and parts[0] == job_id:
                return JobInfo(job_id=job_id, state=parts[1].split()[0] if parts[1] else "", exit_code=parts[2],
                               time_limit=parts[3], nodes=parts[4], source="sacct")
        return None
