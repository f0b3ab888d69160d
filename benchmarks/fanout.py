"""Fan-out in one client process: N mapped no-op remote-function tasks on the local colony (issue #14).

Each task runs ``noop(i)`` remotely (a function-form task, as ``square.map(range(N))``
in a Prefect flow) and must return its own input. The N tasks run at once on N
threads of one process, which is what Prefect's thread-pool task runner and an
Airflow worker running mapped tasks in threads do; they share one Colonies client
and one CFS (``pollinator.run.shared``).

Printed beside each other, each mode in a fresh child process so its peak RSS is its own:

* one at a time: the same N jobs in a row; its median job time is "a single job's time";
* fan-out: all N at once.

Capacity bound = ceil(N / slots) x single job time, slots = executors x max jobs each.
Targets: N/N correct, client peak RSS <= 300 MB, fan-out wall <= 1.5x the capacity bound.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def noop(i: int) -> dict:
    return {"i": i}


def child(mode: str, n: int, name: str) -> None:
    """One mode in this process; prints one JSON line."""
    from pollinator.config import Settings
    from pollinator.run import remote_function_job

    settings = Settings.from_env(need_s3=True)

    spans: list[tuple[float, float, float]] = []  # server times: submitted, started, ended

    def one(i: int) -> tuple[bool, float]:
        t0 = time.perf_counter()
        with remote_function_job(settings, noop, (i,), name=name, walltime=120) as job:
            result = job.run()
        if result.submitted_at and result.started_at and result.ended_at:
            spans.append((result.submitted_at.timestamp(), result.started_at.timestamp(),
                          result.ended_at.timestamp()))
        return result.return_value == {"i": i}, time.perf_counter() - t0

    t0 = time.perf_counter()
    if mode == "fanout":
        with ThreadPoolExecutor(max_workers=n) as pool:
            outcomes = list(pool.map(one, range(n)))
    else:
        outcomes = [one(i) for i in range(n)]
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_mb = usage.ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"mode": mode, "n": n, "correct": sum(ok for ok, _ in outcomes), "wall": wall,
                      "median_job": statistics.median(t for _, t in outcomes), "rss_mb": rss_mb,
                      "cpu": usage.ru_utime + usage.ru_stime, **executor_side(spans)}))


def executor_side(spans: list[tuple[float, float, float]]) -> dict:
    """Where a job's time went on the colony's side: queued, executing, and how many ran at once."""
    if not spans:
        return {}
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return {"queued": statistics.median(s - q for q, s, _ in spans),
            "executing": statistics.median(e - s for _, s, e in spans), "peak_running": peak}


def run_child(env: dict[str, str], mode: str, n: int, name: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--name", name],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="tasks mapped (default 100)")
    ap.add_argument("--max-jobs", type=int, default=0,
                    help="jobs each local executor runs at once (default: the machine's cores shared out between "
                         "the executors, at least 1: with more slots than cores each job's time grows with the "
                         "number running and the capacity bound no longer holds)")
    ap.add_argument("--child", choices=["fanout", "serial"], help=argparse.SUPPRESS)
    ap.add_argument("--name", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n, args.name)
        return

    from pollinator.dev.colony import DEFAULT_EXECUTORS, LocalColony

    if args.max_jobs <= 0:
        args.max_jobs = max(1, (os.cpu_count() or 1) // len(DEFAULT_EXECUTORS))
    with tempfile.TemporaryDirectory(prefix="pollinator-fanout-") as tmp:
        colony = LocalColony(Path(tmp) / "colony", port=None, max_jobs=args.max_jobs)
        env = colony.start()
        try:
            name = "fanout-" + os.urandom(3).hex()
            run_child(env, "serial", 2, name)  # warm-up: bucket, labels, bytecode
            serial = run_child(env, "serial", args.n, name)
            fanout = run_child(env, "fanout", args.n, name)
        finally:
            colony.stop()

    slots = len(DEFAULT_EXECUTORS) * args.max_jobs
    single = serial["median_job"]
    bound = math.ceil(args.n / slots) * single
    print(f"fanout: N={args.n} no-op remote-function tasks, {len(DEFAULT_EXECUTORS)} local executors x "
          f"{args.max_jobs} slots = {slots} slots; {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"  one at a time : {serial['correct']}/{serial['n']} correct, wall {serial['wall']:.2f} s, "
          f"single job {single * 1000:.0f} ms median, client peak RSS {serial['rss_mb']:.0f} MB, "
          f"client CPU {serial['cpu']:.1f} s")
    print(f"  fan-out       : {fanout['correct']}/{fanout['n']} correct, wall {fanout['wall']:.2f} s, "
          f"client peak RSS {fanout['rss_mb']:.0f} MB, client CPU {fanout['cpu']:.1f} s "
          f"({fanout['cpu'] / fanout['wall']:.2f} cores)")
    for label, m in (("one at a time", serial), ("fan-out", fanout)):
        if "executing" in m:
            print(f"  colony side   : {label}: median queued {m['queued'] * 1000:.0f} ms, executing "
                  f"{m['executing'] * 1000:.0f} ms (assign -> close), at most {m['peak_running']} running at once")
    print(f"  capacity bound: ceil({args.n}/{slots}) x {single:.3f} s = {bound:.2f} s; "
          f"fan-out wall / bound = {fanout['wall'] / bound:.2f}x")
    ok = fanout["correct"] == args.n and serial["correct"] == args.n
    print(f"  targets       : {args.n}/{args.n} correct [{'met' if ok else 'MISSED'}], peak RSS <= 300 MB "
          f"[{'met' if fanout['rss_mb'] <= 300 else 'MISSED'}], wall <= 1.5x bound "
          f"[{'met' if fanout['wall'] <= 1.5 * bound else 'MISSED'}]")
    if not ok:
        sys.exit(1)  # wrong results are a bug, not a slow machine


if __name__ == "__main__":
    main()
