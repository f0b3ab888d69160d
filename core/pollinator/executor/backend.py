"""What a place that runs commands must offer, so Slurm can sit beside the local one.

The executor turns a Colonies process into a :class:`LaunchSpec` (a shell
command, a directory, an environment, a rank count, a deadline) and hands it
to a :class:`Backend`. Everything Colonies-specific (staging files, logs to the
server, closing the process) stays outside the backend, so a Slurm backend
only has to start ranks, stream their lines and report how they ended.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

if TYPE_CHECKING:
    from pollinator.colonies.models import Process

LineSink = Callable[[str], None]
"""Receives one output line (no trailing newline), already prefixed for its rank."""


class AbortSignal:
    """A one-shot, thread-safe "stop this job" flag that remembers why.

    Set by the cancel watcher ("cancelled"), by ``LocalExecutor.stop``
    ("executor stopped") or by anyone else; the first reason wins so the
    job is reported with the cause that actually ended it.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason = ""

    def set(self, reason: str) -> None:
        with self._lock:
            if not self._event.is_set():
                self._reason = reason
                self._event.set()

    @property
    def reason(self) -> str:
        return self._reason

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._event.wait(timeout)


@dataclass(frozen=True)
class LaunchSpec:
    """One job as a backend sees it: already rewritten for this machine."""

    command: str
    """A shell command line (run with ``/bin/sh -c``), init-cmd already prepended."""
    cwd: Path
    env: dict[str, str]
    """The complete environment of rank 0 minus the rank variables (the backend adds those)."""
    ranks: int = 1
    ranks_per_node: int = 0
    """Ranks per (simulated) node, for local-rank variables; 0 means all ranks on one node."""
    deadline: Optional[float] = None
    """``time.monotonic()`` by which the job must have ended whatever its run time: the server's
    deadline for this attempt (maxexectime from assignment) less a margin for the close, or None."""
    walltime: float = 0.0
    """The job's run time limit in seconds (0 = none), counted from when its command starts running
    (a local start; a Slurm job leaving PENDING): queueing and staging do not use it up."""
    time_limit: float = 0.0
    """A scheduler's own limit in seconds when ``walltime`` is 0 because the job's launcher keeps the run
    time (Slurm ``--time``): the spec's walltime, run time plus staging allowance, as a backstop."""
    process: Optional["Process"] = None
    """The process being run, for backends that map its conditions (Slurm: cpu, mem, gpus, image)."""


@dataclass
class RunResult:
    """How a job ended. Exactly one of the outcome flags explains a non-success."""

    exit_codes: list[Optional[int]] = field(default_factory=list)
    """Per rank; negative = killed by that signal (subprocess convention); None = never started."""
    stderr_tail: list[str] = field(default_factory=list)
    timed_out: bool = False
    aborted: str = ""
    """The AbortSignal reason when the job was killed on request ("cancelled", "executor stopped")."""
    start_error: str = ""
    """Why the command could not be started at all (missing shell, bad cwd)."""
    reason: str = ""
    """The backend's own account of a non-success ("Slurm job 12 TIMEOUT after walltime 00:01:00")."""

    @property
    def ok(self) -> bool:
        return (not self.timed_out and not self.aborted and not self.start_error
                and bool(self.exit_codes) and all(code == 0 for code in self.exit_codes))

    @property
    def failed_ranks(self) -> list[int]:
        """Failed ranks, those that failed on their own first: when one rank exits 7 and its peers are
        then killed (SIGTERM from srun --kill-on-bad-exit or from us), the 7 is the news."""
        failed = [rank for rank, code in enumerate(self.exit_codes) if code != 0]
        return sorted(failed, key=lambda rank: was_killed(self.exit_codes[rank]))


def was_killed(code: Optional[int]) -> bool:
    """A rank stopped by a signal (negative: subprocess convention; 128+N: a shell's or Slurm's)."""
    return code is None or code < 0 or code in (128 + 9, 128 + 15)


class Backend(Protocol):
    """Runs a LaunchSpec to the end. Must return (never raise) once the job has started."""

    name: str

    def run(self, launch: LaunchSpec, sink: LineSink, abort: AbortSignal) -> RunResult:
        """Run all ranks, feed every output line to ``sink`` in order, honour deadline and abort."""
        ...
