"""The local side of planning: walk a directory, and hash the files whose checksum planning needs.

Why hashing lives here and not at upload time only: a file the server also
has must be compared by SHA-256 before anything moves (that decides upload,
download or nothing), while a file the server lacks is uploaded whatever its
checksum, so planning leaves its hash to the upload (see
:mod:`pollinator.cfs.transfer`). The stat cache makes a no-change re-sync
read no file at all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator, Optional

from pollinator.cfs.cancel import CancelToken
from pollinator.cfs.hashing import StatCache
from pollinator.cfs.ignore import IgnoreRules
from pollinator.cfs.paths import TMP_PREFIX
from pollinator.cfs.pool import WorkerPool
from pollinator.errors import SyncError

log = logging.getLogger(__name__)

Scanned = dict[str, dict[str, tuple[str, os.stat_result]]]
"""``{rel_dir: {name: (full path, stat)}}`` of the regular files under a root."""

ToHash = tuple[str, str, str, os.stat_result]
"""``(rel_dir, name, full path, stat)``."""


def _is_utf8(name: str) -> bool:
    """False for names holding undecodable bytes (os.scandir gives them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def scan(root: Path, rules: IgnoreRules) -> Scanned:
    """Every regular file under ``root`` by POSIX sub-directory; symlinks leaving ``root`` are skipped."""
    root_real = os.path.realpath(root)
    out: Scanned = {}
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


def checksums(cache: StatCache, items: list[ToHash], pool: WorkerPool,
              cancel: Optional[CancelToken] = None) -> Iterator[tuple[str, str, str, os.stat_result]]:
    """``(rel_dir, name, sha256, stat)`` of every item: from the cache, else hashed on the pool."""
    misses = []
    for rel_dir, name, full, st in items:
        rel = f"{rel_dir}/{name}" if rel_dir else name
        digest = cache.lookup(rel, st)
        if digest is None:
            misses.append((rel_dir, name, full, st))
        else:
            yield rel_dir, name, digest, st

    def hash_one(item: ToHash) -> tuple[str, str, str, os.stat_result]:
        rel_dir, name, full, st = item
        rel = f"{rel_dir}/{name}" if rel_dir else name
        try:
            return rel_dir, name, cache.checksum(rel, full, st), st
        except OSError as exc:
            raise SyncError(f"cannot read {full}: {exc.strerror or exc}") from exc

    # Biggest first so the long hashes overlap with the many small ones.
    misses.sort(key=lambda it: -it[3].st_size)
    yield from pool.map(hash_one, misses, cancel)
