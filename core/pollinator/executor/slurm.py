"""Run a job as a Slurm batch job: the executor on a login node, the ranks on compute nodes.

What the ColonyOS HPC executor does, behind the same Backend protocol as the
local subprocess backend (so staging, logs to the server and closing the
process stay in ``process_job``):

1. write ``job.sh`` (``#SBATCH`` directives from the process conditions),
   ``rank.sh`` and ``command.sh`` into a job dir under the executor's fs dir,
   which a site keeps on storage the compute nodes share;
2. ``sbatch --parsable`` with the job's environment (credentials were already
   removed by ``launch``);
3. follow the job with ``scontrol``/``sacct`` once a second and stream the
   growing stdout/stderr files into the sink as ``[rank N]`` lines;
4. ``scancel`` when the AbortSignal fires (ColonyOS cancel, executor stop);
5. map the final Slurm state to a RunResult with a reason that names the job
   ("Slurm job 12 TIMEOUT after walltime 00:01:00").

Never two attempts of one process at once. Each job's ``--comment`` is a
:class:`JobTag` (process id, attempt, executor, executor run). A Slurm job
outlives an executor that is killed; nobody follows it any more and the
server re-queues the process at its maxexectime. So before submitting, the
backend ``scancel``s every job of the same process still in ``squeue`` (an
earlier attempt's, whichever executor started it) and waits for it to leave
the queue; and an executor started again under the same name cancels the
jobs its earlier run left behind (:meth:`SlurmBackend.reap_orphans`) at once,
instead of letting them run unfollowed until the re-queue.

Walltime is run time. A job whose Pollinator launcher keeps it
(``env.POLLINATOR_WALLTIME``, see :mod:`pollinator.launcher`) is timed by the
launcher alone, to the second; ``--time`` is then the spec's walltime (run
time plus staging allowance) rounded up to minutes, a backstop as on the
ColonyOS HPC executor. Otherwise ``--time`` is the job's walltime rounded up
to whole minutes (Slurm's unit; time spent PENDING does not count), and the
backend itself ``scancel``s the job once it has been RUNNING for its walltime
in seconds, so walltime N gives N seconds, not up to a minute more. The
server's deadline for the attempt (``LaunchSpec.deadline``) is a hard stop:
a job still PENDING or running then is cancelled and reported "walltime
exceeded", so the executor closes it itself and the server never re-runs it.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional

from pollinator.executor.backend import AbortSignal, LaunchSpec, LineSink, RunResult, was_killed
from pollinator.executor.container_engine import ensure_sif, find_engine
from pollinator.executor.launch import DEFAULT_MOUNT, OUTPUT_FILE_VAR, ExecuteArgs, JobSpecError
from pollinator.executor.slurm_cli import JobInfo, QueuedJob, SlurmCli, SlurmError
from pollinator.executor.slurm_script import (
    BatchRequest, Container, LabelDecoder, cpus_per_task, gres, layout, mem_mib, read_exit_codes, slurm_time,
    write_job_files,
)

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
ENV_PARTITION = "POLLINATOR_SLURM_PARTITION"
ENV_ACCOUNT = "POLLINATOR_SLURM_ACCOUNT"
ENV_OPTIONS = "POLLINATOR_SLURM_OPTIONS"
ENV_IMAGE_DIR = "POLLINATOR_SLURM_IMAGE_DIR"
ENV_KEEP = "POLLINATOR_SLURM_KEEP_JOB_DIRS"

_STATE_REASONS = {
    "FAILED": "a rank failed",
    "CANCELLED": "cancelled outside this executor (scancel by a user or an administrator)",
    "OUT_OF_MEMORY": "a rank used more memory than the job was given",
    "NODE_FAIL": "a node of the job failed",
    "PREEMPTED": "preempted by a higher-priority job",
    "BOOT_FAIL": "its nodes failed to boot",
    "DEADLINE": "it reached its Slurm deadline",
    "REVOKED": "its allocation was revoked",
    "SPECIAL_EXIT": "it was held after a special exit",
}


_OWNER = re.compile(r"[^A-Za-z0-9_.=/-]")


@dataclass(frozen=True)
class JobTag:
    """A job's ``--comment``: ``pollinator:<process id>:<attempt>:<owner>:<instance>``.

    ``owner`` is the executor (``<colony>/<executor name>``), ``instance`` one run of it: what
    tells a job left behind by a killed executor from one followed now.
    """

    process_id: str
    attempt: int
    owner: str = ""
    instance: str = ""

    PREFIX = "pollinator"

    def text(self) -> str:
        return ":".join((self.PREFIX, self.process_id, str(self.attempt), _OWNER.sub("_", self.owner),
                         self.instance))

    @classmethod
    def parse(cls, comment: str) -> Optional["JobTag"]:
        parts = comment.strip().split(":")
        if len(parts) != 5 or parts[0] != cls.PREFIX or not parts[1] or not parts[2].isdigit():
            return None
        return cls(process_id=parts[1], attempt=int(parts[2]), owner=parts[3], instance=parts[4])


class _Tail:
    """Follows a file another host appends to; hands complete, decoded lines to ``emit``."""

    def __init__(self, path: Path, decode: Callable[[str], str], emit: LineSink, keep: int = 0):
        self.path, self._decode, self._emit = path, decode, emit
        self._pos = 0
        self._partial = b""
        self.last: deque[str] = deque(maxlen=keep or 1)
        self._keep = keep

    def read(self, final: bool = False) -> None:
        while True:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._pos)
                    data = f.read(1 << 20)
            except FileNotFoundError:
                data = b""
            self._pos += len(data)
            *lines, self._partial = (self._partial + data).split(b"\n")
            if len(self._partial) > MAX_LINE_BYTES:  # a line without end must not grow without bound
                lines.append(self._partial)
                self._partial = b""
            if final and self._partial and len(data) < (1 << 20):
                lines.append(self._partial)
                self._partial = b""
            for raw in lines:
                self._line(raw.decode("utf-8", "replace").rstrip("\r"))
            if len(data) < (1 << 20):
                return

    def _line(self, raw: str) -> None:
        text = self._decode(raw)
        if self._keep:
            self.last.append(text)
        try:
            self._emit(text)
        except Exception:  # a broken sink must not stop the following of the job
            log.exception("log sink failed; dropping a line")


class SlurmBackend:
    """Runs each LaunchSpec as one ``sbatch`` job whose ranks are ``srun`` tasks."""

    name = "slurm"
    handles_images = True
    """It runs docker-image itself through apptainer/singularity, or says in the log why it cannot."""

    def __init__(self, fs_dir: Path, *, cli: Optional[SlurmCli] = None, partition: str = "", account: str = "",
                 extra_directives: tuple[str, ...] = (), engine: Optional[str] = None, detect_engine: bool = True,
                 image_dir: Optional[Path] = None, tick: float = 0.25, poll: float = 1.0,
                 timeout_grace: float = 120.0, cancel_wait: float = 60.0, lost_after: float = 600.0,
                 keep_job_dirs: bool = False, stderr_tail_lines: int = 20):
        self.fs_dir = Path(fs_dir).expanduser().resolve()
        self.work_dir = self.fs_dir / ".slurm"
        self.cli = cli or SlurmCli()
        self.partition, self.account = partition, account
        self.extra_directives = tuple(extra_directives)
        self.engine = engine or (find_engine() if detect_engine else None)
        self.image_dir = image_dir or self.fs_dir / ".images"
        self.tick, self.poll = tick, poll
        self.timeout_grace, self.cancel_wait, self.lost_after = timeout_grace, cancel_wait, lost_after
        self.keep_job_dirs = keep_job_dirs
        self.stderr_tail_lines = stderr_tail_lines
        self.owner = ""
        """The executor this backend submits for (``<colony>/<name>``); set by ``bind_executor``."""
        self.instance = uuid.uuid4().hex[:12]
        """This run of the executor: its jobs are followed, another run's jobs of the same owner are not."""

    @classmethod
    def from_env(cls, fs_dir: Path, environ: Optional[Mapping[str, str]] = None, **kwargs: object) -> "SlurmBackend":
        """Site settings from ``POLLINATOR_SLURM_*`` (partition, account, extra sbatch options, image dir)."""
        env = os.environ if environ is None else environ
        image_dir = env.get(ENV_IMAGE_DIR, "").strip()
        return cls(fs_dir, partition=env.get(ENV_PARTITION, "").strip(), account=env.get(ENV_ACCOUNT, "").strip(),
                   extra_directives=tuple(shlex.split(env.get(ENV_OPTIONS, ""))),
                   image_dir=Path(image_dir) if image_dir else None,
                   keep_job_dirs=env.get(ENV_KEEP, "").lower() in ("1", "true", "yes"), **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"SlurmBackend(fs_dir={str(self.fs_dir)!r}, partition={self.partition!r}, engine={self.engine!r})"

    # -- jobs nobody follows ------------------------------------------------------------------------
    def bind_executor(self, owner: str) -> None:
        """Tag jobs with the executor they are for, so its next run knows them as its own."""
        self.owner = _OWNER.sub("_", owner)

    def reap_orphans(self) -> list[str]:
        """Cancel the jobs an earlier run of this executor left in the queue; returns their ids.

        Their attempts are nobody's now: the dead run's follower is gone, the server re-queues
        the process at its maxexectime, and a job still running then would run beside the next
        attempt (and until then hold nodes for results nobody collects).
        """
        if not self.owner:
            return []
        try:
            jobs = self.cli.queued()
        except SlurmError as exc:
            log.warning("could not look for Slurm jobs left by an earlier run of this executor: %s", exc)
            return []
        reaped = []
        for job in jobs:
            tag = JobTag.parse(job.comment)
            if tag is None or tag.owner != self.owner or tag.instance == self.instance:
                continue
            try:
                self.cli.cancel(job.job_id)
            except SlurmError as exc:
                log.warning("could not scancel Slurm job %s (process %s attempt %d, left by an earlier run): %s",
                            job.job_id, tag.process_id, tag.attempt + 1, exc)
                continue
            log.warning("scancel Slurm job %s (%s): process %s attempt %d was left by an earlier run of this "
                        "executor and nobody follows it; the server re-queues the process at its maxexectime",
                        job.job_id, job.state, tag.process_id, tag.attempt + 1)
            reaped.append(job.job_id)
        return reaped

    def _earlier_jobs(self, process_id: str) -> list[tuple[QueuedJob, JobTag]]:
        return [(job, tag) for job in self.cli.queued(name=process_id)
                for tag in [JobTag.parse(job.comment)] if tag is not None and tag.process_id == process_id]

    def _stop_earlier_jobs(self, process_id: str, attempt: int, sink: LineSink, abort: AbortSignal) -> str:
        """``scancel`` any job of this process still queued (an earlier attempt's) and wait until it has left
        the queue: an executor never runs two attempts of one process at once. Returns an error, or ""."""
        try:
            earlier = self._earlier_jobs(process_id)
        except SlurmError as exc:
            sink(f"[executor] could not check for Slurm jobs of earlier attempts of this process: {exc}")
            return ""
        if not earlier:
            return ""
        ids = set()
        for job, tag in earlier:
            whose = f"executor {tag.owner.rpartition('/')[2]}" if tag.owner else "another executor"
            sink(f"[executor] Slurm job {job.job_id} of attempt {tag.attempt + 1} of this process ({whose}) is "
                 f"still {job.state}: scancel before attempt {attempt + 1} starts")
            try:
                self.cli.cancel(job.job_id)
            except SlurmError as exc:
                sink(f"[executor] scancel {job.job_id} failed: {exc}")
            ids.add(job.job_id)
        end = time.monotonic() + self.cancel_wait
        left = ids
        while time.monotonic() < end and not abort.is_set():
            try:
                left = ids & {job.job_id for job, _tag in self._earlier_jobs(process_id)}
            except SlurmError as exc:
                log.warning("squeue failed while waiting for Slurm jobs %s to end: %s", ", ".join(sorted(ids)), exc)
            if not left:
                return ""
            abort.wait(min(self.poll, 1.0))
        if abort.is_set():
            return ""
        return (f"Slurm job(s) {', '.join(sorted(left))} of an earlier attempt of this process did not end within "
                f"{self.cancel_wait:g} s of scancel; this attempt was not started beside them")

    # -- one job ----------------------------------------------------------------------------------
    def run(self, launch: LaunchSpec, sink: LineSink, abort: AbortSignal) -> RunResult:
        ranks = max(1, launch.ranks)
        process_id = launch.env.get("COLONIES_PROCESS_ID") or (launch.process.processid if launch.process else "")
        attempt = launch.process.retries if launch.process is not None else 0
        job_dir = self.work_dir / f"{process_id or 'job'}-{uuid.uuid4().hex[:8]}"
        try:
            req = self._request(launch, job_dir, process_id or "pollinator", sink, abort)
            if process_id:
                req = replace(req, tag=JobTag(process_id, attempt, self.owner, self.instance).text())
            env = self._job_env(launch, job_dir)
            script = write_job_files(req, launch.command)
            busy = self._stop_earlier_jobs(process_id, attempt, sink, abort) if process_id else ""
            if abort.is_set():
                shutil.rmtree(job_dir, ignore_errors=True)
                return RunResult(exit_codes=[None] * ranks, aborted=abort.reason or "aborted")
            if busy:
                shutil.rmtree(job_dir, ignore_errors=True)
                return RunResult(exit_codes=[None] * ranks, start_error=busy)
            job_id = self.cli.submit(script, env=env)
        except (SlurmError, JobSpecError, ValueError, OSError) as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            if abort.is_set():
                return RunResult(exit_codes=[None] * ranks, aborted=abort.reason or "aborted")
            return RunResult(exit_codes=[None] * ranks, start_error=f"Slurm submission failed: {exc}")
        sink(f"[executor] Slurm job {job_id} submitted ({self._summary(req)}); batch script {script}")
        result = self._follow(job_id, req, launch, sink, abort)
        self._return_output(launch, job_dir)
        if result.ok and not self.keep_job_dirs:
            shutil.rmtree(job_dir, ignore_errors=True)
        elif not result.ok:
            sink(f"[executor] Slurm job files kept in {job_dir}")
        return result

    @staticmethod
    def _summary(req: BatchRequest) -> str:
        parts = [opt.lstrip("-") for opt in req.resource_directives()]
        if not req.time:
            parts.append("time=partition default")
        return ", ".join(parts)

    def _request(self, launch: LaunchSpec, job_dir: Path, job_name: str, sink: LineSink,
                 abort: AbortSignal) -> BatchRequest:
        """The batch request: layout from the LaunchSpec, resources and image from the process conditions."""
        nodes, per_node = layout(launch.ranks, launch.ranks_per_node)
        cpu = mem = gpu_name = image = ""
        gpu_count = 0
        mount = DEFAULT_MOUNT
        if launch.process is not None:
            spec = launch.process.spec
            cond = spec.conditions
            cpu, mem, gpu_count, gpu_name = cond.cpu, cond.mem, cond.gpu.count, cond.gpu.name
            mount = spec.fs.mount or DEFAULT_MOUNT
            image = ExecuteArgs.from_spec(spec).image
        time_limit = ""
        if launch.walltime > 0:
            time_limit = slurm_time(launch.walltime)
        elif launch.time_limit > 0:  # the launcher keeps the run time; --time is the backstop, as on the HPC executor
            time_limit = slurm_time(launch.time_limit)
        elif launch.deadline is not None:
            time_limit = slurm_time(max(1.0, launch.deadline - time.monotonic()))
        container = None
        if image:
            if self.engine:
                sif = ensure_sif(self.engine, image, self.image_dir, lambda m: sink(f"[executor] {m}"), abort)
                container = Container(engine=self.engine, image=str(sif), gpus=gpu_count > 0,
                                      binds=(f"{self.fs_dir}:{self.fs_dir}", f"{self.fs_dir}:{mount}"))
                sink(f"[executor] running the command in {image} with {Path(self.engine).name}")
            else:
                sink(f"[executor] docker-image {image!r}: no container engine (apptainer or singularity) on this "
                     f"node, so the command runs directly on the compute nodes")
        return BatchRequest(
            job_name=job_name, job_dir=job_dir, workdir=launch.cwd, nodes=nodes, tasks_per_node=per_node,
            cpus_per_task=cpus_per_task(cpu), mem_mib=mem_mib(mem), gres=gres(gpu_count, gpu_name), time=time_limit,
            partition=self.partition, account=self.account, extra_directives=self.extra_directives,
            container=container,
            comment=(f"ColonyOS process {job_name}, written by the Pollinator Slurm backend.",))

    @staticmethod
    def _job_env(launch: LaunchSpec, job_dir: Path) -> dict[str, str]:
        """The environment sbatch exports to the job.

        ``launch.env`` is already free of the executor's credentials. Slurm variables
        of an allocation the executor itself may run in are dropped (they would bend
        the new job's options); ``SLURM_CONF`` stays so sbatch finds the cluster. The
        output file moves into the job dir: compute nodes cannot write to the login
        node's temp dir.
        """
        env = {k: v for k, v in launch.env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
        if OUTPUT_FILE_VAR in env:
            env[OUTPUT_FILE_VAR] = str(job_dir / "output.json")
        return env

    @staticmethod
    def _return_output(launch: LaunchSpec, job_dir: Path) -> None:
        """Copy the job's output file back to where the executor reads it."""
        wanted = launch.env.get(OUTPUT_FILE_VAR)
        written = job_dir / "output.json"
        if wanted and written.is_file():
            try:
                shutil.copyfile(written, wanted)
            except OSError as exc:
                log.warning("could not copy the job output to %s: %s", wanted, exc)

    # -- following ---------------------------------------------------------------------------------
    def _follow(self, job_id: str, req: BatchRequest, launch: LaunchSpec, sink: LineSink,
                abort: AbortSignal) -> RunResult:
        decode = LabelDecoder(req.ranks)
        out = _Tail(req.stdout_path, decode, sink)
        err = _Tail(req.stderr_path, decode, sink, keep=self.stderr_tail_lines)
        result = RunResult()
        info: Optional[JobInfo] = None
        shown = ""
        next_poll = 0.0
        started = time.monotonic()
        failing_since: Optional[float] = None
        cancelled_at: Optional[float] = None
        gave_up = ""
        running_since: Optional[float] = None
        while True:
            out.read()
            err.read()
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + self.poll
                try:
                    latest = self.cli.job_info(job_id)
                    failing_since = None
                except SlurmError as exc:
                    latest = info
                    failing_since = failing_since or now
                    log.warning("Slurm job %s: %s", job_id, exc)
                    if now - failing_since > self.lost_after:
                        gave_up = f"lost track of Slurm job {job_id}: {exc}"
                if latest is None and now - started > 30 and failing_since is None:
                    gave_up = gave_up or f"Slurm no longer knows job {job_id} and its end state was not seen"
                info = latest or info
                if running_since is None and info is not None and info.state in ("RUNNING", "COMPLETING"):
                    running_since = now
                if info is not None and info.state != shown:
                    shown = info.state
                    sink(f"[executor] Slurm job {job_id} {self._describe(info)}")
                if info is not None and info.final:
                    break
                if gave_up:
                    if cancelled_at is None:
                        self._scancel(job_id, sink, "(lost track of it)")
                    break
            if cancelled_at is None:
                if abort.is_set():
                    result.aborted = abort.reason or "aborted"
                    cancelled_at = self._scancel(job_id, sink, f"({result.aborted})")
                elif launch.walltime > 0 and running_since is not None and now - running_since > launch.walltime:
                    result.timed_out = True
                    result.reason = (f"Slurm job {job_id} ran for its walltime of {launch.walltime:g} s; "
                                     f"the executor cancelled it")
                    cancelled_at = self._scancel(job_id, sink, "(walltime exceeded)")
                elif launch.deadline is not None and now > launch.deadline:
                    result.timed_out = True
                    state = info.state if info else "unknown"
                    result.reason = (f"Slurm job {job_id} was still {state} at the server's deadline for this "
                                     f"attempt (maxexectime counts from assignment: queue and staging included); "
                                     f"the executor cancelled it")
                    cancelled_at = self._scancel(job_id, sink, "(the server's deadline is near)")
            elif now - cancelled_at > self.cancel_wait:
                gave_up = gave_up or f"Slurm job {job_id} did not end within {self.cancel_wait:g} s of scancel"
                break
            if abort.is_set():
                time.sleep(self.tick)
            else:
                abort.wait(self.tick)
        time.sleep(min(1.0, self.tick * 2))  # let the last writes of the nodes land on the shared file system
        out.read(final=True)
        err.read(final=True)
        result.stderr_tail = list(err.last) if self.stderr_tail_lines else []
        self._conclude(job_id, req, info, gave_up, result)
        return result

    def _scancel(self, job_id: str, sink: LineSink, why: str) -> float:
        try:
            self.cli.cancel(job_id)
            sink(f"[executor] scancel {job_id} {why}")
        except SlurmError as exc:
            sink(f"[executor] scancel {job_id} failed: {exc}")
        return time.monotonic()

    @staticmethod
    def _describe(info: JobInfo) -> str:
        text = info.state
        if info.state == "RUNNING" and info.nodes:
            text += f" on {info.nodes}"
        elif info.reason and info.reason not in ("None", "(null)"):
            text += f" ({info.reason})"
        if info.final and info.exit_code:
            text += f", exit code {info.exit_code}"
        return text

    def _conclude(self, job_id: str, req: BatchRequest, info: Optional[JobInfo], gave_up: str,
                  result: RunResult) -> None:
        """Exit codes per rank and the reason, from the rank files and the final Slurm state."""
        codes = read_exit_codes(req.job_dir, req.ranks)
        state = info.state if info is not None else "UNKNOWN"
        if result.aborted or result.timed_out:
            result.exit_codes = codes
            return
        if state == "COMPLETED":
            result.exit_codes = [0 if c is None else c for c in codes]
            return
        if state == "TIMEOUT":
            result.timed_out = True
            limit = info.time_limit if info is not None and info.time_limit else req.time
            result.reason = f"Slurm job {job_id} TIMEOUT after walltime {limit}"
            result.exit_codes = codes
            return
        culprit = next(((rank, c) for rank, c in enumerate(codes) if c and not was_killed(c)), None) or \
            next(((rank, c) for rank, c in enumerate(codes) if c), None)
        if culprit is not None and state == "FAILED":
            fallback: Optional[int] = -signal.SIGTERM  # the others were stopped by srun --kill-on-bad-exit
        else:
            fallback = (info.exit_status() if info is not None else None) or None
        result.exit_codes = [fallback if c is None else c for c in codes]
        if all(c == 0 for c in result.exit_codes):  # ranks ended well but the job did not: no rank to blame
            result.exit_codes = [None] * req.ranks
        if gave_up:
            result.reason = gave_up
        else:
            why = _STATE_REASONS.get(state, "")
            if culprit is not None and state == "FAILED":
                why = f"rank {culprit[0]} exited with code {culprit[1]}" if req.ranks > 1 else \
                    f"the command exited with code {culprit[1]}"
            detail = f"{state}: {why}" if why else state
            if info is not None and info.reason and info.reason not in ("None", "(null)"):
                detail += f" ({info.reason})"
            if state == "OUT_OF_MEMORY" and req.mem_mib:
                detail += f"; it asked for --mem={req.mem_mib}M"
            result.reason = f"Slurm job {job_id} {detail}"
