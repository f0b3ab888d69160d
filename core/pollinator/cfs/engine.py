"""The ColonyFS sync engine: ``CFS``, interoperable with ``colonies fs sync``.

Model (the Go client's, ``pkg/fs``): a local directory is synced with a label;
every sub-directory ``a/b`` is its own label ``<label>/a/b``. A label's files
live as records in the Colonies server (label, name, size, SHA-256, S3 object)
and as bytes in S3 under a random 64-hex object name. A new local version is a
new revision (a new record and object); the server answers getfilesmsg with
the latest revision per name.

Sync semantics, exactly the Go ``CalcSyncPlans`` + ``ApplySyncPlan``:

* local-only files are uploaded, server-only files are downloaded — with
  **both** ``keep_local=True`` and ``keep_local=False`` (``keep_local`` does not
  turn a sync into a push: a server file missing locally is always fetched);
* a name on both sides with a different SHA-256 is a conflict:
  ``keep_local=True`` uploads the local file as a new revision,
  ``keep_local=False`` overwrites the local file with the server's bytes;
* nothing is ever deleted, on either side;
* sub-labels on the server without a local directory are downloaded into new
  sub-directories;
* the Go client also writes a ``.cfs`` marker (``{"label": ...}``) into every
  directory it syncs, so that a later ``colonies fs sync`` there needs no
  ``--label``. Sync itself never needs it (the label is always given), so we
  write it only when asked (``markers=True``: ``pollinator sync --label``,
  the same convenience): job inputs, pulled results and executor mounts hold
  the user's files only. A ``.cfs`` file already there is never synced;
* zero-byte files have no S3 object (the Go client skips S3 for them).

Where we differ on purpose: records we write carry no S3 credentials
(pycolonies style: ``server=host``, ``port=<int>``, empty keys) — the Go CLI
stores its access and secret key in every record; we read such records fine
and always use our own credentials. A local stat cache (see ``hashing``)
means a no-change re-sync reads no file. ``.pollinatorignore`` (gitignore
syntax) at the root of the synced directory excludes paths both ways.
Downloads go to a temp file in the target directory, are SHA-256-verified and
then renamed into place, so an interrupted sync never leaves a partial file.
A record whose label or name would leave the target directory makes the whole
operation fail with ``UnsafePathError`` before anything is written.

Every operation takes an optional ``cancel`` token
(:class:`pollinator.cfs.cancel.CancelToken`); cancelling it, or interrupting
the calling thread (Ctrl-C, a task runner's kill), stops the queued transfers
at once and leaves no half-registered file (see :mod:`pollinator.cfs.cancel`).

The jobs are split by module: :mod:`~pollinator.cfs.scan` (the local side of
planning), :mod:`~pollinator.cfs.listing` (the server side),
:mod:`~pollinator.cfs.plan` (the comparison, pure data),
:mod:`~pollinator.cfs.transfer` (moving one file), :mod:`~pollinator.cfs.pool`
(the workers and their cancel token). This module ties them together.
"""


from __future__ import annotations

import builtins
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from pollinator.cfs import listing
from pollinator.cfs.cancel import CancelToken, SyncCancelled
from pollinator.cfs.hashing import StatCache, sha256_bytes
from pollinator.cfs.ignore import IgnoreRules
from pollinator.cfs.listing import RemoteTree
from pollinator.cfs.paths import check_name, is_under, label_for, normalize_label
from pollinator.cfs.plan import LocalFile, PlannedFile, RemoteFile, SyncPlan, SyncReport, plan_label
from pollinator.cfs.pool import WorkerPool
from pollinator.cfs.progress import ProgressCallback, Tracker
from pollinator.cfs.s3 import S3Store, describe_error
from pollinator.cfs.scan import ToHash, checksums, scan
from pollinator.cfs.transfer import ADD_FILE_RETRIES, CHECKSUM_ATTEMPTS, Job, Transfers
from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import File, Snapshot
from pollinator.config import S3Settings
from pollinator.errors import ColoniesError, SyncError

log = logging.getLogger(__name__)

__all__ = ["ADD_FILE_RETRIES", "CFS", "CHECKSUM_ATTEMPTS", "CancelToken", "SyncCancelled"]


class CFS:
    """Sync local directories with ColonyFS labels; see the module docstring for the rules.

    ``progress`` (optional) is called with a :class:`pollinator.cfs.progress.Progress`
    (bytes done/total, files done/total) at most every 0.1 s and once at the end.
    """

    def __init__(self, client: ColoniesClient, s3: S3Settings, *, workers: int = 8,
                 progress: Optional[ProgressCallback] = None, markers: bool = False):
        self.client = client
        self.markers = markers
        """Write the Go ``.cfs`` label marker into the directories a sync touches (see the module doc)."""
        self.s3_settings = s3
        self.workers = max(1, int(workers))
        self.progress = progress
        self.store = S3Store(s3, workers=self.workers)
        self.pool = WorkerPool(self.workers)
        self.transfers = Transfers(client, self.store, s3)
        self._caches: dict[str, StatCache] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CFS(colony={getattr(self.client, 'colony_name', '')!r}, s3={self.store!r}, workers={self.workers})"

    def close(self) -> None:
        """Release the S3 connection pools (the Colonies client belongs to whoever passed it in)."""
        self.store.close()

    # == planning ======================================================================
    def plan(self, local_dir: str | os.PathLike[str], label: str, keep_local: bool, *,
             cancel: Optional[CancelToken] = None) -> SyncPlan:
        """Compare ``local_dir`` (and its sub-directories) with ``label`` (and its sub-labels)."""
        label = normalize_label(label)
        root = Path(os.path.abspath(local_dir))
        if root.exists() and not root.is_dir():
            raise SyncError(f"{root} is not a directory")
        rules = IgnoreRules.load(root)
        # ask the server while walking the disk: on a no-change re-sync these two are nearly all the time
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfs-remote") as executor:
            pending = executor.submit(listing.remote_tree, self.client, label, rules, self.pool, cancel)
            scanned = scan(root, rules) if root.exists() else {}
            remote = pending.result()  # validated, nothing written
        cache = self._cache(root)
        local: dict[str, dict[str, LocalFile]] = {}
        to_hash: list[ToHash] = []
        for rel_dir, files in scanned.items():
            local[rel_dir] = {}
            on_server = remote.get(rel_dir, {})
            for name, (full, st) in files.items():
                if name in on_server:
                    to_hash.append((rel_dir, name, full, st))
                    continue
                # A file the server lacks is uploaded whatever its checksum: take it from the cache or
                # compute it while uploading (the bytes are read once, on the worker pool).
                rel = f"{rel_dir}/{name}" if rel_dir else name
                local[rel_dir][name] = LocalFile(name=name, size=st.st_size, checksum=cache.lookup(rel, st) or "",
                                                 mtime_ns=st.st_mtime_ns, inode=st.st_ino)
        for rel_dir, name, digest, st in checksums(cache, to_hash, self.pool, cancel):
            local[rel_dir][name] = LocalFile(name=name, size=st.st_size, checksum=digest, mtime_ns=st.st_mtime_ns,
                                             inode=st.st_ino)
        cache.save()
        plans = []
        for rel_dir in sorted(set(local) | set(remote)):
            plans.append(plan_label(label_for(label, rel_dir), rel_dir, local.get(rel_dir, {}),
                                    remote.get(rel_dir, {}), keep_local))
        return SyncPlan(local_dir=str(root), label=label, keep_local=keep_local, labels=plans)

    def _cache(self, root: Path) -> StatCache:
        key = os.path.realpath(root)
        with self._lock:
            if key not in self._caches:
                self._caches[key] = StatCache(key)
            return self._caches[key]

    # == applying ======================================================================
    def apply(self, plan: SyncPlan, *, cancel: Optional[CancelToken] = None) -> SyncReport:
        """Execute a plan: uploads and downloads concurrently, with at most ``workers`` in flight.

        Largest files first, so a big multipart upload runs while the small
        files' tail goes by. Cancelling ``cancel`` (or interrupting this
        thread) stops the queued transfers and raises; every file registered
        until then is complete.
        """
        started = time.monotonic()
        root = Path(plan.local_dir)
        report = SyncReport(label=plan.label, local_dir=str(root))
        if plan.is_empty:
            return report
        root.mkdir(parents=True, exist_ok=True)
        cache = self._cache(root)
        tracker = Tracker(self.progress, files_total=plan.total_files, bytes_total=plan.total_bytes,
                          label=plan.label)
        jobs: list[tuple[int, Job]] = []
        for lp in plan.labels:
            if lp.is_empty:
                continue
            self.transfers.prepare_dir(root, lp, self.markers)
            ups = lp.upload + (lp.conflicts if plan.keep_local else [])
            downs = lp.download + ([] if plan.keep_local else lp.conflicts)
            for pf in ups:
                jobs.append((pf.size, self.transfers.upload_job(root, lp, pf, report, tracker, cache)))
            for pf in downs:
                jobs.append((pf.size, self.transfers.download_job(root, lp, pf, report, tracker, cache)))
        if plan.upload_count:
            self.transfers.ensure_bucket()
        jobs.sort(key=lambda j: -j[0])
        try:
            self.pool.run([job for _, job in jobs], cancel)
        finally:
            cache.save()
        tracker.finish()
        report.seconds = time.monotonic() - started
        return report

    def sync(self, local_dir: str | os.PathLike[str], label: str, keep_local: bool, *,
             cancel: Optional[CancelToken] = None) -> SyncReport:
        """``plan`` + ``apply``."""
        return self.apply(self.plan(local_dir, label, keep_local, cancel=cancel), cancel=cancel)

    # == single files ==================================================================
    def register(self, label: str, name: str, size: int, checksum: str, s3_object: str) -> File:
        """Add a record for bytes already in S3 (another label's object): a new revision, nothing uploaded."""
        check_name(name, label=label)
        pf = PlannedFile(name=name, size=size, checksum=checksum)
        record = self.transfers.record(normalize_label(label), pf, s3_object)
        return self.transfers.add_file(record, f"{label}/{name}")

    def put_bytes(self, label: str, name: str, data: bytes) -> File:
        """Upload ``data`` as file ``name`` of ``label`` (small files: one request, then the record)."""
        check_name(name, label=label)
        key = crypto.random_id()
        if data:
            self.transfers.ensure_bucket()
            try:
                self.store.put_small(key, data)
            except Exception as exc:
                raise SyncError(f"cannot upload {label}/{name}: {describe_error(exc)}") from exc
        return self.register(label, name, len(data), sha256_bytes(data), key)

    # == snapshots, pull, list =============================================================
    def create_snapshot(self, label: str, name: Optional[str] = None) -> Snapshot:
        """Freeze the latest revision of every file under ``label`` (and its sub-labels)."""
        name = name or crypto.random_id()
        try:
            return self.client.create_snapshot(normalize_label(label), name)
        except ColoniesError as exc:
            raise SyncError(f"cannot create snapshot {name!r} of {normalize_label(label)}: {exc}") from exc

    def remove_snapshot(self, snapshot_id: str) -> None:
        try:
            self.client.remove_snapshot(snapshot_id=snapshot_id)
        except ColoniesError as exc:
            raise SyncError(f"cannot remove snapshot {snapshot_id}: {exc}") from exc

    def download_snapshot(self, snapshot_id: str, dir: str | os.PathLike[str], *,
                          cancel: Optional[CancelToken] = None) -> SyncReport:
        """Write a snapshot's files under ``dir`` (sub-labels as sub-directories), skipping identical ones."""
        root_label, remote = self.snapshot_tree(snapshot_id)
        return self.apply(self._download_plan(Path(dir), root_label, remote, cancel), cancel=cancel)

    def snapshot_tree(self, snapshot_id: str) -> tuple[str, RemoteTree]:
        """A snapshot's label and its files: ``{rel_dir: {name: RemoteFile}}`` (the exact revisions it froze)."""
        return listing.snapshot_tree(self.client, snapshot_id, self.pool, self.s3_settings.endpoint)

    def pull(self, label: str, dir: str | os.PathLike[str], *, cancel: Optional[CancelToken] = None) -> SyncReport:
        """Download every file of ``label`` and its sub-labels into ``dir``; local-only files are kept.

        Files already identical locally are skipped; different ones are overwritten (remote wins).
        ``.pollinatorignore`` is not applied: a pull fetches everything.
        """
        return self.apply(self.plan_pull(label, dir, cancel=cancel), cancel=cancel)

    def plan_pull(self, label: str, dir: str | os.PathLike[str], remote: Optional[RemoteTree] = None, *,
                  exclude: Optional[Callable[[str], bool]] = None,
                  cancel: Optional[CancelToken] = None) -> SyncPlan:
        """What ``pull`` would download (for ``--dry-run``); only files the server has are hashed.

        The plan names every file of the label (:meth:`SyncPlan.remote_paths`), so a caller needing both
        the names and the download lists the label once. ``remote``: a listing already made with
        :meth:`remote_tree` (the label is then not listed again). ``exclude(rel_dir)`` leaves sub-labels
        out of the plan (e.g. a run's internal files).
        """
        label = normalize_label(label)
        tree = self.remote_tree(label) if remote is None else remote
        if exclude is not None:
            tree = {rel: files for rel, files in tree.items() if not exclude(rel)}
        return self._download_plan(Path(dir), label, tree, cancel)

    def remote_tree(self, label: str) -> RemoteTree:
        """``{rel_dir: {name: RemoteFile}}`` of ``label`` and its sub-labels (latest revisions, validated)."""
        return listing.remote_tree(self.client, normalize_label(label), IgnoreRules(), self.pool)

    def _download_plan(self, root: Path, label: str, remote: RemoteTree,
                       cancel: Optional[CancelToken] = None) -> SyncPlan:
        root = Path(os.path.abspath(root))
        if root.exists() and not root.is_dir():
            raise SyncError(f"{root} is not a directory")
        cache = self._cache(root)
        scanned = scan(root, IgnoreRules()) if root.exists() else {}
        wanted = [(rd, name, *scanned[rd][name]) for rd, files in remote.items() for name in files
                  if name in scanned.get(rd, {})]
        local: dict[str, dict[str, LocalFile]] = {}
        for rel_dir, name, digest, st in checksums(cache, wanted, self.pool, cancel):
            local.setdefault(rel_dir, {})[name] = LocalFile(name=name, size=st.st_size, checksum=digest)
        cache.save()
        plans = []
        for rel_dir in sorted(remote):
            lp = plan_label(label_for(label, rel_dir), rel_dir, local.get(rel_dir, {}), remote[rel_dir], False)
            lp.upload = []
            plans.append(lp)
        return SyncPlan(local_dir=str(root), label=label, keep_local=False, labels=plans)

    def list(self, label: str) -> list[RemoteFile]:
        """Latest revision of every file under ``label`` and its sub-labels, sorted by label and name."""
        return listing.list_files(self.client, normalize_label(label), self.pool)

    def labels(self, prefix: str = "") -> builtins.list[tuple[str, int]]:
        """Every label (optionally under ``prefix``) with its file count."""
        try:
            found = self.client.get_file_labels(normalize_label(prefix) if prefix else "", False) or []
        except ColoniesError as exc:
            raise SyncError(f"cannot list labels: {exc}") from exc
        if prefix:
            found = [lb for lb in found if is_under(lb.name, normalize_label(prefix))]
        return sorted((lb.name, lb.files) for lb in found)
