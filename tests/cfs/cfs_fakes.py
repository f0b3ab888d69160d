"""Helpers for the CFS tests: an in-memory Colonies file store (unit tests only), small file utilities."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import Optional

from pydantic import SecretStr

from pollinator.colonies import crypto
from pollinator.colonies.models import File, FileSummary, Label, Snapshot
from pollinator.config import S3Settings
from pollinator.errors import NotFound, ServerError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_settings(endpoint: str, bucket: Optional[str] = None) -> S3Settings:
    return S3Settings(endpoint=endpoint, access_key=SecretStr("test-access"), secret_key=SecretStr("test-secret"),
                      bucket=bucket or f"b-{uuid.uuid4().hex[:12]}", region="us-east-1")


class FakeColonies:
    """The file half of a Colonies server, in memory, with the real server's semantics.

    Used only by unit tests; the integration tests talk to the real dev server.
    """

    def __init__(self, colony_name: str = "dev"):
        self.colony_name = colony_name
        self.files: list[File] = []
        self.snapshots: dict[str, Snapshot] = {}
        self.calls: list[str] = []
        self.fail_next: dict[str, int] = {}
        self._seq = 0

    def _call(self, msgtype: str) -> None:
        self.calls.append(msgtype)
        if self.fail_next.get(msgtype, 0) > 0:
            self.fail_next[msgtype] -= 1
            raise ServerError("injected", status=500, msgtype=msgtype)

    def add_file(self, file: File) -> File:
        self._call("addfilemsg")
        self._seq += 1
        stored = file.model_copy(deep=True, update={"fileid": crypto.random_id(), "sequencenr": self._seq})
        self.files.append(stored)
        return stored

    def _latest(self, label: str) -> dict[str, File]:
        out: dict[str, File] = {}
        for f in self.files:
            if f.label == label and (f.name not in out or out[f.name].sequencenr < f.sequencenr):
                out[f.name] = f
        return out

    def get_files(self, label: str) -> list[FileSummary]:
        self._call("getfilesmsg")
        return [FileSummary(name=f.name, checksum=f.checksum, size=f.size, s3filename=f.ref.s3object.object)
                for f in self._latest(label).values()]

    def get_file_labels(self, name: str = "", exact: bool = False) -> list[Label]:
        self._call("getfilelabelsmsg")
        labels = sorted({f.label for f in self.files if f.label.startswith(name)})
        return [Label(name=lb, files=len(self._latest(lb))) for lb in labels]

    def get_file(self, *, file_id: str = "", label: str = "", name: str = "", latest: bool = True) -> list[File]:
        self._call("getfilemsg")
        found = [f for f in self.files if f.fileid == file_id] if file_id else \
            sorted([f for f in self.files if f.label == label and f.name == name], key=lambda f: -f.sequencenr)
        if not found:
            raise NotFound("Failed to get file", status=404, msgtype="getfilemsg")
        return found[:1] if latest else found

    def create_snapshot(self, label: str, name: str) -> Snapshot:
        self._call("createsnapshotmsg")
        labels = {f.label for f in self.files if f.label == label or f.label.startswith(label + "/")}
        ids = [f.fileid for lb in sorted(labels) for f in self._latest(lb).values()]
        snap = Snapshot(snapshotid=crypto.random_id(), colonyname=self.colony_name, label=label, name=name,
                        fileids=ids)
        self.snapshots[snap.snapshotid] = snap
        return snap

    def get_snapshot(self, *, snapshot_id: str = "", name: str = "") -> Snapshot:
        self._call("getsnapshotmsg")
        for s in self.snapshots.values():
            if s.snapshotid == snapshot_id or (name and s.name == name):
                return s
        raise ServerError("Snapshot not found", status=500, msgtype="getsnapshotmsg")

    def remove_snapshot(self, *, snapshot_id: str = "", name: str = "") -> None:
        self._call("removesnapshotmsg")
        self.snapshots.pop(snapshot_id, None)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root except bookkeeping, as {posix rel path: bytes}."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if n == ".cfs" or p.is_symlink():
                continue
            out[rel] = p.read_bytes()
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
