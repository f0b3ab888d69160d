"""How many PollinatorTriggers can one triggerer event loop follow?

Starts a local colony, submits N processes that each print a few lines over
``--seconds`` seconds, then runs N ``PollinatorTrigger.run()`` coroutines
concurrently in ONE event loop (as Airflow's triggerer does) until every one
has yielded its single event. Prints wall time, CPU seconds of this process
(the "triggerer") and its peak RSS, against the targets for N=1000:
<= 1 core on average and <= 300 MB.

    python benchmarks/trigger_scale.py            # N=100
    python benchmarks/trigger_scale.py --n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
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


def submit_all(settings, n: int, seconds: float) -> list[str]:
    """N processes spread over both executors, each printing a line per second."""
    from concurrent.futures import ThreadPoolExecutor

    from pollinator.run import Job

    lines = max(1, int(seconds))
    cmd = f"for i in $(seq 1 {lines}); do echo line $i; sleep {seconds / lines:.2f}; done"

    def one(i: int) -> str:
        job = Job.inline(settings, name=f"bench-{i % 20}", cmd=cmd, executor_names=["dev-hpc", "dev-k8s"],
                         walltime=600, max_retries=0)
        try:
            return job.submit()
        finally:
            job.close()

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


async def follow_all(process_ids: list[str], poll_interval: float) -> list[dict]:
    from pollinator_airflow.triggers import PollinatorTrigger

    async def one(pid: str) -> dict:
        trigger = PollinatorTrigger(process_id=pid, poll_interval=poll_interval)
        events = [event.payload async for event in trigger.run()]
        assert len(events) == 1, events
        return events[0]

    return await asyncio.gather(*(one(pid) for pid in process_ids))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each remote process runs")
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--max-jobs", type=int, default=0, help="job slots per executor (default: enough for N)")
    args = parser.parse_args()

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="pollinator-bench-airflow-"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    import logging

    logging.getLogger("pollinator_airflow").setLevel(logging.WARNING)

    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` must still stop the colony
    from pollinator.dev.colony import LocalColony

    colony = LocalColony(Path(tempfile.mkdtemp(prefix="pollinator-bench-")), port=None,
                         max_jobs=args.max_jobs or (args.n // 2 + 1))
    env = colony.start()
    os.environ.update(env)  # AIRFLOW_CONN_COLONIES_DEFAULT for the triggers
    try:
        import pollinator_airflow.triggers  # noqa: F401 - import cost is not the loop's

        t0 = time.monotonic()
        pids = submit_all(colony.settings(), args.n, args.seconds)
        print(f"submitted {len(pids)} processes in {time.monotonic() - t0:.1f} s", flush=True)
        from pollinator_airflow.triggers import PollinatorTrigger

        cpu0, wall0 = _cpu(), time.monotonic()
        events = asyncio.run(follow_all(pids, args.poll_interval))
        cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
        rss = _peak_rss_mb()
        states: dict[str, int] = {}
        for e in events:
            states[e["status"]] = states.get(e["status"], 0) + 1
        cores = cpu / wall if wall else 0.0
        print(json.dumps({"n": args.n, "events": states, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                          "avg_cores": round(cores, 2), "peak_rss_mb": round(rss, 1)}))
        print(f"CPU: {cpu:.1f} s over {wall:.1f} s = {cores:.2f} cores (target <= {TARGET_CORES} for N=1000) "
              f"{'OK' if cores <= TARGET_CORES else 'OVER'}")
        print(f"peak RSS: {rss:.0f} MB (target <= {TARGET_RSS_MB:.0f} MB) {'OK' if rss <= TARGET_RSS_MB else 'OVER'}")
        return 0 if states.get("success") == args.n else 1
    finally:
        colony.stop()


if __name__ == "__main__":
    sys.exit(main())
