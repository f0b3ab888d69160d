"""Load: N concurrent jobs through the local colony's two executors; every line of every job arrives."""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

import rel_tally
from pollinator.colonies.models import ProcessState
from pollinator.run import Job

N_JOBS = int(os.environ.get("POLLINATOR_LOAD_JOBS", "40"))
K_LINES = int(os.environ.get("POLLINATOR_LOAD_LINES", "20"))


def _peak_rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@pytest.mark.timeout(600)
def test_many_concurrent_jobs_complete_with_every_line(settings, local_colony):
    started = time.monotonic()
    jobs = [Job.inline(settings, name=f"rel-load-{i}", executor_names=["dev-k8s" if i % 2 else "dev-hpc"],
                       walltime=300, max_retries=1,
                       cmd=f"sh -c 'for i in $(seq 1 {K_LINES}); do echo job{i}-line$i; done'")
            for i in range(N_JOBS)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # submissions in parallel, as many callers would
        pids = list(pool.map(lambda j: j.submit(), jobs))
    submitted = time.monotonic()
    assert len(set(pids)) == N_JOBS

    def follow(index: int) -> tuple[int, list[str], str]:
        job = jobs[index]
        lines: list[str] = []
        result = job.run(on_log=lambda t: lines.append(t) if t.startswith(f"job{index}-") else None, timeout=500)
        job.close()
        return index, lines, result.state

    with ThreadPoolExecutor(max_workers=min(N_JOBS, 24)) as pool:
        outcomes = list(pool.map(follow, range(N_JOBS)))
    elapsed = time.monotonic() - started
    lost = 0
    for index, lines, state in outcomes:
        assert state == "SUCCESS"
        want = [f"job{index}-line{n}" for n in range(1, K_LINES + 1)]
        lost += len(set(want) - set(lines))
        assert lines == want, f"job {index}: {len(lines)} lines, expected {K_LINES} in order"
    with settings.client() as client:
        stuck = [p.processid for st in (ProcessState.WAITING, ProcessState.RUNNING)
                 for p in client.get_processes(st) if p.processid in set(pids)]
    assert not stuck, f"stuck processes: {stuck}"
    pids_of = local_colony.read_state().pids
    figures = {
        "jobs": N_JOBS, "lines_per_job": K_LINES, "seconds": round(elapsed, 2),
        "submit_seconds": round(submitted - started, 2), "jobs_per_second": round(N_JOBS / elapsed, 2),
        "client_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **{f"{name}_peak_rss_mib": round(_peak_rss_mib(pid), 1) for name, pid in pids_of.items()},
        "threads": psutil.Process().num_threads(),
    }
    rel_tally.note("load", figures)
    rel_tally.add("jobs_run", N_JOBS)
    rel_tally.add("log_lines_checked", N_JOBS * K_LINES)
    rel_tally.add("log_lines_lost", lost)
    print("load figures:", figures)


@pytest.mark.timeout(300)
def test_concurrent_jobs_of_one_project_on_one_executor(settings):
    jobs = [Job.inline(settings, name="rel-same-project", executor_names=["dev-hpc"], walltime=120, max_retries=1,
                       cmd=f"sh -c 'echo job{i}; echo {i} > $POLLINATOR_RESULT_DIR/r{i}.txt'") for i in range(24)]
    for job in jobs:
        job.submit()
    with ThreadPoolExecutor(max_workers=12) as pool:
        processes = list(pool.map(lambda j: j.wait(timeout=250, poll=0.3), jobs))
    for job in jobs:
        job.close()
    failed = {p.processid: (p.state, p.errors) for p in processes if p.state != ProcessState.SUCCESS}
    assert not failed, f"{len(failed)} of {len(jobs)} did not succeed: {failed}"
