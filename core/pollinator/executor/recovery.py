"""A restarted executor finishes what its earlier run still owed, from the journal.

For each entry (see ``journal`` and ``job_end``):

1. pending uploads are retried when the attempt is still the process's
   latest (``retries`` unchanged) - RUNNING on the executor that ran it, or
   already closed (typically FAILED because the upload had failed): results
   of a superseded attempt are not written over the newer attempt's;
2. a pending close is delivered unless the process was re-queued, given to
   another executor or cancelled meanwhile (then it is let go);
3. the entry and its quarantined files are removed once nothing is owed.

Closing needs the same executor key as before (``COLONIES_EXECUTOR_PRVKEY``);
an executor that registers a new key each start gets 403 and lets the close
go (the server re-queues the process at its maxexectime), but still uploads.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable, Optional

from pollinator.colonies.models import ProcessState
from pollinator.errors import ColoniesError, NotFound
from pollinator.executor.fs_mounts import CfsLike
from pollinator.executor.job_end import DELIVERED, PENDING, EndClient, EndPolicy, deliver_close, upload_with_retries
from pollinator.executor.journal import Journal, JournalEntry
from pollinator.executor.retrying import GaveUp

log = logging.getLogger(__name__)


def _upload_allowed(client: EndClient, entry: JournalEntry) -> Optional[bool]:
    """True/False, or None when the server cannot say now."""
    try:
        process = client.get_process(entry.process_id)
    except NotFound:
        return False
    except ColoniesError:
        return None
    if process is None or process.retries != entry.attempt:
        return False
    state = ProcessState(process.state)
    if state == ProcessState.RUNNING:
        return not process.assignedexecutorid or process.assignedexecutorid == entry.executor_id
    return state in (ProcessState.SUCCESS, ProcessState.FAILED)


def finish_entry(entry: JournalEntry, journal: Journal, client: EndClient, cfs: Optional[CfsLike],
                 policy: EndPolicy) -> str:
    """Deliver one entry; returns what happened (for the executor's log)."""
    job_dir = Path(entry.job_dir)
    if entry.uploads:
        allowed = _upload_allowed(client, entry)
        if allowed is None:
            return "kept: the server cannot be asked now"
        if not allowed:
            log.warning("results of %s attempt %d in %s are superseded (the process moved on); not uploaded",
                        entry.process_id, entry.attempt + 1, job_dir)
            entry.uploads = []
        elif cfs is None:
            return "kept: no S3 storage configured"
        else:
            def upload() -> None:
                for item in entry.uploads:
                    cfs.sync(job_dir / item.dir, item.label, item.keep_local)

            try:
                problem = upload_with_retries(upload, client, entry, policy)
            except GaveUp as gave:
                log.warning("results of %s not uploaded: %s", entry.process_id, gave.reason)
                problem = None
            if problem is not None:
                journal.write(entry)
                return f"kept: upload failed again ({problem})"
            log.info("results of process %s attempt %d uploaded from %s", entry.process_id, entry.attempt + 1,
                     job_dir)
            entry.uploads = []
        journal.write(entry)
    outcome = "nothing owed"
    if entry.close is not None and not entry.closed:
        verdict = deliver_close(client, entry, policy)
        if verdict == PENDING:
            return "kept: close not delivered"
        outcome = "closed" if verdict == DELIVERED else "let go (not ours any more)"
    journal.remove(entry)
    if entry.quarantined:
        shutil.rmtree(job_dir, ignore_errors=True)
    return outcome


def recover_pending(journal: Journal, client: EndClient, cfs_factory: Callable[[], Optional[CfsLike]],
                    policy: EndPolicy) -> None:
    for entry in journal.pending():
        if policy.stop is not None and policy.stop.is_set():
            return
        cfs = cfs_factory() if entry.uploads else None
        outcome = finish_entry(entry, journal, client, cfs, policy)
        log.info("journal: process %s attempt %d: %s", entry.process_id, entry.attempt + 1, outcome)
