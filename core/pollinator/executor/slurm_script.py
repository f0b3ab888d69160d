"""Turn one launch into the files a Slurm job needs: the batch script and the per-rank wrapper.

Pure functions only (no subprocess, no Slurm), so every translation rule can
be tested without a cluster:

* ColonyOS conditions -> ``#SBATCH`` directives: ranks -> ``--nodes`` and
  ``--ntasks-per-node``; ``cpu`` (cores or millicores) -> ``--cpus-per-task``
  rounded up; ``mem`` (Kubernetes units or bytes) -> ``--mem`` in MiB rounded
  up; GPUs -> ``--gres=gpu[:name]:count``; the time left until the job's
  deadline -> ``--time`` (Slurm counts whole minutes, so it is rounded up).
* The batch script runs the rank wrapper once per task with ``srun --label``
  so every rank's lines carry its number; the wrapper sets the Pollinator rank
  variables from Slurm's, runs the command (through apptainer/singularity when
  an image is to be used) and records its exit code in the job dir, because
  Slurm only reports one exit code for the whole job.

The command itself goes into its own file (``command.sh``) instead of being
quoted into ``srun`` arguments: it is a shell command line from the spec and
may hold any quoting of its own.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

_GRES_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_JOB_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_TAG = re.compile(r"[^A-Za-z0-9_.:/=-]")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)([KMGTPE]i|[kKMGTPE])?$")
_MEM_FACTORS = {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5, "E": 1000**6,
                "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}
_LABEL = re.compile(r"^\s*(\d+): ?(.*)$", re.DOTALL)

BATCH_SCRIPT = "job.sh"
RANK_SCRIPT = "rank.sh"
COMMAND_SCRIPT = "command.sh"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
EXIT_PREFIX = "exit."


def cpus_per_task(cpu: str) -> int:
    """``500m`` -> 1, ``2`` -> 2, ``2.5`` -> 3; empty or zero -> 0 (no directive, Slurm's default)."""
    text = (cpu or "").strip()
    if not text:
        return 0
    try:
        cores = int(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ValueError(f"cpu {cpu!r} is not a CPU quantity (500m, 1, 2.5)") from None
    return max(1, math.ceil(cores)) if cores > 0 else 0


def mem_mib(mem: str) -> int:
    """A Kubernetes-style quantity (``1Gi``, ``512M``, bytes) in MiB rounded up; empty -> 0 (no directive)."""
    text = (mem or "").strip()
    if not text:
        return 0
    match = _MEM.match(text)
    if not match:
        raise ValueError(f"mem {mem!r} is not a memory quantity (1Gi, 512Mi, 2G, bytes)")
    number, unit = float(match.group(1)), match.group(2) or ""
    return max(1, math.ceil(number * _MEM_FACTORS[unit] / 1024**2)) if number > 0 else 0


def slurm_time(seconds: float) -> str:
    """Seconds as Slurm's ``[D-]HH:MM:SS``, rounded up to whole minutes as Slurm enforces them."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock


def gres(gpu_count: int, gpu_name: str = "") -> str:
    """``gpu:a100:2`` (or ``gpu:2`` without a name); empty when no GPU is requested."""
    if gpu_count <= 0:
        return ""
    name = _GRES_NAME.sub("", gpu_name or "")
    return f"gpu:{name}:{gpu_count}" if name else f"gpu:{gpu_count}"


def layout(ranks: int, ranks_per_node: int) -> tuple[int, int]:
    """(nodes, tasks per node) for ``ranks`` tasks with at most ``ranks_per_node`` per node (0 = all on one)."""
    ranks = max(1, ranks)
    per_node = min(ranks_per_node, ranks) if ranks_per_node > 0 else ranks
    return math.ceil(ranks / per_node), per_node


@dataclass(frozen=True)
class Container:
    """Run the command in an image through apptainer/singularity (``exec`` of a pulled SIF)."""

    engine: str
    """Path of the ``apptainer`` or ``singularity`` binary."""
    image: str
    """The SIF file (or any URI the engine's ``exec`` accepts)."""
    binds: tuple[str, ...] = ()
    """``host:container`` pairs."""
    gpus: bool = False


@dataclass(frozen=True)
class BatchRequest:
    """Everything the batch script says; built by the backend, rendered here."""

    job_name: str
    job_dir: Path
    workdir: Path
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 0
    mem_mib: int = 0
    gres: str = ""
    time: str = ""
    partition: str = ""
    account: str = ""
    extra_directives: tuple[str, ...] = ()
    """Site options such as ``--qos=short``, one ``#SBATCH`` line each."""
    container: Optional[Container] = None
    comment: tuple[str, ...] = field(default_factory=tuple)
    """Lines for the script's header comment (what runs and why it looks like this)."""
    tag: str = ""
    """Slurm's ``--comment``: which process, attempt and executor the job is (see ``slurm.JobTag``)."""

    @property
    def stdout_path(self) -> Path:
        return self.job_dir / STDOUT_FILE

    @property
    def stderr_path(self) -> Path:
        return self.job_dir / STDERR_FILE

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node

    def resource_directives(self) -> list[str]:
        """What the job asks for (also what the process log reports at submission)."""
        opts = [f"--nodes={self.nodes}", f"--ntasks-per-node={self.tasks_per_node}"]
        if self.cpus_per_task:
            opts.append(f"--cpus-per-task={self.cpus_per_task}")
        if self.mem_mib:
            opts.append(f"--mem={self.mem_mib}M")
        if self.gres:
            opts.append(f"--gres={self.gres}")
        if self.time:
            opts.append(f"--time={self.time}")
        return opts

    def directives(self) -> list[str]:
        """The ``#SBATCH`` options, in the order a person would read them."""
        opts = [f"--job-name={_JOB_NAME.sub('_', self.job_name) or 'pollinator'}"]  # a directive ends at whitespace
        if self.tag:
            opts.append(f"--comment={_TAG.sub('_', self.tag)}")
        if self.partition:
            opts.append(f"--partition={self.partition}")
        if self.account:
            opts.append(f"--account={self.account}")
        opts += self.resource_directives()
        opts += [f"--output={self.stdout_path}", f"--error={self.stderr_path}", f"--chdir={self.workdir}",
                 "--no-requeue"]  # ColonyOS retries a failed process itself (maxretries); a requeue would run it twice
        opts += list(self.extra_directives)
        return opts


def render_batch_script(req: BatchRequest) -> str:
    """The ``sbatch`` script: directives, then one ``srun`` that starts every rank."""
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {opt}" for opt in req.directives()]
    lines.append("")
    lines += [f"# {text}" for text in req.comment]
    lines += [
        "# The environment is the executor's (sbatch --export=ALL) with every Colonies/S3 credential",
        "# removed before submission, plus the job spec's env. Each rank runs rank.sh; --label prefixes",
        "# its lines with the rank number, and a failing rank stops the others (--kill-on-bad-exit).",
        f"srun --label --kill-on-bad-exit=1 /bin/sh {shlex.quote(str(req.job_dir / RANK_SCRIPT))}",
        "",
    ]
    return "\n".join(lines)


def render_rank_script(req: BatchRequest) -> str:
    """One rank: Pollinator's rank variables from Slurm's, the command, its exit code for the executor."""
    command = shlex.quote(str(req.job_dir / COMMAND_SCRIPT))
    if req.container is not None:
        c = req.container
        argv = [c.engine, "exec"] + (["--nv"] if c.gpus else [])
        for bind in c.binds:
            argv += ["--bind", bind]
        argv += ["--pwd", str(req.workdir), c.image, "/bin/sh"]
        run = " ".join(shlex.quote(a) for a in argv) + " " + command
    else:
        run = f"/bin/sh {command}"
    exit_file = shlex.quote(str(req.job_dir / EXIT_PREFIX)) + '"$POLLINATOR_RANK"'
    return "\n".join([
        "#!/bin/sh",
        "# one rank of the job: who am I (from Slurm), run the command, record how it ended",
        'export POLLINATOR_RANK="${SLURM_PROCID:-0}"',
        'export POLLINATOR_WORLD_SIZE="${SLURM_NTASKS:-1}"',
        'export POLLINATOR_LOCAL_RANK="${SLURM_LOCALID:-0}"',
        'export POLLINATOR_NODE_RANK="${SLURM_NODEID:-0}"',
        run,
        "code=$?",
        f'echo "$code" > {exit_file}',
        'exit "$code"',
        "",
    ])


def write_job_files(req: BatchRequest, command: str) -> Path:
    """Write command.sh, rank.sh and job.sh into the job dir; returns the batch script's path."""
    req.job_dir.mkdir(parents=True, exist_ok=True)
    (req.job_dir / COMMAND_SCRIPT).write_text(command + "\n", encoding="utf-8")
    (req.job_dir / RANK_SCRIPT).write_text(render_rank_script(req), encoding="utf-8")
    script = req.job_dir / BATCH_SCRIPT
    script.write_text(render_batch_script(req), encoding="utf-8")
    script.chmod(0o700)
    return script


def read_exit_codes(job_dir: Path, ranks: int) -> list[Optional[int]]:
    """Each rank's recorded exit code; None where the rank never got to write one (killed, not started)."""
    codes: list[Optional[int]] = []
    for rank in range(ranks):
        try:
            codes.append(int((job_dir / f"{EXIT_PREFIX}{rank}").read_text().strip()))
        except (OSError, ValueError):
            codes.append(None)
    return codes


class LabelDecoder:
    """Turns ``srun --label`` lines (``"1: text"``) into the sink's ``"[rank 1] text"`` form.

    A single-rank job gets no prefix, as with the local backend. Lines without a
    label come from Slurm itself (``slurmstepd: error: *** JOB 12 ... ***``) and
    pass through unchanged.
    """

    def __init__(self, ranks: int):
        self.ranks = ranks

    def __call__(self, line: str) -> str:
        match = _LABEL.match(line)
        if not match:
            return line
        rank, text = match.group(1), match.group(2)
        return text if self.ranks <= 1 else f"[rank {rank}] {text}"
