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
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

from pollinator.cfs.hashing import HashingReader, StatCache, sha256_bytes, sha256_file
from pollinator.cfs.ignore import IgnoreRules
from pollinator.cfs.paths import (CFS_FILE, TMP_PREFIX, check_name, is_under, label_for, normalize_label,
                                  rel_dir_of, safe_target)
from pollinator.cfs.plan import LabelPlan, LocalFile, PlannedFile, RemoteFile, SyncPlan, SyncReport, plan_label
from pollinator.cfs.progress import ProgressCallback, Tracker
from pollinator.backoff import backoff
from pollinator.cfs.s3 import S3Store, describe_error, record_endpoint
from pollinator.colonies import crypto
from pollinator.colonies.client import ColoniesClient
from pollinator.colonies.models import File, Reference, S3Object, Snapshot
from pollinator.config import S3Settings
from pollinator.errors import ColoniesError, PollinatorError, ServerError, SyncError, Unreachable, UnsafePathError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ADD_FILE_RETRIES = 4
CHECKSUM_ATTEMPTS = 2


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()


def _is_utf8(name: str) -> bool:
    """False for names holding undecodable bytes (os.scandir gives them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Cancelled(Exception):
    """Raised inside a worker's byte callback to abort a transfer after another failed."""


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
        self._bucket_ready = False
        self._caches: dict[str, StatCache] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CFS(colony={getattr(self.client, 'colony_name', '')!r}, s3={self.store!r}, workers={self.workers})"

    def close(self) -> None:
        """Release the S3 connection pools (the Colonies client belongs to whoever passed it in)."""
        self.store.close()

    # == planning ======================================================================
    def plan(self, local_dir: str | os.PathLike[str], label: str, keep_local: bool) -> SyncPlan:
        """Compare ``local_dir`` (and its sub-directories) with ``label`` (and its sub-labels)."""
        label = normalize_label(label)
        root = Path(os.path.abspath(local_dir))
        if root.exists() and not root.is_dir():
            raise SyncError(f"{root} is not a directory")
        rules = IgnoreRules.load(root)
        # ask the server while walking the disk: on a no-change re-sync these two are nearly all the time
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cfs-remote") as pool:
            pending = pool.submit(self._remote_tree, label, rules)
            scanned = self._scan(root, rules) if root.exists() else {}
            remote = pending.result()  # {rel_dir: {name: RemoteFile}}; validated, nothing written
        cache = self._cache(root)
        local: dict[str, dict[str, LocalFile]] = {}
        to_hash: list[tuple[str, str, str, os.stat_result]] = []
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
        for rel_dir, name, digest, st in self._checksums(cache, to_hash):
            local[rel_dir][name] = LocalFile(name=name, size=st.st_size, checksum=digest, mtime_ns=st.st_mtime_ns,
                                             inode=st.st_ino)
        cache.save()
        plans = []
        for rel_dir in sorted(set(local) | set(remote)):
            plans.append(plan_label(label_for(label, rel_dir), rel_dir, local.get(rel_dir, {}),
                                    remote.get(rel_dir, {}), keep_local))
        return SyncPlan(local_dir=str(root), label=label, keep_local=keep_local, labels=plans)

    def _remote_tree(self, label: str, rules: IgnoreRules) -> dict[str, dict[str, RemoteFile]]:
        """One getfilelabelsmsg, then one getfilesmsg per label (concurrently); every record validated."""
        labels = self._labels_under(label)
        listings = self._map(lambda lb: (lb, self._get_files(lb)), labels)
        tree: dict[str, dict[str, RemoteFile]] = {}
        for lb, files in listings:
            if not files:
                continue
            rel_dir = rel_dir_of(lb, label, name=files[0].name)
            prefix = f"{rel_dir}/" if rel_dir else ""
            entries = tree.setdefault(rel_dir, {})
            for f in files:
                check_name(f.name, label=lb)
                if not rules.ignored(prefix + f.name):
                    entries[f.name] = f
        return tree

    def _labels_under(self, label: str) -> list[str]:
        # exact=false is a prefix match ("/a" also returns "/ab"); filter to the label and its sub-labels.
        # (exact=true would hide the sub-labels whenever the label itself holds no file.)
        try:
            found = self.client.get_file_labels(label if label != "/" else "", False) or []
        except ColoniesError as exc:
            raise SyncError(f"cannot list the labels under {label}: {exc}") from exc
        return sorted({lb.name for lb in found if is_under(lb.name, label)})

    def _get_files(self, label: str) -> list[RemoteFile]:
        try:
            rows = self.client.get_files(label) or []
        except ColoniesError as exc:
            raise SyncError(f"cannot list the files of label {label}: {exc}") from exc
        return [RemoteFile(label=label, name=r.name, size=r.size, checksum=r.checksum, s3_object=r.s3filename)
                for r in rows]

    def _scan(self, root: Path, rules: IgnoreRules) -> dict[str, dict[str, tuple[str, os.stat_result]]]:
        """Every regular file under ``root`` by POSIX sub-directory; symlinks leaving ``root`` are skipped."""
        root_real = os.path.realpath(root)
        out: dict[str, dict[str, tuple[str, os.stat_result]]] = {}
        stack = [("", str(root))]
        while stack:
            rel_dir, path = stack.pop()
            files = out.setdefault(rel_dir, {})
            try:
                entries = list(os.scandir(path))
            except OSError as exc:
                raise SyncError(f"cannot read directory {path}: {exc.strerror or exc}") from exc
            for entry in entries:
                name = entry.name
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if not _is_utf8(name) and not rules.ignored(rel, is_dir=entry.is_dir(follow_symlinks=False)):
                    # Refuse before anything moves: the server cannot store the name (the dev server answered
                    # 500 after the bytes were already in S3).
                    raise SyncError(f"cannot sync {entry.path!r}: its name is not valid UTF-8, as ColonyFS names "
                                    "and labels must be; rename it or list it in .pollinatorignore")
                try:
                    if entry.is_symlink():
                        target = os.path.realpath(entry.path)
                        if os.path.commonpath([root_real, target]) != root_real or os.path.isdir(target):
                            log.warning("skipping symlink %s: it points outside the synced directory or to a "
                                        "directory", rel)
                            continue
                        if not os.path.isfile(target) or rules.ignored(rel):
                            continue
                        files[name] = (entry.path, os.stat(target))
                    elif entry.is_dir(follow_symlinks=False):
                        if not rules.ignored(rel, is_dir=True):
                            stack.append((rel, entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        if rules.ignored(rel):
                            continue
                        if "\\" in name or name.startswith(TMP_PREFIX):
                            log.warning("skipping %s: its name cannot be stored portably", rel)
                            continue
                        files[name] = (entry.path, entry.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue  # vanished while we looked
        return out

    def _checksums(self, cache: StatCache, items: list[tuple[str, str, str, os.stat_result]]):
        misses = []
        for rel_dir, name, full, st in items:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            digest = cache.lookup(rel, st)
            if digest is None:
                misses.append((rel_dir, name, full, st))
            else:
                yield rel_dir, name, digest, st

        def hash_one(item):
            rel_dir, name, full, st = item
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                return rel_dir, name, cache.checksum(rel, full, st), st
            except OSError as exc:
                raise SyncError(f"cannot read {full}: {exc.strerror or exc}") from exc

        # Biggest first so the long hashes overlap with the many small ones.
        misses.sort(key=lambda it: -it[3].st_size)
        yield from self._map(hash_one, misses)

    def _cache(self, root: Path) -> StatCache:
        key = os.path.realpath(root)
        with self._lock:
            if key not in self._caches:
                self._caches[key] = StatCache(key)
            return self._caches[key]

    # == applying ======================================================================
    def apply(self, plan: SyncPlan) -> SyncReport:
        """Execute a plan: uploads and downloads concurrently, with at most ``workers`` in flight."""
        started = time.monotonic()
        root = Path(plan.local_dir)
        report = SyncReport(label=plan.label, local_dir=str(root))
        if plan.is_empty:
            return report
        root.mkdir(parents=True, exist_ok=True)
        cache = self._cache(root)
        jobs: list[tuple[int, Callable[[Tracker], None]]] = []
        for lp in plan.labels:
            if lp.is_empty:
                continue
            self._prepare_dir(root, lp)
            ups = lp.upload + (lp.conflicts if plan.keep_local else [])
            downs = lp.download + ([] if plan.keep_local else lp.conflicts)
            for pf in ups:
                jobs.append((pf.size, self._upload_job(root, lp, pf, report, cache)))
            for pf in downs:
                jobs.append((pf.size, self._download_job(root, lp, pf, cache, report)))
        if any(pf for lp in plan.labels for pf in lp.upload) or (plan.keep_local and plan.conflict_count):
            self._ensure_bucket()
        tracker = Tracker(self.progress, files_total=len(jobs), bytes_total=plan.total_bytes, label=plan.label)
        try:
            self._run(jobs, tracker)
        finally:
            cache.save()
        tracker.finish()
        report.seconds = time.monotonic() - started
        return report

    def sync(self, local_dir: str | os.PathLike[str], label: str, keep_local: bool) -> SyncReport:
        """``plan`` + ``apply``."""
        return self.apply(self.plan(local_dir, label, keep_local))

    def _run(self, jobs: list[tuple[int, Callable[[Tracker], None]]], tracker: Tracker) -> None:
        """Run jobs (largest first) on a bounded pool; the first failure cancels the rest and is raised."""
        cancel = threading.Event()
        jobs = sorted(jobs, key=lambda j: -j[0])

        def guarded(fn: Callable[[Tracker], None]) -> None:
            if cancel.is_set():
                raise _Cancelled()
            fn(tracker)

        tracker.cancel = cancel  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="cfs") as pool:
            futures: list[Future] = [pool.submit(guarded, fn) for _, fn in jobs]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                cancel.set()
                raise
            errors = [exc for exc in (f.exception() for f in done) if exc is not None]
            if errors:
                cancel.set()
                for f in futures:
                    f.cancel()
        if errors:
            real = [e for e in errors if not isinstance(e, _Cancelled)]
            raise (real or errors)[0]  # every item is an exception the workers raised

    def _prepare_dir(self, root: Path, lp: LabelPlan) -> Path:
        """Create the label's directory (refusing symlinked components) and, with ``markers``, its Go
        ``.cfs`` marker."""
        directory = root
        for part in (lp.rel_dir.split("/") if lp.rel_dir else []):
            directory = directory / part
            if directory.is_symlink():
                raise UnsafePathError(f"refusing to write into {directory}: it is a symlink")
            try:
                directory.mkdir(exist_ok=True)
            except FileExistsError:
                raise SyncError(f"cannot create directory {directory} for label {lp.label}: a file is in the way")
        if not self.markers:
            return directory
        marker = directory / CFS_FILE
        content = json.dumps({"label": lp.label}, separators=(",", ":")).encode()
        try:
            if marker.is_symlink() or not marker.exists() or marker.read_bytes() != content:
                tmp = directory / f"{TMP_PREFIX}cfs"
                tmp.write_bytes(content)
                os.replace(tmp, marker)
        except OSError as exc:
            log.debug("cannot write %s: %s", marker, exc)
        return directory

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self.store.ensure_bucket()
        except Exception as exc:  # botocore errors
            raise SyncError(f"cannot reach S3 bucket {self.store.bucket} at {self.s3_settings.url}: "
                            f"{describe_error(exc)}") from exc
        self._bucket_ready = True

    # -- upload --------------------------------------------------------------------
    def _upload_job(self, root: Path, lp: LabelPlan, pf: PlannedFile, report: SyncReport,
                    cache: Optional[StatCache] = None):
        full = root.joinpath(*lp.rel_dir.split("/"), pf.name) if lp.rel_dir else root / pf.name
        where = f"{lp.label}/{pf.name}"
        rel = f"{lp.rel_dir}/{pf.name}" if lp.rel_dir else pf.name

        def run(tracker: Tracker) -> None:
            try:
                record = self._upload(full, lp.label, pf, where, tracker, cache, rel)
            except (PollinatorError, _Cancelled):
                raise
            except Exception as exc:
                raise SyncError(f"cannot upload {where}: {describe_error(exc)}") from exc
            with self._lock:
                report.records.append(RemoteFile(label=lp.label, name=pf.name, size=pf.size,
                                                 checksum=record.checksum, s3_object=record.ref.s3object.object))
                report.uploaded.append(where)
                report.bytes_uploaded += pf.size

        return run

    def _upload(self, full: Path, label: str, pf: PlannedFile, where: str, tracker: Tracker,
                cache: Optional[StatCache] = None, rel: str = "") -> File:
        """Bytes to S3 first, then the record (a record never points at a missing object); returns the record.

        ``pf.checksum`` is empty when planning deferred the hash: it is then taken
        from the bytes as they are read for the upload.
        """
        def changed() -> SyncError:
            return SyncError(f"{where} changed while it was being synced ({full}); run the sync again")

        try:
            st = os.stat(full)
        except FileNotFoundError:
            raise SyncError(f"{where} disappeared before it could be uploaded ({full})") from None
        if st.st_size != pf.size or (pf.mtime_ns and st.st_mtime_ns != pf.mtime_ns):
            raise changed()
        key = crypto.random_id()
        started = time.time_ns()
        checksum = pf.checksum
        if pf.size == 0:
            checksum = sha256_bytes(b"")  # like the Go client: no S3 object for an empty file
        elif pf.size < self.store.multipart_threshold:
            data = full.read_bytes()
            digest = sha256_bytes(data)
            if len(data) != pf.size or (checksum and digest != checksum):
                raise changed()
            checksum = digest
            self.store.put_small(key, data)
        else:
            cancel = getattr(tracker, "cancel", None)

            def on_bytes(n: int) -> None:
                if cancel is not None and cancel.is_set():
                    raise _Cancelled()
                tracker.add_bytes(n)

            with open(full, "rb") as f:
                reader = HashingReader(f)
                self.store.upload_large(key, reader, on_bytes, size=pf.size)
            after = os.stat(full)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise changed()
            if not checksum:
                checksum = reader.digest(pf.size) or sha256_file(full)
        if not pf.checksum and cache is not None and rel:
            cache.remember(rel, st, checksum, started_ns=started)
        record = self._record(label, pf.model_copy(update={"checksum": checksum}), key)
        self._add_file(record, where)
        tracker.file_done(pf.size if pf.size < self.store.multipart_threshold else 0)
        return record

    def register(self, label: str, name: str, size: int, checksum: str, s3_object: str) -> File:
        """Add a record for bytes already in S3 (another label's object): a new revision, nothing uploaded."""
        check_name(name, label=label)
        pf = PlannedFile(name=name, size=size, checksum=checksum)
        return self._add_file(self._record(normalize_label(label), pf, s3_object), f"{label}/{name}")

    def put_bytes(self, label: str, name: str, data: bytes) -> File:
        """Upload ``data`` as file ``name`` of ``label`` (small files: one request, then the record)."""
        check_name(name, label=label)
        key = crypto.random_id()
        if data:
            self._ensure_bucket()
            try:
                self.store.put_small(key, data)
            except Exception as exc:
                raise SyncError(f"cannot upload {label}/{name}: {describe_error(exc)}") from exc
        return self.register(label, name, len(data), sha256_bytes(data), key)

    def _record(self, label: str, pf: PlannedFile, key: str) -> File:
        s3 = self.s3_settings
        obj = S3Object(server=s3.host, port=s3.port, tls=s3.tls, accesskey="", secretkey="", region=s3.region,
                       encryptionkey="", encryptionalg="", object=key, bucket=s3.bucket)
        return File(colonyname=self.client.colony_name, label=label, name=pf.name, size=pf.size,
                    sequencenr=1, checksum=pf.checksum, checksumalg="SHA256",
                    ref=Reference(protocol="s3", s3object=obj))

    def _add_file(self, record: File, where: str) -> File:
        """addfilemsg, retried on 5xx/unreachable (a duplicate is only an identical extra revision)."""
        attempt = 0
        while True:
            try:
                return self.client.add_file(record)
            except (ServerError, Unreachable) as exc:
                if attempt >= ADD_FILE_RETRIES:
                    raise SyncError(f"cannot register {where} with the Colonies server: {exc}") from exc
                time.sleep(backoff(attempt, base=0.2))
                attempt += 1
            except ColoniesError as exc:
                raise SyncError(f"cannot register {where} with the Colonies server: {exc}") from exc

    # -- download ------------------------------------------------------------------
    def _download_job(self, root: Path, lp: LabelPlan, pf: PlannedFile, cache: Optional[StatCache],
                      report: SyncReport, endpoint: str = ""):
        where = f"{lp.label}/{pf.name}"
        rel = f"{lp.rel_dir}/{pf.name}" if lp.rel_dir else pf.name

        def run(tracker: Tracker) -> None:
            target = safe_target(root, lp.rel_dir, pf.name)
            try:
                self._download(target, pf, where, tracker)
            except (PollinatorError, _Cancelled):
                raise
            except Exception as exc:
                hint = f" (recorded at {endpoint}, fetched from {self.s3_settings.endpoint})" if endpoint else ""
                raise SyncError(f"cannot download {where}{hint}: {describe_error(exc)}") from exc
            if cache is not None:
                try:
                    cache.remember(rel, os.stat(target), pf.checksum)
                except OSError:
                    pass
            with self._lock:
                report.downloaded.append(where)
                report.bytes_downloaded += pf.size

        return run

    def _download(self, target: Path, pf: PlannedFile, where: str, tracker: Tracker) -> None:
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                if pf.size > 0:
                    self._fetch_verified(f, tmp, pf, where, tracker)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        tracker.file_done(pf.size if pf.size < self.store.multipart_threshold else 0)

    def _fetch_verified(self, f, tmp: Path, pf: PlannedFile, where: str, tracker: Tracker) -> None:
        if not pf.s3_object:
            raise SyncError(f"cannot download {where}: the record names no S3 object")
        cancel = getattr(tracker, "cancel", None)
        for attempt in range(CHECKSUM_ATTEMPTS):
            f.seek(0)
            f.truncate()
            if pf.size < self.store.multipart_threshold:
                data = self.store.get_small(pf.s3_object, pf.size)
                digest = sha256_bytes(data)
                if digest == pf.checksum:
                    f.write(data)
                    return
            else:
                done = [0]

                def on_bytes(n: int) -> None:
                    if cancel is not None and cancel.is_set():
                        raise _Cancelled()
                    done[0] += n
                    tracker.add_bytes(n)

                self.store.download_large(pf.s3_object, f, on_bytes)
                f.flush()
                digest = sha256_file(tmp)
                if digest == pf.checksum:
                    return
                tracker.add_bytes(-done[0])
            log.warning("checksum mismatch for %s (attempt %d): expected %s, got %s", where, attempt + 1,
                        pf.checksum, digest)
        raise SyncError(f"cannot download {where}: its bytes do not match the recorded SHA-256 {pf.checksum}")

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

    def download_snapshot(self, snapshot_id: str, dir: str | os.PathLike[str]) -> SyncReport:
        """Write a snapshot's files under ``dir`` (sub-labels as sub-directories), skipping identical ones."""
        root_label, remote = self.snapshot_tree(snapshot_id)
        return self._download_tree(Path(dir), root_label, remote)

    def snapshot_tree(self, snapshot_id: str) -> tuple[str, dict[str, dict[str, RemoteFile]]]:
        """A snapshot's label and its files: ``{rel_dir: {name: RemoteFile}}`` (the exact revisions it froze)."""
        try:
            snap = self.client.get_snapshot(snapshot_id=snapshot_id)
        except ColoniesError as exc:
            raise SyncError(f"cannot get snapshot {snapshot_id}: {exc}") from exc
        if snap is None:
            raise SyncError(f"snapshot {snapshot_id} not found")
        root_label = normalize_label(snap.label)

        def fetch(file_id: str) -> File:
            try:
                revs = self.client.get_file(file_id=file_id)
            except ColoniesError as exc:
                raise SyncError(f"cannot get file {file_id} of snapshot {snapshot_id}: {exc}") from exc
            if not revs or len(revs) != 1:
                raise SyncError(f"snapshot {snapshot_id}: file {file_id} has no unique revision")
            return revs[0]

        records = self._map(fetch, list(snap.fileids or []))
        remote: dict[str, dict[str, RemoteFile]] = {}
        for rec in records:
            where = f"{rec.label}/{rec.name}"
            rel_dir = rel_dir_of(rec.label, root_label, name=rec.name)
            check_name(rec.name, label=rec.label)
            obj = rec.ref.s3object
            remote.setdefault(rel_dir, {})[rec.name] = RemoteFile(label=rec.label, name=rec.name, size=rec.size,
                                                                  checksum=rec.checksum, s3_object=obj.object)
            log.debug("snapshot file %s recorded at %s; fetching from %s", where, record_endpoint(obj.server, obj.port),
                      self.s3_settings.endpoint)
        return root_label, remote

    def pull(self, label: str, dir: str | os.PathLike[str]) -> SyncReport:
        """Download every file of ``label`` and its sub-labels into ``dir``; local-only files are kept.

        Files already identical locally are skipped; different ones are overwritten (remote wins).
        ``.pollinatorignore`` is not applied: a pull fetches everything.
        """
        return self.apply(self.plan_pull(label, dir))

    def plan_pull(self, label: str, dir: str | os.PathLike[str],
                  remote: Optional[dict[str, dict[str, RemoteFile]]] = None) -> SyncPlan:
        """What ``pull`` would download (for ``--dry-run``); only files the server has are hashed.

        ``remote`` is a listing already made with :meth:`remote_tree` (the label is then not listed again).
        """
        label = normalize_label(label)
        return self._download_plan(Path(dir), label, self.remote_tree(label) if remote is None else remote)

    def remote_tree(self, label: str) -> dict[str, dict[str, RemoteFile]]:
        """``{rel_dir: {name: RemoteFile}}`` of ``label`` and its sub-labels (latest revisions, validated)."""
        return self._remote_tree(normalize_label(label), IgnoreRules())

    def _download_tree(self, root: Path, label: str, remote: dict[str, dict[str, RemoteFile]]) -> SyncReport:
        return self.apply(self._download_plan(root, label, remote))

    def _download_plan(self, root: Path, label: str, remote: dict[str, dict[str, RemoteFile]]) -> SyncPlan:
        root = Path(os.path.abspath(root))
        if root.exists() and not root.is_dir():
            raise SyncError(f"{root} is not a directory")
        cache = self._cache(root)
        scanned = self._scan(root, IgnoreRules()) if root.exists() else {}
        wanted = [(rd, name, *scanned[rd][name]) for rd, files in remote.items() for name in files
                  if name in scanned.get(rd, {})]
        local: dict[str, dict[str, LocalFile]] = {}
        for rel_dir, name, digest, st in self._checksums(cache, wanted):
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
        label = normalize_label(label)
        out: list[RemoteFile] = []
        for _, files in self._map(lambda lb: (lb, self._get_files(lb)), self._labels_under(label)):
            out.extend(files)
        return sorted(out, key=lambda f: (f.label, f.name))

    def labels(self, prefix: str = "") -> builtins.list[tuple[str, int]]:
        """Every label (optionally under ``prefix``) with its file count."""
        try:
            found = self.client.get_file_labels(normalize_label(prefix) if prefix else "", False) or []
        except ColoniesError as exc:
            raise SyncError(f"cannot list labels: {exc}") from exc
        if prefix:
            found = [lb for lb in found if is_under(lb.name, normalize_label(prefix))]
        return sorted((lb.name, lb.files) for lb in found)

    # == helpers =======================================================================
    def _map(self, fn: Callable[[Any], _T], items: Iterable[Any]) -> builtins.list[_T]:
        """``map`` on a bounded pool; the first exception propagates."""
        items = list(items)
        if len(items) <= 1:
            return [fn(it) for it in items]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)), thread_name_prefix="cfs-plan") as pool:
            return list(pool.map(fn, items))
