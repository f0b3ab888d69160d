"""A successful run's results frozen as a ColonyFS snapshot, and pinned inputs resolved at submit.

A label is "latest": a later run (or a concurrent one writing the same label)
changes what it holds. A snapshot is an immutable set of file revisions, so
recording a run's results as one lets a downstream step (another task, a DAG
triggered by an Airflow asset event, another Prefect flow) mount exactly the
files this run produced: ``inputs={"prep": result.pinned_input()}``.

The snapshot is named after the process (``result-<process_id>``): finishing
the same process again (a re-attached handle, a second ``finish()``) finds the
snapshot made the first time instead of freezing a later state of the label.
Its file list (relative path, size, checksum) leaves out the run's internal
files (``.pollinator/``), like every result listing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping

from pydantic import BaseModel, ConfigDict

from pollinator.cfs.paths import normalize_label
from pollinator.errors import ColoniesError, ProjectError, SyncError
from pollinator.launcher import INTERNAL_DIR
from pollinator.pins import parse_input

if TYPE_CHECKING:
    from pollinator.cfs import CFS

log = logging.getLogger(__name__)


class ResultFile(BaseModel):
    """One file of a pinned result: its path under the result label, size in bytes, content checksum."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    checksum: str


def snapshot_name(process_id: str) -> str:
    return f"result-{process_id}"


def pin_result(cfs: "CFS", label: str, process_id: str) -> tuple[str, list[ResultFile]]:
    """Snapshot ``label`` for ``process_id`` (once) and list the user's files it froze."""
    name = snapshot_name(process_id)
    try:
        snapshot_id = cfs.create_snapshot(label, name).snapshotid
    except SyncError as exc:
        found = _existing(cfs, name)
        if found is None or normalize_label(found.label) != normalize_label(label):
            raise
        log.debug("result snapshot %s exists already (%s)", name, exc)
        snapshot_id = found.snapshotid
    return snapshot_id, snapshot_files(cfs, snapshot_id)


def snapshot_files(cfs: "CFS", snapshot_id: str) -> list[ResultFile]:
    """The user's files a snapshot holds (internal ``.pollinator/`` files left out), sorted by path."""
    _root, tree = cfs.snapshot_tree(snapshot_id)
    files = []
    for rel_dir, named in tree.items():
        if rel_dir == INTERNAL_DIR or rel_dir.startswith(INTERNAL_DIR + "/"):
            continue
        for name, f in named.items():
            files.append(ResultFile(path=f"{rel_dir}/{name}" if rel_dir else name, size=f.size, checksum=f.checksum))
    return sorted(files, key=lambda f: f.path)


def input_snapshots(cfs: "CFS", inputs: Mapping[str, str]) -> dict[str, str]:
    """The snapshot each input mounts: a new one of a label's latest files, or the pinned one (checked).

    A pinned snapshot that does not exist, or belongs to another label, is a
    ProjectError naming the input: nothing is submitted.
    """
    snaps: dict[str, str] = {}
    for name, value in inputs.items():
        ref = parse_input(value)
        if ref.snapshot_id is None:
            snaps[name] = cfs.create_snapshot(ref.label).snapshotid
            continue
        found = _existing(cfs, snapshot_id=ref.snapshot_id)
        if found is None:
            raise ProjectError(f"input {name!r}: snapshot {ref.snapshot_id} does not exist (removed, or from "
                               "another colony); mount the label instead, or a snapshot that exists")
        if normalize_label(found.label) != normalize_label(ref.label):
            raise ProjectError(f"input {name!r}: snapshot {ref.snapshot_id} is of label {found.label}, not "
                               f"{ref.label}; write {found.label}@{ref.snapshot_id}")
        snaps[name] = ref.snapshot_id
    return snaps


def _existing(cfs: "CFS", name: str = "", snapshot_id: str = ""):
    try:
        return cfs.client.get_snapshot(snapshot_id=snapshot_id, name=name)
    except ColoniesError:
        return None  # the server says "not found" as an error


def input_mounts(spec) -> dict[str, tuple[str, str]]:
    """``name -> (label, snapshot id)`` of the inputs a submitted spec mounts (what the process really read)."""
    from pollinator.run.build import INPUT_ENV_PREFIX

    found: dict[str, tuple[str, str]] = {}
    env = spec.env or {}
    for key, path in env.items():
        if not key.startswith(INPUT_ENV_PREFIX):
            continue
        for mount in spec.fs.snapshots or []:
            if path.endswith(mount.dir):
                found[key[len(INPUT_ENV_PREFIX):].lower()] = (mount.label, mount.snapshotid)
    return found
