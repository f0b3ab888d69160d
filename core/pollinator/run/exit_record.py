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
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from pollinator.errors import ColoniesError, SyncError
from pollinator.run.returns import internal_label

LAUNCHER_ENV = "POLLINATOR_LAUNCHER"
"""Spec env variable naming the launcher's container path: this run writes an exit record."""
MAX_RECORD_BYTES = 4096


class ExitRecord(BaseModel):
    """One ``exit*.json`` written by the launcher."""

    exit_code: int
    complete: bool = False
    stage: str = "cmd"  # "cmd", or "init-cmd" when the init-cmd failed and the command never ran
    process_id: str = ""
    rank: str = "0"
    reason: str = ""  # why the launcher ended the job itself ("walltime exceeded (60 s)"); "" when it ended alone


def uses_launcher(spec: Any) -> bool:
    env = getattr(spec, "env", None) or {}
    return bool(env.get(LAUNCHER_ENV))


def read_records(client: Any, store: Any, result_label: str) -> list[ExitRecord]:
    """Every exit record in ``<result_label>/.pollinator`` (rank 0's first), read straight from S3.

    Malformed or oversized ones are skipped (:func:`failure` then reports the run as unfinished);
    a record that exists but cannot be fetched raises :class:`SyncError`: the outcome is unknown.
    """
    try:
        rows = client.get_files(internal_label(result_label)) or []
    except ColoniesError:  # no such label: "no record", which failure() reports
        return []
    records = []
    for row in sorted(rows, key=lambda r: (r.name != "exit.json", r.name)):
        if not (row.name.startswith("exit") and row.name.endswith(".json")) or not 0 < row.size <= MAX_RECORD_BYTES:
            continue
        try:
            raw = store.get_small(row.s3filename, row.size)
        except Exception as exc:  # noqa: BLE001 - S3 unreachable: unknown, not "no record" (that would fail a run)
            raise SyncError(f"cannot read the exit record {internal_label(result_label)}/{row.name}: {exc}") from exc
        try:
            records.append(ExitRecord.model_validate(json.loads(raw.decode("utf-8"))))
        except (ValueError, ValidationError):
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
            if record.reason:
                return (f"{record.reason}: the launcher stopped {what}{rank} (exit code {record.exit_code}); the "
                        f"executor closed process {process_id} SUCCESS anyway", record.exit_code)
            return (f"{what} exited with code {record.exit_code}{rank} (exit code {record.exit_code}); the "
                    f"executor closed process {process_id} SUCCESS anyway", record.exit_code)
    return None


def reasons(records: list[ExitRecord], process_id: str) -> list[str]:
    """Why the launcher ended this process's job itself (each reason once, rank 0's first); [] if it did not.

    A FAILED close from an executor that knows nothing of the launcher (the HPC executor's
    "Slurm job failed") does not say that the walltime ended the job: the record does.
    """
    mine = [r for r in records if r.complete and (not r.process_id or r.process_id == process_id)]
    return list(dict.fromkeys(r.reason for r in mine if r.reason))


def exit_code(records: list[ExitRecord], process_id: str) -> Optional[int]:
    """The first non-zero exit code this process recorded (rank 0's first), else rank 0's code, else None."""
    mine = [r for r in records if r.complete and (not r.process_id or r.process_id == process_id)]
    failing = [r.exit_code for r in mine if r.exit_code != 0]
    if failing:
        return failing[0]
    return next((r.exit_code for r in mine if r.rank in ("0", "")), None)
