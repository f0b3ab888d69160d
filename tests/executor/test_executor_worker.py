"""LocalExecutor's assign loop with a fake server: 404s, errors, slots, stop."""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import SecretStr

from executor_fakes import FakeClient, process
from pollinator.colonies import crypto
from pollinator.config import Settings
from pollinator.errors import NotFound, Unreachable
from pollinator.executor import LocalExecutor


class FakeAssign(FakeClient):
    """Hands out queued processes; 404 after a short wait when empty; can fail a few times."""

    def __init__(self, processes: list, fail_first: int = 0):
        super().__init__()
        self.queue = list(processes)
        self.fail_first = fail_first
        self.assign_calls = 0
        self.max_concurrent_seen = 0

    def assign(self, timeout: int = 10, **_: Any):
        self.assign_calls += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            raise Unreachable("connection refused")
        if self.queue:
            return self.queue.pop(0)
        time.sleep(0.05)
        raise NotFound("No process available for assignment", status=404)

    def close(self) -> None:
        pass


class PerProcess(FakeClient):
    """Records closes per process id (FakeClient tracks one process)."""

    def __init__(self) -> None:
        super().__init__()
        self.closes: dict[str, tuple] = {}

    def close_successful(self, process_id: str, out=None):
        self.closes[process_id] = ("success", out or [])

    def close_failed(self, process_id: str, errors):
        self.closes[process_id] = ("failed", list(errors))

    def close(self) -> None:
        pass


def make(tmp_path, fake_assign, job_client, **kw) -> LocalExecutor:
    settings = Settings(host="127.0.0.1", port=1, colony_name="dev", prvkey=SecretStr(crypto.generate_private_key()))
    ex = LocalExecutor(settings, name="t", fs_dir=tmp_path / "fs", executor_prvkey=crypto.generate_private_key(),
                       cancel_poll=0.2, **kw)
    ex._poll_clients = [fake_assign] * ex.poll_lanes
    ex.client = job_client
    ex.executor_id = "exec-id"
    return ex


def run_until(ex: LocalExecutor, predicate, timeout: float = 10) -> None:
    thread = threading.Thread(target=ex.run_forever, daemon=True)
    thread.start()
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end:
        time.sleep(0.02)
    ex.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_runs_jobs_concurrently_up_to_max_jobs(tmp_path):
    procs = [process({"cmd": "sleep 0.5"}, pid=f"{i:064d}") for i in range(4)]
    jobs = PerProcess()
    ex = make(tmp_path, FakeAssign(procs), jobs, max_jobs=2)
    t0 = time.monotonic()
    run_until(ex, lambda: len(jobs.closes) == 4)
    elapsed = time.monotonic() - t0
    assert all(v == ("success", []) for v in jobs.closes.values())
    assert 0.9 < elapsed < 3.0  # two rounds of two


def test_transient_errors_back_off_and_recover(tmp_path):
    jobs = PerProcess()
    ex = make(tmp_path, FakeAssign([process({"cmd": "true"})], fail_first=2), jobs)
    run_until(ex, lambda: len(jobs.closes) == 1)
    assert list(jobs.closes.values()) == [("success", [])]


def test_stop_kills_running_jobs_and_closes_them_failed(tmp_path):
    jobs = PerProcess()
    ex = make(tmp_path, FakeAssign([process({"cmd": "sleep 60"})]), jobs)
    t0 = time.monotonic()
    run_until(ex, lambda: bool(ex.running_jobs()) and time.monotonic() - t0 > 0.5)
    assert time.monotonic() - t0 < 8
    (kind, errors), = jobs.closes.values()
    assert kind == "failed" and errors[0].startswith("executor stopped")


def test_a_new_attempt_stops_the_old_one_first_and_runs_in_its_own_dir(tmp_path):
    """The server re-queued a process and gave it to us again while its first attempt still runs here: the first
    is stopped (not closed: it is not ours any more) before the second starts, each in its own job dir."""
    pid = "a" * 64
    first = process({"cmd": "echo $PROJECT_DIR > first.dir; sleep 60"}, pid=pid)
    second = process({"cmd": "echo $PROJECT_DIR > second.dir; echo second"}, pid=pid)
    second.retries = 1
    jobs = PerProcess()
    assign = FakeAssign([first])
    ex = make(tmp_path, assign, jobs, max_jobs=2)
    ex.cancel_poll = 60  # the state watcher stays out of it: only the new assignment stops the old attempt
    thread = threading.Thread(target=ex.run_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not list((tmp_path / "fs" / "jobs").glob("*-0/first.dir")) and time.monotonic() < deadline:
            time.sleep(0.02)
        jobs.retries = 1  # the server re-queued it...
        assign.queue.append(second)  # ...and gives it to us again
        while len(ex.finished) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        ex.stop()
        thread.join(10)
    # had the second run beside the first, its quick echo would have finished first
    assert ex.finished == [(pid, "process no longer assigned to this executor"), (pid, "success")]
    assert jobs.closes == {pid: ("success", [])}  # closed once, by the attempt that is the process's now


class RecordingStop(threading.Event):
    """The executor's stop event, remembering every wait it was asked for (and not blocking on long ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None) -> bool:
        if timeout is not None and timeout >= 0.5:
            self.waits.append(timeout)
            timeout = 0.001
        return super().wait(timeout)


def test_poll_back_off_after_an_outage_is_capped_at_a_few_seconds(tmp_path, caplog):
    from pollinator.executor.worker import MAX_POLL_BACKOFF

    jobs = PerProcess()
    ex = make(tmp_path, FakeAssign([process({"cmd": "true"})], fail_first=20), jobs)
    ex._stop = RecordingStop()
    ex.policy.stop = ex._stop
    run_until(ex, lambda: len(jobs.closes) == 1)
    assert list(jobs.closes.values()) == [("success", [])]
    backoffs = [float(r.getMessage().rsplit("retrying in ", 1)[1].split()[0]) for r in caplog.records
                if r.getMessage().startswith("assign failed")]
    assert len(backoffs) == 20 and max(backoffs) == MAX_POLL_BACKOFF <= 5.0
    assert all(w in ex._stop.waits for w in backoffs)  # and those are the waits it made
