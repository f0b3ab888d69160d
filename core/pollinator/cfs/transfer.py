"""Moving one file: upload (bytes to S3, then its record) and download (verified, then renamed into place).

Why the order: an upload writes the record last, so a record never points
at missing bytes (an interrupted upload leaves at most an unreferenced S3
object, which nothing reads); a download writes a temp file in the target
directory and renames it only after its SHA-256 matched, so an interrupted
sync never leaves a partial file. Each job checks the sync's
:class:`~pollinator.cfs.cancel.CancelToken` before it starts and, for large
files, between chunks (see :mod:`pollinator.cfs.cancel`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Optional

from pollinator.backoff import backoff
from pollinator.cfs.cancel import CancelToken, SyncCancelled
from pollinator.cfs.hashing import HashingReader, StatCache, sha256_bytes, sha256_file
from pollinator.cfs.paths import CFS_FILE, TMP_PREFIX, safe_target
from pollinator.cfs.plan import LabelPlan, PlannedFile, RemoteFile, SyncReport
from pollinator.cfs.progress import Tracker
from pollinator.cfs.s3 import S3Store, describe_error
from pollinator.colonies import crypto
from pollinator.colonies.models import File, Reference, S3Object
from pollinator.config import S3Settings
from pollinator.errors import ColoniesError, PollinatorError, ServerError, SyncError, Unreachable, UnsafePathError

if TYPE_CHECKING:
    from pollinator.colonies.client import ColoniesClient

log = logging.getLogger(__name__)

ADD_FILE_RETRIES = 4
CHECKSUM_ATTEMPTS = 2

Job = Callable[[CancelToken], None]
"""One file's transfer, run on the worker pool with the sync's token."""


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()


class Transfers:
    """Uploads and downloads of single files for one CFS (its client, store and S3 settings)."""

    def __init__(self, client: "ColoniesClient", store: S3Store, s3: S3Settings):
        self.client = client
        self.store = store
        self.s3_settings = s3
        self._lock = threading.Lock()  # guards the reports the jobs append to
        self._bucket_ready = False

    def __repr__(self) -> str:
        return f"Transfers(store={self.store!r})"

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self.store.ensure_bucket()
        except Exception as exc:  # botocore errors
            raise SyncError(f"cannot reach S3 bucket {self.store.bucket} at {self.s3_settings.url}: "
                            f"{describe_error(exc)}") from exc
        self._bucket_ready = True

    @staticmethod
    def prepare_dir(root: Path, lp: LabelPlan, markers: bool) -> Path:
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
        if not markers:
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

    # -- upload --------------------------------------------------------------------
    def upload_job(self, root: Path, lp: LabelPlan, pf: PlannedFile, report: SyncReport, tracker: Tracker,
                   cache: Optional[StatCache] = None) -> Job:
        full = root.joinpath(*lp.rel_dir.split("/"), pf.name) if lp.rel_dir else root / pf.name
        where = f"{lp.label}/{pf.name}"
        rel = f"{lp.rel_dir}/{pf.name}" if lp.rel_dir else pf.name

        def run(cancel: CancelToken) -> None:
            try:
                record = self.upload(full, lp.label, pf, where, tracker, cancel, cache, rel)
            except PollinatorError:
                raise
            except Exception as exc:
                raise SyncError(f"cannot upload {where}: {describe_error(exc)}") from exc
            with self._lock:
                report.records.append(RemoteFile(label=lp.label, name=pf.name, size=pf.size,
                                                 checksum=record.checksum, s3_object=record.ref.s3object.object))
                report.uploaded.append(where)
                report.bytes_uploaded += pf.size

        return run

    def upload(self, full: Path, label: str, pf: PlannedFile, where: str, tracker: Tracker,
               cancel: CancelToken, cache: Optional[StatCache] = None, rel: str = "") -> File:
        """Bytes to S3 first, then the record (a record never points at a missing object); returns the record.

        ``pf.checksum`` is empty when planning deferred the hash: it is then taken
        from the bytes as they are read for the upload.
        """
        def changed() -> SyncError:
            return SyncError(f"{where} changed while it was being synced ({full}); run the sync again")

        cancel.check()
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
            self.store.put_small(key, data, cancel=cancel)
        else:
            def on_bytes(n: int) -> None:
                cancel.check()
                tracker.add_bytes(n)

            with open(full, "rb") as f:
                reader = HashingReader(f)
                self.store.upload_large(key, reader, on_bytes, size=pf.size, cancel=cancel)
            after = os.stat(full)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                raise changed()
            if not checksum:
                checksum = reader.digest(pf.size) or sha256_file(full)
        if not pf.checksum and cache is not None and rel:
            cache.remember(rel, st, checksum, started_ns=started)
        # The bytes are in S3: registering them is one request, so a cancel arriving now lets it finish
        # (only its retries' backoff gives way to the cancel, leaving an unreferenced object, never a record
        # without bytes).
        record = self.record(label, pf.model_copy(update={"checksum": checksum}), key)
        self.add_file(record, where, cancel)
        tracker.file_done(pf.size if pf.size < self.store.multipart_threshold else 0)
        return record

    def record(self, label: str, pf: PlannedFile, key: str) -> File:
        """The file record we write: our S3 endpoint and bucket, never credentials (see the engine doc)."""
        s3 = self.s3_settings
        obj = S3Object(server=s3.host, port=s3.port, tls=s3.tls, accesskey="", secretkey="", region=s3.region,
                       encryptionkey="", encryptionalg="", object=key, bucket=s3.bucket)
        return File(colonyname=self.client.colony_name, label=label, name=pf.name, size=pf.size,
                    sequencenr=1, checksum=pf.checksum, checksumalg="SHA256",
                    ref=Reference(protocol="s3", s3object=obj))

    def add_file(self, record: File, where: str, cancel: Optional[CancelToken] = None) -> File:
        """addfilemsg, retried on 5xx/unreachable (a duplicate is only an identical extra revision)."""
        attempt = 0
        while True:
            try:
                return self.client.add_file(record)
            except (ServerError, Unreachable) as exc:
                if attempt >= ADD_FILE_RETRIES:
                    raise SyncError(f"cannot register {where} with the Colonies server: {exc}") from exc
                delay = backoff(attempt, base=0.2)
                if cancel is not None:
                    cancel.sleep(delay)
                else:
                    time.sleep(delay)
                attempt += 1
            except ColoniesError as exc:
                raise SyncError(f"cannot register {where} with the Colonies server: {exc}") from exc

    # -- download ------------------------------------------------------------------
    def download_job(self, root: Path, lp: LabelPlan, pf: PlannedFile, report: SyncReport, tracker: Tracker,
                     cache: Optional[StatCache] = None, endpoint: str = "") -> Job:
        where = f"{lp.label}/{pf.name}"
        rel = f"{lp.rel_dir}/{pf.name}" if lp.rel_dir else pf.name

        def run(cancel: CancelToken) -> None:
            target = safe_target(root, lp.rel_dir, pf.name)
            try:
                self.download(target, pf, where, tracker, cancel)
            except PollinatorError:
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

    def download(self, target: Path, pf: PlannedFile, where: str, tracker: Tracker, cancel: CancelToken) -> None:
        cancel.check()
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                if pf.size > 0:
                    self._fetch_verified(f, tmp, pf, where, tracker, cancel)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, target)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        tracker.file_done(pf.size if pf.size < self.store.multipart_threshold else 0)

    def _fetch_verified(self, f: BinaryIO, tmp: Path, pf: PlannedFile, where: str, tracker: Tracker,
                        cancel: CancelToken) -> None:
        if not pf.s3_object:
            raise SyncError(f"cannot download {where}: the record names no S3 object")
        for attempt in range(CHECKSUM_ATTEMPTS):
            f.seek(0)
            f.truncate()
            if pf.size < self.store.multipart_threshold:
                data = self.store.get_small(pf.s3_object, pf.size, cancel=cancel)
                digest = sha256_bytes(data)
                if digest == pf.checksum:
                    f.write(data)
                    return
            else:
                done = [0]

                def on_bytes(n: int) -> None:
                    cancel.check()
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


__all__ = ["ADD_FILE_RETRIES", "CHECKSUM_ATTEMPTS", "Job", "SyncCancelled", "Transfers"]
