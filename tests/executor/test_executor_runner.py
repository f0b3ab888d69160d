"""The subprocess backend and the log shipper, without any server."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path


from executor_fakes import FakeClient
from pollinator.executor.backend import AbortSignal, LaunchSpec
from pollinator.executor.job_runner import LocalBackend, rank_env
from pollinator.executor.log_stream import LogShipper


def alive(pid: int) -> bool:
    """Running (a zombie left for a non-reaping pid 1 in a container counts as dead)."""
    time.sleep(0.1)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def launch(command: str, tmp_path: Path, **kw) -> LaunchSpec:
    return LaunchSpec(command=command, cwd=tmp_path, env={"PATH": os.environ["PATH"], **kw.pop("env", {})}, **kw)


def collect():
    lines: list[str] = []
    lock = threading.Lock()

    def sink(line: str) -> None:
        with lock:
            lines.append(line)

    return lines, sink


def test_success_and_exit_codes(tmp_path):
    lines, sink = collect()
    result = LocalBackend().run(launch("echo hello; echo oops >&2; exit 0", tmp_path), sink, AbortSignal())
    assert result.ok and result.exit_codes == [0]
    assert sorted(lines) == ["hello", "oops"]
    assert result.stderr_tail == ["oops"]


def test_failure_keeps_last_20_stderr_lines(tmp_path):
    lines, sink = collect()
    cmd = "for i in $(seq 1 30); do echo err$i >&2; done; exit 3"
    result = LocalBackend().run(launch(cmd, tmp_path), sink, AbortSignal())
    assert not result.ok and result.exit_codes == [3]
    assert result.stderr_tail == [f"err{i}" for i in range(11, 31)]


def test_walltime_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    cmd = f"sleep 60 & echo $! > {pidfile}; sleep 60"
    start = time.monotonic()
    result = LocalBackend(kill_grace=1.0).run(
        launch(cmd, tmp_path, deadline=time.monotonic() + 0.5, walltime=0.5), lambda _l: None, AbortSignal())
    assert result.timed_out and not result.ok
    assert time.monotonic() - start < 3.0
    assert not alive(int(pidfile.read_text()))


def test_abort_terms_then_kills(tmp_path):
    abort = AbortSignal()
    # ignores SIGTERM: only SIGKILL after the grace period ends it
    cmd = "trap '' TERM; echo ready; while true; do sleep 0.05; done"
    lines, sink = collect()
    threading.Timer(0.3, abort.set, args=("cancelled",)).start()
    start = time.monotonic()
    result = LocalBackend(kill_grace=0.5).run(launch(cmd, tmp_path), sink, abort)
    elapsed = time.monotonic() - start
    assert result.aborted == "cancelled"
    assert 0.7 < elapsed < 3.0
    assert result.exit_codes[0] is not None and result.exit_codes[0] < 0
    assert lines == ["ready"]


def test_ranks_get_env_and_prefix(tmp_path):
    lines, sink = collect()
    cmd = 'echo "$POLLINATOR_RANK/$POLLINATOR_WORLD_SIZE $PMI_RANK $OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK"'
    result = LocalBackend().run(launch(cmd, tmp_path, ranks=4, ranks_per_node=2), sink, AbortSignal())
    assert result.ok and result.exit_codes == [0, 0, 0, 0]
    assert sorted(lines) == ["[rank 0] 0/4 0 0 0", "[rank 1] 1/4 1 1 1", "[rank 2] 2/4 2 2 0",
                             "[rank 3] 3/4 3 3 1"]


def test_one_failing_rank_fails_the_job_and_stops_the_others(tmp_path):
    lines, sink = collect()
    cmd = 'if [ "$POLLINATOR_RANK" = 1 ]; then echo bad >&2; exit 7; fi; sleep 30'
    start = time.monotonic()
    result = LocalBackend(kill_grace=1.0).run(launch(cmd, tmp_path, ranks=3), sink, AbortSignal())
    assert time.monotonic() - start < 5
    assert not result.ok and result.exit_codes[1] == 7 and result.failed_ranks[0] in (0, 1)
    assert "[rank 1] bad" in result.stderr_tail


def test_rank_env_single_node():
    env = rank_env(2, 3)
    assert env["POLLINATOR_LOCAL_RANK"] == "2" and env["PMI_SIZE"] == "3" and env["POLLINATOR_NODE_RANK"] == "0"


def test_start_error_is_reported(tmp_path):
    result = LocalBackend().run(launch("true", tmp_path / "missing"), lambda _l: None, AbortSignal())
    assert result.start_error and not result.ok


def test_background_child_holding_the_pipe_does_not_hang(tmp_path):
    start = time.monotonic()
    result = LocalBackend().run(launch("sleep 60 & echo done", tmp_path), lambda _l: None, AbortSignal())
    assert result.ok and time.monotonic() - start < 4


# -- log shipping ---------------------------------------------------------------------------------------
def test_shipper_batches_fast_output_and_keeps_order(tmp_path):
    client = FakeClient()
    shipper = LogShipper(client, "p")
    cmd = f"{sys.executable} -c \"[print(i) for i in range(2000)]\""
    result = LocalBackend().run(launch(cmd, tmp_path), shipper.put, AbortSignal())
    shipper.close()
    assert result.ok
    assert client.lines == [str(i) for i in range(2000)]
    assert len(client.logs) < 200  # batched, not one message per line


def test_shipper_latency_is_low_while_the_job_runs(tmp_path):
    client = FakeClient()
    shipper = LogShipper(client, "p")
    t0 = time.monotonic()
    cmd = f"{sys.executable} -c \"import time; print('first', flush=True); time.sleep(1.0); print('second')\""
    result = LocalBackend().run(launch(cmd, tmp_path), shipper.put, AbortSignal())
    shipper.close()
    assert result.ok and client.lines == ["first", "second"]
    (t_first, _), (t_second, _) = client.logs
    assert t_second - t_first > 0.8  # 'first' was shipped while the job still slept
    assert t_first - t0 < 1.0


def test_shipper_goes_quiet_when_refused():
    client = FakeClient()
    client.cancel()
    shipper = LogShipper(client, "p")
    for i in range(10):
        shipper.put(str(i))
    shipper.close()
    assert shipper.refused.is_set() and client.logs == []


class RecordingAbort(AbortSignal):
    """An abort signal that remembers how long the supervisor waited each time."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def test_supervision_checks_a_young_job_often_and_an_old_one_at_the_tick(tmp_path):
    abort = RecordingAbort()
    backend = LocalBackend(tick=0.05)
    result = backend.run(launch("sleep 0.6", tmp_path), collect()[1], abort)
    assert result.exit_codes == [0]
    assert abort.waits[0] <= 0.002  # a 5 ms job is seen ending within a couple of ms, not a whole tick
    assert max(abort.waits) == 0.05  # a job older than 0.5 s is checked at the tick, no more often
    assert len(abort.waits) < 100  # and the young phase does not spin (a busy loop would be thousands)
