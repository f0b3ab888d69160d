"""The launcher's exit record: the job's real exit status, whatever the executor said.

The Kube executor closes a process SUCCESS once its pod logs end, without
reading the container's exit code (``kube/pkg/executor/executor.go``); the HPC
executor closes SUCCESS for a COMPLETED Slurm job. So a run that used the
launcher (:mod:`pollinator.launcher`, marked by ``POLLINATOR_LAUNCHER`` in the
spec env) is judged by the record the launcher leaves in the run's result
label, ``.pollinator/exit.json``: a non-zero exit code, a record of another
process, or no record at all (the command was killed, or never started) turns
a SUCCESS into a failure carrying the real exit code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from pollinator.launcher import INTERNAL_DIR

LAUNCHER_ENV = "POLLINATOR_LAUNCHER"
"""Spec env variable naming the launcher's container path: this run writes an exit record."""


class ExitRecord(BaseModel):
    """One ``exit*.json`` written by the launcher."""

    exit_code: int
    complete: bool = False
    stage: str = "cmd"  # "cmd", or "init-cmd" when the init-cmd failed and the command never ran
    process_id: str = ""
    rank: str = "0"


def uses_launcher(spec: Any) -> bool:
    env = getattr(spec, "env", None) or {}
    return bool(env.get(LAUNCHER_ENV))


def read_records(cfs: Any, result_label: str) -> list[ExitRecord]:
    """Every exit record in ``<result_label>/.pollinator`` (rank 0's first); unreadable ones are skipped."""
    with tempfile.TemporaryDirectory(prefix="pollinator-exit-") as tmp:
        try:
            cfs.pull(f"{result_label.rstrip('/')}/{INTERNAL_DIR}", Path(tmp))
        except Exception:  # noqa: BLE001 - no such label is "no record", which check() reports
            return []
        records = []
        for path in sorted(Path(tmp).glob("exit*.json"), key=lambda p: (p.name != "exit.json", p.name)):
            try:
                records.append(ExitRecord.model_validate(json.loads(path.read_text(encoding="utf-8"))))
            except (ValueError, ValidationError, OSError):
                continue
    return records


def failure(records: list[ExitRecord], process_id: str) -> Optional[tuple[str, Optional[int]]]:
    """``(message, exit code)`` when the records show the run failed (``None``: it really succeeded)."""
    mine = [r for r in records if r.complete and (not r.process_id or r.process_id == process_id)]
    if not any(r.rank in ("0", "") for r in mine):
        return (f"no exit record from the command: it did not finish (killed, out of time, or never started), "
                f"although the executor closed process {process_id} SUCCESS", None)
    for record in mine:
        if record.exit_code != 0:
            what = "the init-cmd" if record.stage == "init-cmd" else "the command"
            rank = f" on rank {record.rank}" if record.rank not in ("0", "") else ""
            return (f"{what} exited with code {record.exit_code}{rank} (exit code {record.exit_code}); the "
                    f"executor closed process {process_id} SUCCESS anyway", record.exit_code)
    return None
