"""Run a job's ranks as local subprocesses: stream lines, enforce walltime, kill on abort.

Each rank is ``/bin/sh -c <command>`` in its own session (process group), so
one ``killpg`` reaches everything the job started, the way stopping a
container does. A child that left the group (``setsid``, a daemon's double
fork, ``start_new_session=True``) still carries the job's environment, in
which every rank gets a fresh ``POLLINATOR_JOB_TOKEN``: when the job ends,
every process whose environment holds that token is killed too (found
through ``/proc``; no privileges or cgroup delegation needed). stdout and stderr are read line by line in threads and
handed to the sink at once; the last stderr lines are kept for the error
report. The loop ticks every 50 ms, so walltime and abort act within ~0.1 s.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from typing import IO

from pollinator.executor.backend import AbortSignal, LaunchSpec, LineSink, RunResult

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
JOB_TOKEN_VAR = "POLLINATOR_JOB_TOKEN"


def _tagged_pids(token: str) -> list[int]:
    """Processes of ours whose environment carries ``POLLINATOR_JOB_TOKEN=<token>``."""
    needle = f"{JOB_TOKEN_VAR}={token}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    me, uid = os.getpid(), os.getuid()
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or not ours to read
            continue
    return found


def kill_escaped(token: str, passes: int = 3) -> int:
    """SIGKILL every process still tagged with the job's token (a few passes: one may fork meanwhile)."""
    killed = 0
    for _ in range(passes):
        pids = _tagged_pids(token)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)
    return killed


def rank_env(rank: int, world: int, ranks_per_node: int = 0) -> dict[str, str]:
    """The variables that tell one rank who it is (Pollinator's own, PMI and Open MPI style)."""
    per_node = ranks_per_node if ranks_per_node > 0 else world
    local = rank % per_node
    return {
        "POLLINATOR_RANK": str(rank),
        "POLLINATOR_WORLD_SIZE": str(world),
        "POLLINATOR_LOCAL_RANK": str(local),
        "POLLINATOR_NODE_RANK": str(rank // per_node),
        "PMI_RANK": str(rank),
        "PMI_SIZE": str(world),
        "OMPI_COMM_WORLD_RANK": str(rank),
        "OMPI_COMM_WORLD_SIZE": str(world),
        "OMPI_COMM_WORLD_LOCAL_RANK": str(local),
        "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_node),
    }


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session=True: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


class _Rank:
    """One started rank: its process and the two threads draining its pipes."""

    def __init__(self, rank: int, proc: subprocess.Popen[bytes], prefix: str, sink: LineSink,
                 tail: deque[str], tail_lock: threading.Lock):
        self.rank, self.proc, self.prefix = rank, proc, prefix
        self._sink, self._tail, self._tail_lock = sink, tail, tail_lock
        assert proc.stdout is not None and proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._pump, args=(proc.stdout, False), daemon=True,
                             name=f"rank{rank}-stdout"),
            threading.Thread(target=self._pump, args=(proc.stderr, True), daemon=True,
                             name=f"rank{rank}-stderr"),
        ]
        for reader in self.readers:
            reader.start()

    def _pump(self, stream: IO[bytes], is_stderr: bool) -> None:
        try:
            for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
                line = self.prefix + raw.decode("utf-8", "replace").rstrip("\r\n")
                if is_stderr:
                    with self._tail_lock:
                        self._tail.append(line)
                try:
                    self._sink(line)
                except Exception:  # a broken sink must not leave the pipe full and the job stuck
                    log.exception("log sink failed; dropping a line")
        except (OSError, ValueError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def join_readers(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        for reader in self.readers:
            reader.join(max(0.0, end - time.monotonic()))
        return not any(reader.is_alive() for reader in self.readers)


class LocalBackend:
    """Runs ranks as subprocesses on this machine (no container engine needed)."""

    name = "local"

    def __init__(self, *, shell: str = "/bin/sh", tick: float = 0.05, kill_grace: float = 3.0,
                 stderr_tail_lines: int = 20):
        self.shell = shell
        self.tick = tick
        self.kill_grace = kill_grace
        self.stderr_tail_lines = stderr_tail_lines

    def run(self, launch: LaunchSpec, sink: LineSink, abort: AbortSignal) -> RunResult:
        result = RunResult()
        tail: deque[str] = deque(maxlen=self.stderr_tail_lines)
        tail_lock = threading.Lock()
        ranks: list[_Rank] = []
        world = max(1, launch.ranks)
        token = uuid.uuid4().hex
        for rank in range(world):
            env = dict(launch.env)
            env[JOB_TOKEN_VAR] = token
            prefix = ""
            if world > 1:
                env.update(rank_env(rank, world, launch.ranks_per_node))
                prefix = f"[rank {rank}] "
            try:
                proc = subprocess.Popen([self.shell, "-c", launch.command], cwd=str(launch.cwd), env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                result.start_error = f"could not start the command: {exc}"
                self._kill(ranks)
                self._finish(ranks)
                kill_escaped(token)
                result.exit_codes = [r.proc.returncode for r in ranks] + [None] * (world - len(ranks))
                return result
            ranks.append(_Rank(rank, proc, prefix, sink, tail, tail_lock))

        self._supervise(launch, ranks, sink, abort, result)
        self._finish(ranks)
        escaped = kill_escaped(token)
        if escaped:
            sink(f"[executor] killed {escaped} process(es) the job left running outside its process group")
        result.exit_codes = [r.proc.returncode for r in ranks]
        with tail_lock:
            result.stderr_tail = list(tail)
        return result

    def _supervise(self, launch: LaunchSpec, ranks: list[_Rank], sink: LineSink, abort: AbortSignal,
                   result: RunResult) -> None:
        """Wait for every rank, or kill them all on walltime, abort or a failed rank.

        The wait between checks grows with the job's age (a tenth of it, 1 ms up to ``tick``): a
        5 ms ``echo`` is seen ending within a millisecond, a long job costs ~20 wake-ups a second.
        """
        started = time.monotonic()
        while True:
            codes = [r.proc.poll() for r in ranks]
            if all(code is not None for code in codes):
                return
            failed = [(r.rank, c) for r, c in zip(ranks, codes) if c not in (None, 0)]
            if failed and len(ranks) > 1:
                rank, code = failed[0]
                sink(f"[executor] rank {rank} exited with code {code}; stopping the other ranks")
                self._kill(ranks)
                return
            now = time.monotonic()
            if launch.walltime > 0 and now - started >= launch.walltime:
                result.timed_out = True
                self._kill(ranks)
                return
            if launch.deadline is not None and now >= launch.deadline:
                result.timed_out = True
                result.reason = (f"the server's deadline for this attempt came first, after {now - started:.0f} s of "
                                 f"run time (maxexectime counts from assignment, staging included)")
                self._kill(ranks)
                return
            if abort.wait(min(self.tick, max(0.001, (time.monotonic() - started) * 0.1))):
                result.aborted = abort.reason or "aborted"
                self._kill(ranks)
                return

    def _kill(self, ranks: list[_Rank]) -> None:
        """SIGTERM every rank's process group, then SIGKILL whatever is left after the grace period."""
        live = [r for r in ranks if r.proc.poll() is None]
        for r in live:
            _signal_group(r.proc, signal.SIGTERM)
        end = time.monotonic() + self.kill_grace
        for r in live:
            try:
                r.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for r in ranks:
            _signal_group(r.proc, signal.SIGKILL)
        for r in ranks:
            r.proc.wait()

    def _finish(self, ranks: list[_Rank]) -> None:
        """Drain the pipes; background leftovers that keep them open are killed with their group."""
        for r in ranks:
            if not r.join_readers(1.0):
                _signal_group(r.proc, signal.SIGKILL)
                r.join_readers(5.0)
            # Like a stopped container: nothing the job started outlives it.
            _signal_group(r.proc, signal.SIGKILL)
