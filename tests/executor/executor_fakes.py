"""Tiny stand-ins for the Colonies client and CFS, recording what the executor does."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Optional

from pollinator.colonies.models import FunctionSpec, Process, ProcessState
from pollinator.errors import AccessDenied, BadRequest


class FakeClient:
    """Behaves like the server for one executor: addlog only while RUNNING, close once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logs: list[tuple[float, str]] = []
        self.closed: Optional[tuple[str, Any]] = None
        self.state = ProcessState.RUNNING
        self.assigned = "exec-id"
        self.get_calls = 0
        self.retries = 0

    def cancel(self) -> None:
        with self.lock:
            self.state = ProcessState.CANCELLED

    def add_log(self, process_id: str, message: str) -> dict:
        with self.lock:
            if self.state != ProcessState.RUNNING:
                raise AccessDenied("Failed to set output, process is not running", status=403)
            self.logs.append((time.monotonic(), message))
        return {}

    def get_process(self, process_id: str) -> Process:
        with self.lock:
            self.get_calls += 1
            return Process(processid=process_id, state=int(self.state), assignedexecutorid=self.assigned,
                           retries=self.retries)

    def _close(self, kind: str, value: Any) -> dict:
        with self.lock:
            if self.state == ProcessState.CANCELLED:
                raise BadRequest("Tried to set cancelled process as successful", status=400)
            self.closed = (kind, value)
            self.state = ProcessState.SUCCESS if kind == "success" else ProcessState.FAILED
        return {}

    def close_successful(self, process_id: str, out: Optional[list[Any]] = None) -> dict:
        return self._close("success", out or [])

    def close_failed(self, process_id: str, errors: list[str]) -> dict:
        return self._close("failed", list(errors))

    @property
    def lines(self) -> list[str]:
        with self.lock:
            return "".join(m for _, m in self.logs).splitlines()


class FakeCFS:
    """Records calls; 'downloads' a snapshot as a file, 'syncs' by copying to/from a dict of labels."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.labels: dict[str, dict[str, bytes]] = {}

    def download_snapshot(self, snapshot_id: str, dir: Path) -> None:
        self.calls.append(("download", snapshot_id, Path(dir)))
        (Path(dir) / "snap.txt").write_text(f"snapshot {snapshot_id}")

    def sync(self, local_dir: Path, label: str, keep_local: bool) -> None:
        self.calls.append(("sync", Path(local_dir), label, keep_local))
        files = self.labels.setdefault(label, {})
        local = Path(local_dir)
        for name, data in files.items():
            if not (local / name).exists():
                (local / name).write_bytes(data)
        for path in local.rglob("*"):
            if path.is_file():
                files.setdefault(str(path.relative_to(local)), path.read_bytes())

    def remove_snapshot(self, snapshot_id: str) -> None:
        self.calls.append(("remove_snapshot", snapshot_id))


def process(kwargs: dict, *, funcname: str = "execute", env: Optional[dict] = None, pid: str = "p" * 64,
            **spec_fields: Any) -> Process:
    spec = FunctionSpec(funcname=funcname, kwargs=kwargs, env=env, **spec_fields)
    return Process(processid=pid, state=1, assignedexecutorid="exec-id", spec=spec)
