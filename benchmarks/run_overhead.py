"""Run-pipeline overhead on a local colony: log latency (p50/p99) and a warm no-op job end to end.

Targets (issue #5): log latency p50 <= 0.3 s; warm `echo` job end to end <= 0.4 s.
Baseline measured in the same run: a bare submit -> SUCCESS round trip with our
client and no ColonyFS work (what any client must pay), so the pipeline's own
overhead is the difference. For reference, the Go CLI's `function submit --follow`
of a hello world takes 1.06 s against a real server (it polls logs every 500 ms).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pollinator.colonies.models import Conditions, FunctionSpec
from pollinator.dev.colony import LocalColony
from pollinator.run import Job

# conditions the ColonyOS executors (and the local colony's strict executors) accept
EXECUTOR_READY = dict(nodes=1, processespernode=1, cpu="1000m", mem="1000Mi", walltime=61)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bare_round_trip(settings, n):
    times = []
    with settings.client() as client:
        for _ in range(n):
            spec = FunctionSpec(funcname="execute", kwargs={"cmd": "true", "args": [], "docker-image": ""},
                                maxexectime=60, maxwaittime=-1, maxretries=1,  # what strict executors accept
                                conditions=Conditions(colonyname=settings.colony_name,
                                                      executortype="container-executor", **EXECUTOR_READY))
            t0 = time.perf_counter()
            pid = client.submit(spec).processid
            while client.get_process(pid).state < 2:
                time.sleep(0.005)
            times.append(time.perf_counter() - t0)
    return times


def warm_job(settings, n, tmp):
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with Job.inline(settings, name="bench-echo", cmd="echo hello", result_dir=Path(tmp) / "r") as job:
            job.run()
        times.append(time.perf_counter() - t0)
    return times


def cli_run_follow(env, n, tmp):
    """`pollinator run --follow` of an echo project, as a user types it (includes Python start-up).

    Bytecode is allowed to be cached (an installed package has it; a PYTHONDONTWRITEBYTECODE in the
    caller's environment would make every run recompile our modules) and one warm-up run writes it.
    """
    import subprocess

    proj = Path(tmp) / "cli-echo"
    (proj / "cfs" / "src").mkdir(parents=True, exist_ok=True)
    (proj / "cfs" / "data").mkdir(parents=True, exist_ok=True)
    (proj / "project.yaml").write_text("projectname: cli-echo\nconditions:\n  executorNames: [dev-k8s]\n"
                                       "  walltime: 60\nenvironment:\n  cmd: echo hello\n")
    full = {**os.environ, **env}
    full.pop("PYTHONDONTWRITEBYTECODE", None)
    cli = [sys.executable, "-m", "pollinator.cli"]  # what the console script runs
    subprocess.run(cli + ["run", "--follow"], cwd=proj, env=full, check=True, capture_output=True)  # warm-up
    startup, total, bare = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=full, check=True, capture_output=True)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(cli + ["--version"], env=full, check=True, capture_output=True)
        startup.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(cli + ["run", "--follow"], cwd=proj, env=full, check=True, capture_output=True)
        total.append(time.perf_counter() - t0)
    return bare, startup, total


def log_latency(settings, lines):
    src = f"import time\nfor i in range({lines}):\n    print(repr(time.time()), flush=True)\n    time.sleep(0.05)\n"
    lat = []
    with tempfile.TemporaryDirectory() as d:
        Path(d, "emit.py").write_text(src)
        with Job.inline(settings, name="bench-logs", cmd="python3", source="emit.py", src_dir=Path(d)) as job:
            def on_log(text):
                try:
                    lat.append(time.time() - float(text))
                except ValueError:
                    pass
            job.run(on_log=on_log)
    return lat


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--cli-runs", type=int, default=9, help="`pollinator run --follow` invocations timed")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as data:
        colony = LocalColony(Path(data), max_jobs=4)
        colony.start()
        try:
            settings = colony.settings()
            bare_round_trip(settings, 3)
            warm_job(settings, 2, data)  # warm up caches and connections
            bare = bare_round_trip(settings, args.jobs)
            warm = warm_job(settings, args.jobs, data)
            lat = log_latency(settings, args.lines)
            python_bare, startup, cli = cli_run_follow(colony.env(), args.cli_runs, data)
        finally:
            colony.stop()
    print(f"baseline  bare submit->SUCCESS (no CFS)   median {statistics.median(bare)*1000:7.1f} ms")
    print(f"pipeline  warm echo job end to end        median {statistics.median(warm)*1000:7.1f} ms"
          f"   p95 {pct(warm, .95)*1000:7.1f} ms   target <= 400 ms   Go CLI: 1060 ms")
    print(f"pipeline  overhead over baseline          median "
          f"{(statistics.median(warm)-statistics.median(bare))*1000:7.1f} ms")
    print(f"cli       `pollinator run --follow` echo  median {statistics.median(cli)*1000:7.1f} ms"
          f"   target <= 400 ms   Go CLI: 1060 ms   (`pollinator --version` alone: "
          f"{statistics.median(startup)*1000:.0f} ms; baseline `python -c pass`: "
          f"{statistics.median(python_bare)*1000:.0f} ms)")
    print(f"logs      executor -> client latency      p50 {pct(lat, .5)*1000:7.1f} ms   p99 {pct(lat, .99)*1000:7.1f} ms"
          f"   target p50 <= 300 ms   ({len(lat)} lines)")


if __name__ == "__main__":
    main()
