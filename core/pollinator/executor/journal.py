"""The executor's on-disk record of job endings not yet delivered.

A job that ran is worth more than the executor process watching it: when the
results cannot be uploaded or the close cannot reach the server, what is
still owed is written to ``<fs_dir>/journal/<process id>-<attempt>.json``
before anything is deleted. The entry says which dirs still have to reach
which ColonyFS labels and how the process is to be closed. A restarted
executor reads the journal and finishes the work (``LocalExecutor`` does it
at start); an entry is removed only once everything in it is delivered, or
the process is known to be someone else's now.

Writes are atomic (temp file + rename), so a crash leaves the old entry or
the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class PendingUpload(BaseModel):
    """One sync-dir mount whose files must still reach its label."""

    label: str
    dir: str
    """Relative to the entry's ``job_dir``, so the job dir can be moved to quarantine."""
    keep_local: bool = True


class PendingClose(BaseModel):
    """How the process is to be closed once the uploads are done."""

    ok: bool
    out: list[Any] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class JournalEntry(BaseModel):
    """Everything still owed for one attempt of one process."""

    process_id: str
    attempt: int
    """``Process.retries`` when this attempt was assigned: a re-queue makes a new attempt."""
    executor_id: str
    job_dir: str
    uploads: list[PendingUpload] = Field(default_factory=list)
    close: Optional[PendingClose] = None
    quarantined: bool = False
    """The uploads failed for good in the first run; the files wait in ``job_dir``."""
    closed: bool = False
    """The process was closed (possibly failed for the missing upload); only uploads remain."""

    @property
    def key(self) -> str:
        return f"{self.process_id}-{self.attempt}"


class Journal:
    """One JSON file per pending attempt under ``<fs_dir>/journal``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def write(self, entry: JournalEntry) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(entry.model_dump_json(indent=1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(entry.key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def holds(self, key: str) -> bool:
        """An entry for ``<process id>-<attempt>`` is pending."""
        return self._path(key).exists()

    def remove(self, entry: JournalEntry) -> None:
        self._path(entry.key).unlink(missing_ok=True)

    def pending(self) -> list[JournalEntry]:
        """Every readable entry, oldest first (an unreadable one is logged and left for a human)."""
        if not self.dir.is_dir():
            return []
        entries = []
        for path in sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                entries.append(JournalEntry.model_validate(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                log.error("journal entry %s cannot be read (%s); left in place", path, exc)
        return entries
