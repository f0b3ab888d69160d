"""The Colonies server dies while a job ends (issue 16): the result and the close wait for it, nothing is lost.

The real parts: a private local colony (server process + executor process + moto S3); the server is
SIGKILLed while the job still runs and restarted once the executor holds the job's ending in its journal.
"""

from __future__ import annotations

import hashlib
import time

import pytest

import rel_tally
from pollinator.colonies.models import ProcessState
from pollinator.run import Job


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_server_down_at_job_end_keeps_result_and_close(private_colony, tmp_path):
    colony = private_colony(("rel-end",))
    flag = tmp_path / "finish-now"
    job = Job.inline(colony.settings, name="rel-job-end", executor_names=["rel-end"], walltime=600,
                     result_dir=tmp_path / "res",
                     cmd=f"sh -c 'echo started; while [ ! -e {flag} ]; do sleep 0.05; done; "
                         "head -c 3145728 /dev/urandom > $POLLINATOR_RESULT_DIR/big.bin; "
                         "sha256sum $POLLINATOR_RESULT_DIR/big.bin; echo ended'")
    pid = job.submit()
    wait_for(lambda: any("started" in ln.message for ln in job.client.get_logs(pid)), 60, what="the job to start")
    colony.kill("server")
    rel_tally.add("faults_injected")
    flag.touch()  # the job ends while the server is down
    journal = colony.colony.data_dir / "executors" / "rel-end" / "journal"
    wait_for(lambda: journal.is_dir() and any(journal.glob("*.json")), 60,
             what="the executor to journal the ending it cannot deliver")
    colony.restart_server()
    process = job.wait(timeout=120, poll=0.2)
    logs = "".join(ln.message for ln in job.client.get_logs(pid))
    result = job.finish() if process.state == ProcessState.SUCCESS else None
    big = tmp_path / "res" / "big.bin"
    digest = hashlib.sha256(big.read_bytes()).hexdigest() if big.exists() else ""
    rel_tally.add("results_checked")
    rel_tally.add("results_lost", 0 if digest and digest in logs else 1)
    rel_tally.add("processes_checked")
    rel_tally.add("extra_runs", max(0, logs.count("started") - 1))
    assert process.state == ProcessState.SUCCESS, (process.errors, logs)
    assert result is not None and digest and f"{digest}  " in logs, "the result reached ColonyFS intact"
    assert logs.count("started") == 1 and logs.count("ended") == 1  # ran once, closed once
    wait_for(lambda: not any(journal.glob("*.json")), 30, what="the journal to empty")
    rel_tally.add("faults_survived")
    job.close()
