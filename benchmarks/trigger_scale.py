"""How many PollinatorTriggers can one triggerer event loop follow?

Starts a local colony, submits N processes that each print a few lines over
``--seconds`` seconds, then runs N ``PollinatorTrigger.run()`` coroutines
concurrently in ONE event loop (as Airflow's triggerer does) until every one
has yielded its single event. Every remote line goes through the trigger's
logger into a log file, as in a triggerer. Prints wall time, CPU seconds of
this process (the "triggerer") and its peak RSS, against the targets for
N=1000: <= 1 core on average and <= 300 MB. The baseline in the same run is the
idle process before the triggers start (its RSS, and zero CPU).

By default the processes are played back by ``light_executor.py`` (assign,
addlog, close over the real server, no subprocess per job) so the figure is
the trigger's; ``--executor local`` runs them as real shell jobs on the local
colony's two executors instead (fine for N=100; at N=1,000 on a small machine
that measures the executors).

    python benchmarks/trigger_scale.py            # N=100
    python benchmarks/trigger_scale.py --n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_CORES = 1.0
TARGET_RSS_MB = 300.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def submit_all(settings, n: int, seconds: float, lines: int, executors: list[str]) -> list[str]:
    """N processes, each printing ``lines`` lines over ``seconds`` (the light executor plays the same)."""
    from concurrent.futures import ThreadPoolExecutor

    from pollinator.run import Job

    cmd = f"for i in $(seq 1 {lines}); do sleep {seconds / lines:.2f}; echo line $i of {lines}; done"

    def one(i: int) -> str:
        job = Job.inline(settings, name=f"bench-{i % 20}", cmd=cmd, executor_names=executors,
                         walltime=600, max_retries=1)
        try:
            return job.submit()
        finally:
            job.close()

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


REQUESTS = {"n": 0}


def count_requests() -> None:
    """Count the triggers' requests (CPU per request is the figure that scales)."""
    from pollinator.colonies.client import AsyncColoniesClient

    post = AsyncColoniesClient._post

    async def counted(self, *args, **kwargs):
        REQUESTS["n"] += 1
        return await post(self, *args, **kwargs)

    AsyncColoniesClient._post = counted


async def follow_all(process_ids: list[str], poll_interval: float) -> list[dict]:
    from pollinator_airflow.triggers import PollinatorTrigger

    async def one(pid: str) -> dict:
        trigger = PollinatorTrigger(process_id=pid, poll_interval=poll_interval)
        events = [event.payload async for event in trigger.run()]
        assert len(events) == 1, events
        return events[0]

    results = await asyncio.gather(*(one(pid) for pid in process_ids), return_exceptions=True)
    return [r if isinstance(r, dict) else {"status": f"raised {type(r).__name__}: {r}"} for r in results]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each remote process runs")
    parser.add_argument("--lines", type=int, default=4, help="log lines each process prints")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--executor", choices=("light", "local"), default="light",
                        help="who runs the processes: light_executor.py (default) or the colony's local executors")
    parser.add_argument("--max-jobs", type=int, default=0, help="job slots per local executor (default: enough for N)")
    args = parser.parse_args()
    args.lines = max(1, args.lines)

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="pollinator-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` must still stop the colony
    from pollinator.dev.colony import LocalColony

    data_dir = Path(tempfile.mkdtemp(prefix="pollinator-bench-"))
    light = args.executor == "light"
    colony = LocalColony(data_dir, port=None, executors=() if light else ("dev-hpc", "dev-k8s"),
                         max_jobs=args.max_jobs or (args.n // 2 + 1))
    env = colony.start()
    os.environ.update(env)  # AIRFLOW_CONN_COLONIES_DEFAULT for the triggers
    driver = None
    try:
        import pollinator_airflow.triggers  # noqa: F401 - import cost is not the loop's

        # The remote lines go where a triggerer's go: through the trigger's (structlog) logger, as Airflow
        # configures it, into a file: stdout and stderr point at it while the triggers run.
        line_log = data_dir / "trigger-lines.log"

        executors = ["dev-hpc", "dev-k8s"]
        if light:
            from light_executor import NAME

            executors = [NAME]
            driver = subprocess.Popen([sys.executable, str(Path(__file__).with_name("light_executor.py")),
                                       "--count", str(args.n), "--seconds", str(args.seconds),
                                       "--lines", str(args.lines)],
                                      env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
            assert driver.stdout is not None and driver.stdout.readline().strip() == "ready", "light executor"

        t0 = time.monotonic()
        pids = submit_all(colony.settings(), args.n, args.seconds, args.lines, executors)
        print(f"submitted {len(pids)} processes in {time.monotonic() - t0:.1f} s "
              f"({'light executor' if light else 'local executors'})", flush=True)
        base_rss = _peak_rss_mb()
        count_requests()

        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        log_fd = os.open(line_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        try:
            cpu0, wall0 = _cpu(), time.monotonic()
            events = asyncio.run(follow_all(pids, args.poll_interval))
            cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(log_fd)
        rss = _peak_rss_mb()
        logged = sum(1 for text in line_log.read_text(errors="replace").splitlines() if " of " in text
                     and "line " in text)
        states: dict[str, int] = {}
        for e in events:
            states[e["status"]] = states.get(e["status"], 0) + 1
        cores = cpu / wall if wall else 0.0
        print(json.dumps({"n": args.n, "executor": args.executor, "poll_interval": args.poll_interval,
                          "events": states, "lines_logged": logged, "lines_expected": args.n * args.lines,
                          "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "avg_cores": round(cores, 2),
                          "rss_before_mb": round(base_rss, 1), "peak_rss_mb": round(rss, 1),
                          "requests": REQUESTS["n"], "requests_per_s": round(REQUESTS["n"] / wall, 1),
                          "cpu_ms_per_request": round(cpu * 1000 / max(1, REQUESTS["n"]), 2)}))
        print(f"CPU: {cpu:.1f} s over {wall:.1f} s = {cores:.2f} cores (target <= {TARGET_CORES} for N=1000) "
              f"{'OK' if cores <= TARGET_CORES else 'OVER'}")
        print(f"peak RSS: {rss:.0f} MB, {base_rss:.0f} MB before the triggers started "
              f"(target <= {TARGET_RSS_MB:.0f} MB) {'OK' if rss <= TARGET_RSS_MB else 'OVER'}")
        print(f"remote lines in the trigger log: {logged} of {args.n * args.lines}")
        per_request = cpu / max(1, REQUESTS["n"])
        print(f"requests: {REQUESTS['n']} ({REQUESTS['n'] / wall:.0f}/s), {per_request * 1000:.2f} ms CPU each: one "
              f"core follows ~{args.poll_interval / 2 / per_request:.0f} quiet processes at poll_interval="
              f"{args.poll_interval:g} s (two requests per interval each)")
        return 0 if states.get("success") == args.n and logged == args.n * args.lines else 1
    finally:
        if driver is not None:
            try:
                driver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                driver.kill()
        colony.stop()


if __name__ == "__main__":
    sys.exit(main())
