"""Stage a process's ColonyFS mounts before it runs and settle them after.

Same contract as the container executors' sync handler:

* start: download every snapshot mount into ``<fs_dir>/<dir>``, then sync
  every sync-dir mount with its ``onstart.keeplocal`` conflict rule;
* close: sync every sync-dir mount again with ``onclose.keeplocal`` (this is
  how result files reach their label), remove snapshots unless
  ``keepsnapshot``, delete local dirs unless ``keepfiles``.

Two jobs of one project share dirs (the Go pollinator puts ``data`` at a
fixed path), so syncs of the same local dir are serialised with a lock.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from pollinator.colonies.models import Process
from pollinator.errors import SyncError
from pollinator.executor.launch import DEFAULT_MOUNT, PathMapper


class CfsLike(Protocol):
    """The part of ``pollinator.cfs.CFS`` the executor needs."""

    def download_snapshot(self, snapshot_id: str, dir: Path) -> Any: ...

    def sync(self, local_dir: Path, label: str, keep_local: bool) -> Any: ...

    def remove_snapshot(self, snapshot_id: str) -> Any: ...


_locks_guard = threading.Lock()
_dir_locks: dict[Path, threading.Lock] = {}


def _dir_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _dir_locks.setdefault(path, threading.Lock())


@dataclass(frozen=True)
class _SnapshotMount:
    snapshot_id: str
    label: str
    dir: Path
    keep_files: bool
    keep_snapshot: bool


@dataclass(frozen=True)
class _SyncMount:
    label: str
    dir: Path
    keep_files: bool
    keep_local_on_start: bool
    keep_local_on_close: bool


def has_mounts(process: Process) -> bool:
    fs = process.spec.fs
    return bool(fs.snapshots or fs.dirs)


class Mounts:
    """The snapshot and sync-dir mounts of one process, resolved to local dirs."""

    def __init__(self, process: Process, fs_dir: Path, cfs: Optional[CfsLike],
                 say: Callable[[str], None] = lambda _msg: None):
        fs = process.spec.fs
        mapper = PathMapper(fs_dir, fs.mount or DEFAULT_MOUNT, process.processid)
        self.fs_dir = mapper.fs_dir
        self._cfs = cfs
        self._say = say
        self.snapshots = [
            _SnapshotMount(m.snapshotid, m.label.replace("{processid}", process.processid),
                           mapper.local_dir(m.dir), m.keepfiles, m.keepsnapshot)
            for m in (fs.snapshots or [])
        ]
        self.dirs = [
            _SyncMount(m.label.replace("{processid}", process.processid), mapper.local_dir(m.dir), m.keepfiles,
                       m.onconflicts.onstart.keeplocal, m.onconflicts.onclose.keeplocal)
            for m in (fs.dirs or [])
        ]

    def _need_cfs(self) -> CfsLike:
        if self._cfs is None:
            raise SyncError("this process has ColonyFS mounts but the executor has no S3 storage configured")
        return self._cfs

    def stage(self) -> None:
        """Download snapshots, then sync dirs (onstart rule). Raises on the first failure."""
        if not (self.snapshots or self.dirs):
            return
        cfs = self._need_cfs()
        for snap in self.snapshots:
            if not snap.snapshot_id:
                self._say(f"snapshot mount {snap.label!r} has no snapshot id; skipped")
                continue
            snap.dir.mkdir(parents=True, exist_ok=True)
            self._say(f"downloading snapshot {snap.snapshot_id[:12]} ({snap.label}) into {snap.dir}")
            with _dir_lock(snap.dir):
                cfs.download_snapshot(snap.snapshot_id, snap.dir)
        for mount in self.dirs:
            self._sync(cfs, mount, mount.keep_local_on_start, "start")

    def _sync(self, cfs: CfsLike, mount: _SyncMount, keep_local: bool, when: str) -> None:
        if not mount.label:
            self._say(f"sync dir {mount.dir} has no label; skipped")
            return
        mount.dir.mkdir(parents=True, exist_ok=True)
        rule = "keep local" if keep_local else "keep remote"
        self._say(f"syncing {mount.dir} with {mount.label} on {when} (conflicts: {rule})")
        with _dir_lock(mount.dir):
            cfs.sync(mount.dir, mount.label, keep_local)

    def upload_targets(self) -> list[tuple[str, Path, bool]]:
        """(label, dir relative to the fs dir, keep-local rule) of every sync dir to upload on close."""
        return [(m.label, m.dir.relative_to(self.fs_dir), m.keep_local_on_close) for m in self.dirs
                if m.label and (m.dir == self.fs_dir or self.fs_dir in m.dir.parents)]

    def upload(self) -> None:
        """Sync every sync-dir mount back with its onclose rule; raises on the first failure.

        This is how result files reach their label. The caller retries it through outages
        (``process_job``) and deletes nothing until it has succeeded.
        """
        if not self.dirs:
            return
        cfs = self._need_cfs()
        for mount in self.dirs:
            self._sync(cfs, mount, mount.keep_local_on_close, "close")

    def cleanup(self) -> None:
        """Drop snapshots and local files as the spec asks (best effort; problems are only said)."""
        for snap in self.snapshots:
            if snap.snapshot_id and not snap.keep_snapshot and self._cfs is not None:
                try:
                    self._cfs.remove_snapshot(snap.snapshot_id)
                except Exception as exc:  # noqa: BLE001 - a stale snapshot is not worth failing a job
                    self._say(f"could not remove snapshot {snap.snapshot_id[:12]}: {exc}")
        for path, keep in [(s.dir, s.keep_files) for s in self.snapshots] + [(d.dir, d.keep_files) for d in self.dirs]:
            if not keep:
                self._remove(path)

    def finish(self, *, upload: bool) -> list[str]:
        """One upload attempt (when ``upload``), then :meth:`cleanup`; the problems as sentences.

        Kept for callers that want the old one-shot behaviour; the executor itself uses
        :meth:`upload` with retries and cleans up only after the results are registered.
        """
        problems: list[str] = []
        if upload and self.dirs:
            try:
                self.upload()
            except Exception as exc:  # noqa: BLE001 - reported to the user as the job's error
                problems.append(f"uploading results failed: {exc}")
                return problems  # nothing is deleted: the files are all that is left of the results
        self.cleanup()
        return problems

    def _remove(self, path: Path) -> None:
        if path == self.fs_dir:
            self._say("not deleting the whole executor fs dir (mount dir is the mount root)")
            return
        with _dir_lock(path):
            shutil.rmtree(path, ignore_errors=True)
