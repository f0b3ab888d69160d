"""Counters the reliability tests record, for ``benchmarks/reliability_summary.py``.

Each test adds what it did (faults injected, faults survived, bad inputs tried
and refused, files checked and lost, secret scans and leaks). Loaded as a
pytest plugin (``-p rel_tally``, as the summary does), it also counts every test's
outcome in the session, wherever the test lives (a conftest's hooks would only see
its own directory's tests), and writes everything as JSON to
``$POLLINATOR_RELIABILITY_REPORT`` when that is set.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

REPORT_ENV = "POLLINATOR_RELIABILITY_REPORT"
KEYS = ("faults_injected", "faults_survived", "bad_inputs_tried", "bad_inputs_refused", "files_checked",
        "files_lost", "secret_scans", "secrets_leaked", "jobs_run", "log_lines_checked", "log_lines_lost",
        "results_checked", "results_lost", "processes_checked", "extra_runs", "walltime_scenarios",
        "walltime_ended_once", "slurm_fault_scenarios")

_lock = threading.Lock()
_counts: Counter[str] = Counter({k: 0 for k in KEYS})
_notes: dict[str, object] = {}
_outcomes: Counter[str] = Counter()


def add(key: str, n: int = 1) -> None:
    if key not in KEYS:
        raise KeyError(key)
    with _lock:
        _counts[key] += n


def note(key: str, value: object) -> None:
    with _lock:
        _notes[key] = value


def snapshot() -> dict[str, object]:
    with _lock:
        return {"counts": dict(_counts), "notes": dict(_notes)}


def write_report(outcomes: dict[str, int]) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    data = snapshot()
    data["tests"] = outcomes
    Path(path).write_text(json.dumps(data, indent=2, default=str))


def pytest_runtest_logreport(report) -> None:  # pytest hook (plugin mode)
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        kind = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        _outcomes[kind] += 1


def pytest_sessionfinish(session, exitstatus) -> None:  # pytest hook (plugin mode)
    write_report(dict(_outcomes))
