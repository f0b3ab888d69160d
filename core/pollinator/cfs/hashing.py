"""Streaming SHA-256 and the stat cache that makes a no-change re-sync hash nothing.

ColonyFS compares files by the hex SHA-256 of their bytes (``checksumalg
"SHA256"``, as the Go client). Hashing a 1 GiB tree on every sync is what
makes the Go client slow, so we remember ``(size, mtime_ns, inode) -> sha256``
per file and re-hash only files whose stat changed.

The cache lives outside the synced directory (``$POLLINATOR_CACHE_DIR`` or
``$XDG_CACHE_HOME/pollinator`` or ``~/.cache/pollinator``, one JSON file per
absolute directory), so neither we nor the Go CLI can ever upload it. If that
place is not writable the cache silently stays in memory: it is only an
optimisation.

"Racy" entries are never stored (the trick git uses): if a file was modified
so shortly before we started reading it that a later write could land on the
same mtime tick, we cannot tell a later change apart, so we hash it again next
time. The tick is taken as 20 ms, or 2 s when the filesystem stores whole
seconds only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_FINE_TICK_NS = 20_000_000
_COARSE_TICK_NS = 2_000_000_000


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, streamed (``hashlib.file_digest`` releases the GIL)."""
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_root() -> Path:
    explicit = os.environ.get("POLLINATOR_CACHE_DIR", "").strip()
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pollinator"


def _is_racy(st: os.stat_result, started_ns: int) -> bool:
    tick = _COARSE_TICK_NS if st.st_mtime_ns % 1_000_000_000 == 0 else _FINE_TICK_NS
    return started_ns - st.st_mtime_ns < tick


class HashingReader:
    """A read-only file wrapper that hashes what is read, as long as reads are sequential.

    The transfer manager reads a seekable upload in order, part by part, so
    the SHA-256 comes for free while the bytes go out. Any seek away from the
    hashed position marks the digest unusable (``digest()`` is then ``None``)
    and the caller hashes the file separately.
    """

    def __init__(self, f):
        self._f = f
        self._h = hashlib.sha256()
        self._pos = 0
        self._ok = True

    def read(self, n: int = -1) -> bytes:
        here = self._f.tell()
        data = self._f.read(n)
        if here == self._pos:
            self._h.update(data)
            self._pos += len(data)
        else:
            self._ok = False
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def digest(self, size: int) -> Optional[str]:
        return self._h.hexdigest() if self._ok and self._pos == size else None


class StatCache:
    """Thread-safe ``relpath -> (size, mtime_ns, inode, sha256)`` for one directory."""

    def __init__(self, directory: str | os.PathLike[str], path: Optional[Path] = None):
        real = os.path.realpath(directory)
        digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.path = path or cache_root() / "cfs" / f"{digest}.json"
        self._lock = threading.Lock()
        self._old: dict[str, list] = {}
        self._new: dict[str, list] = {}
        self._dirty = False
        self.hashed = 0  # files actually read this run (tests and benchmarks look at this)
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                doc = json.load(f)
            if doc.get("version") == CACHE_VERSION and isinstance(doc.get("entries"), dict):
                self._old = doc["entries"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.debug("ignoring unreadable stat cache %s: %s", self.path, exc)

    def lookup(self, rel: str, st: os.stat_result) -> Optional[str]:
        entry = self._old.get(rel)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns and entry[2] == st.st_ino:
            with self._lock:
                self._new[rel] = entry
            return entry[3]
        return None

    def checksum(self, rel: str, full: str | os.PathLike[str], st: os.stat_result) -> str:
        """The file's SHA-256, from the cache when its stat is unchanged."""
        cached = self.lookup(rel, st)
        if cached is not None:
            return cached
        started = time.time_ns()
        digest = sha256_file(full)
        after = os.stat(full)
        with self._lock:
            self.hashed += 1
            unchanged = (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
            if unchanged and not _is_racy(st, started):
                self._new[rel] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
                self._dirty = True
        return digest

    def remember(self, rel: str, st: os.stat_result, digest: str, started_ns: Optional[int] = None) -> None:
        """Record a checksum computed elsewhere (a verified download, a hash taken while uploading).

        ``started_ns``: when reading began, for the racy check; ``None`` for a
        file we wrote and verified ourselves (no one else's write can hide).
        """
        if started_ns is not None and _is_racy(st, started_ns):
            return
        with self._lock:
            self._new[rel] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
            self._dirty = True

    def save(self) -> None:
        """Persist the entries seen this run (dropping files that disappeared)."""
        with self._lock:
            if not self._dirty and set(self._new) == set(self._old):
                return
            entries = dict(self._new)
            doc = {"version": CACHE_VERSION, "entries": entries}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
            self._old, self._dirty = dict(entries), False
        except OSError as exc:
            log.debug("cannot write stat cache %s: %s", self.path, exc)
            try:
                tmp.unlink()
            except OSError:
                pass
