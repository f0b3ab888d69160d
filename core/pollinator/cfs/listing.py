"""The server side of planning: what a label (and its sub-labels) or a snapshot holds, validated.

Every record is checked (:func:`pollinator.cfs.paths.check_name`,
``rel_dir_of``) before anything is written: a record whose label or name
would leave the target directory fails the whole operation up front.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from pollinator.cfs.cancel import CancelToken
from pollinator.cfs.ignore import IgnoreRules
from pollinator.cfs.paths import check_name, is_under, normalize_label, rel_dir_of
from pollinator.cfs.plan import RemoteFile
from pollinator.cfs.pool import WorkerPool
from pollinator.cfs.s3 import record_endpoint
from pollinator.errors import ColoniesError, SyncError

if TYPE_CHECKING:
    from pollinator.colonies.client import ColoniesClient
    from pollinator.colonies.models import File

log = logging.getLogger(__name__)

RemoteTree = dict[str, dict[str, RemoteFile]]
"""``{rel_dir: {name: RemoteFile}}``: a label's files by sub-directory (``""`` for the label itself)."""


def labels_under(client: "ColoniesClient", label: str) -> list[str]:
    """``label`` and its sub-labels that hold files."""
    # exact=false is a prefix match ("/a" also returns "/ab"); filter to the label and its sub-labels.
    # (exact=true would hide the sub-labels whenever the label itself holds no file.)
    try:
        found = client.get_file_labels(label if label != "/" else "", False) or []
    except ColoniesError as exc:
        raise SyncError(f"cannot list the labels under {label}: {exc}") from exc
    return sorted({lb.name for lb in found if is_under(lb.name, label)})


def label_files(client: "ColoniesClient", label: str) -> list[RemoteFile]:
    """The latest revision of every file of one label (no sub-labels)."""
    try:
        rows = client.get_files(label) or []
    except ColoniesError as exc:
        raise SyncError(f"cannot list the files of label {label}: {exc}") from exc
    return [RemoteFile(label=label, name=r.name, size=r.size, checksum=r.checksum, s3_object=r.s3filename)
            for r in rows]


def remote_tree(client: "ColoniesClient", label: str, rules: IgnoreRules, pool: WorkerPool,
                cancel: Optional[CancelToken] = None) -> RemoteTree:
    """One getfilelabelsmsg, then one getfilesmsg per label (concurrently); every record validated."""
    labels = labels_under(client, label)
    listings = pool.map(lambda lb: (lb, label_files(client, lb)), labels, cancel)
    tree: RemoteTree = {}
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


def list_files(client: "ColoniesClient", label: str, pool: WorkerPool) -> list[RemoteFile]:
    """Latest revision of every file under ``label`` and its sub-labels, sorted by label and name."""
    out: list[RemoteFile] = []
    for files in pool.map(lambda lb: label_files(client, lb), labels_under(client, label)):
        out.extend(files)
    return sorted(out, key=lambda f: (f.label, f.name))


def snapshot_tree(client: "ColoniesClient", snapshot_id: str, pool: WorkerPool, s3_endpoint: str = "",
                  cancel: Optional[CancelToken] = None) -> tuple[str, RemoteTree]:
    """A snapshot's label and its files (the exact revisions it froze)."""
    try:
        snap = client.get_snapshot(snapshot_id=snapshot_id)
    except ColoniesError as exc:
        raise SyncError(f"cannot get snapshot {snapshot_id}: {exc}") from exc
    if snap is None:
        raise SyncError(f"snapshot {snapshot_id} not found")
    root_label = normalize_label(snap.label)

    def fetch(file_id: str) -> "File":
        try:
            revs = client.get_file(file_id=file_id)
        except ColoniesError as exc:
            raise SyncError(f"cannot get file {file_id} of snapshot {snapshot_id}: {exc}") from exc
        if not revs or len(revs) != 1:
            raise SyncError(f"snapshot {snapshot_id}: file {file_id} has no unique revision")
        return revs[0]

    records = pool.map(fetch, list(snap.fileids or []), cancel)
    remote: RemoteTree = {}
    for rec in records:
        rel_dir = rel_dir_of(rec.label, root_label, name=rec.name)
        check_name(rec.name, label=rec.label)
        obj = rec.ref.s3object
        remote.setdefault(rel_dir, {})[rec.name] = RemoteFile(label=rec.label, name=rec.name, size=rec.size,
                                                              checksum=rec.checksum, s3_object=obj.object)
        log.debug("snapshot file %s/%s recorded at %s; fetching from %s", rec.label, rec.name,
                  record_endpoint(obj.server, obj.port), s3_endpoint)
    return root_label, remote
