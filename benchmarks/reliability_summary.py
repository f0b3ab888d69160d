"""Run the reliability tests and print what they proved.

    python benchmarks/reliability_summary.py [--jobs 200] [--lines 20] [-k EXPR]

Runs ``pytest tests/reliability`` in a subprocess with the load test at
``--jobs`` concurrent jobs (200 by default; CI runs 40), collects the
counters the tests record (tests/reliability/rel_tally.py) and prints:
faults injected and survived, bad inputs tried and refused, files lost
(must be 0), secrets leaked (must be 0), job results lost and runs beyond
what the server asked (both must be 0; tests/executor/test_exactly_once.py),
the walltime scenarios (tests/executor/test_walltime_e2e.py: a job past its
walltime ends FAILED in one run; slow staging does not use the walltime up),
the same faults on a one-node Slurm where slurmctld is installed
(tests/slurm/test_slurm_faults.py: executor killed or stalled while its Slurm
job runs or waits, S3 down at job end; skipped without Slurm),
log lines lost (must be 0), plus the load figures (duration,
peak RSS of the client, server, S3 and executors). Exits non-zero if any
test failed, a file was lost or a secret leaked.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOB_END_TESTS = ("executor/test_exactly_once.py", "executor/test_walltime_e2e.py", "slurm/test_slurm_faults.py")
"""The executor's job endings under S3/Colonies outages and past their walltime (issue 16); they count
results and runs too."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="concurrent jobs in the load test")
    parser.add_argument("--lines", type=int, default=20, help="numbered log lines each load job prints")
    parser.add_argument("-k", default="", help="pytest -k expression (default: every reliability test)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pollinator-reliability-") as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "POLLINATOR_RELIABILITY_REPORT": str(report),
               "POLLINATOR_LOAD_JOBS": str(args.jobs), "POLLINATOR_LOAD_LINES": str(args.lines)}
        # rel_tally as a plugin counts the outcomes of every selected test, not only tests/reliability's
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "reliability"),
                                                          env.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "rel_tally",
               str(ROOT / "tests" / "reliability"),
               *[str(ROOT / "tests" / name) for name in JOB_END_TESTS]]
        if args.k:
            cmd += ["-k", args.k]
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        if not report.exists():
            print("no report was written (pytest failed before the session ended)", file=sys.stderr)
            return 1
        data = json.loads(report.read_text())

    c, notes, tests = data["counts"], data["notes"], data["tests"]
    rows = [
        ("tests passed / failed / xfailed / skipped",
         f"{tests.get('passed', 0)} / {tests.get('failed', 0)} / {tests.get('xfailed', 0)} / {tests.get('skipped', 0)}"),
        ("faults injected", c["faults_injected"]),
        ("faults survived", c["faults_survived"]),
        ("bad inputs tried", c["bad_inputs_tried"]),
        ("bad inputs refused", c["bad_inputs_refused"]),
        ("files checked", c["files_checked"]),
        ("files lost (must be 0)", c["files_lost"]),
        ("results checked (job endings under outages)", c.get("results_checked", 0)),
        ("results lost (must be 0)", c.get("results_lost", 0)),
        ("processes checked for runs per attempt", c.get("processes_checked", 0)),
        ("runs beyond what the server asked (must be 0)", c.get("extra_runs", 0)),
        ("walltime scenarios (past it, slow staging, dead executor)", c.get("walltime_scenarios", 0)),
        ("Slurm fault scenarios (killed/stalled executor, S3 down; one-node Slurm)",
         c.get("slurm_fault_scenarios", 0)),
        ("jobs past their walltime ended FAILED in one run", c.get("walltime_ended_once", 0)),
        ("log lines checked", c["log_lines_checked"]),
        ("log lines lost (must be 0)", c["log_lines_lost"]),
        ("secret scans (texts and files)", c["secret_scans"]),
        ("secrets leaked (must be 0)", c["secrets_leaked"]),
        ("wall time of the run", f"{elapsed:.0f} s"),
    ]
    load = notes.get("load") or {}
    if load:
        rows += [
            (f"load: {load['jobs']} jobs x {load['lines_per_job']} lines", f"{load['seconds']} s "
             f"({load['jobs_per_second']} jobs/s, submit {load['submit_seconds']} s)"),
        ]
        rows += [(f"load: peak RSS {k.removesuffix('_peak_rss_mib')}", f"{v} MiB")
                 for k, v in load.items() if k.endswith("_peak_rss_mib")]
    if "executor_death_outcome" in notes:
        rows.append(("executor killed mid-job -> process", notes["executor_death_outcome"]))
    width = max(len(r[0]) for r in rows)
    print()
    print("Pollinator reliability summary")
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    bad = (proc.returncode != 0 or c["files_lost"] or c["secrets_leaked"] or c["log_lines_lost"]
           or c.get("results_lost", 0) or c.get("extra_runs", 0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
