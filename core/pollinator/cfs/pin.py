"""Per-run labels built from file records, so a run's snapshot holds exactly its own file versions.

Why not "sync the shared label, then snapshot it" (what the Go tool does): a
snapshot takes the *latest* revision of every name in the label at that
moment, so when two runs of one project upload at the same time, run A's
snapshot can hold run B's version of a file (a sweep's call file carrying the
arguments, a data file). Checking the snapshot afterwards and retrying works
but can loop under contention and needs one getfilemsg per file to check.

Here a run keeps the shared Go label current (its changed files are uploaded
there as new revisions, as before) and then registers, in a label only it
writes (``/pollinator/<p>/runs/<run_id>/src``), one record per local file
pointing at the S3 object holding exactly those bytes: the object it just
uploaded, or the identical one the server already had. No byte is uploaded
twice; the cost is one ``addfilemsg`` per file (concurrent, on the CFS worker
pool). The snapshot of that label is exactly this run's files, by construction.

Nothing in ColonyFS deletes S3 objects behind a record: our sync never deletes
(module doc of :mod:`pollinator.cfs.engine`), ``removefilemsg`` and
``removesnapshotmsg`` drop metadata only, so a record (and a snapshot) that
points at another label's object stays valid whatever later syncs do.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping

from pollinator.cfs.engine import CFS
from pollinator.cfs.paths import check_name, label_for, normalize_label, rel_dir_of
from pollinator.cfs.plan import RemoteFile


def pin_dir(cfs: CFS, local_dir: str | os.PathLike[str], shared_label: str, run_label: str) -> list[RemoteFile]:
    """Upload ``local_dir``'s changes to ``shared_label`` and register exactly its files under ``run_label``.

    Files only the server has are neither downloaded nor pinned: the run is
    made of the local files as they are now. Returns the records registered
    (their ``label`` is under ``run_label``).
    """
    shared_label, run_label = normalize_label(shared_label), normalize_label(run_label)
    plan = cfs.plan(local_dir, shared_label, keep_local=True)
    for lp in plan.labels:
        lp.download = []  # a run pushes; what other runs left in the shared label is not ours
    report = cfs.apply(plan)
    wanted: list[tuple[str, RemoteFile]] = []
    for lp in plan.labels:
        wanted.extend((lp.rel_dir, RemoteFile(label=lp.label, name=pf.name, size=pf.size, checksum=pf.checksum,
                                              s3_object=pf.s3_object)) for pf in lp.same)
    wanted.extend((rel_dir_of(rec.label, shared_label, name=rec.name), rec) for rec in report.records)
    return register_all(cfs, [(label_for(run_label, rel_dir), f) for rel_dir, f in wanted])


def register_all(cfs: CFS, items: list[tuple[str, RemoteFile]]) -> list[RemoteFile]:
    """One record per ``(label, file)`` pointing at the file's S3 object, concurrently."""
    def one(item: tuple[str, RemoteFile]) -> RemoteFile:
        label, f = item
        cfs.register(label, f.name, f.size, f.checksum, f.s3_object)
        return RemoteFile(label=label, name=f.name, size=f.size, checksum=f.checksum, s3_object=f.s3_object)

    return cfs.pool.map(one, items)


def put_files(cfs: CFS, label: str, files: Mapping[str, bytes]) -> list[RemoteFile]:
    """Upload small in-memory files (name -> bytes) into ``label``, concurrently."""
    def one(item: tuple[str, bytes]) -> RemoteFile:
        name, data = item
        rec = cfs.put_bytes(label, name, data)
        return RemoteFile(label=rec.label, name=name, size=rec.size, checksum=rec.checksum,
                          s3_object=rec.ref.s3object.object)

    for name in files:
        check_name(name, label=label)
    return cfs.pool.map(one, sorted(files.items()))


def publish(cfs: CFS, run_label: str, latest_label: str, skip: Callable[[str], bool] = lambda _rel: False
            ) -> list[str]:
    """Point ``latest_label`` at the files of ``run_label`` (new revisions of changed names; nothing uploaded).

    ``skip(rel_path)`` leaves internal files out. Names the run did not
    produce stay in ``latest_label`` (ColonyFS never deletes on sync, as in
    the Go layout). Returns the relative paths published.
    """
    run_label, latest_label = normalize_label(run_label), normalize_label(latest_label)
    current = {}
    for f in cfs.list(latest_label):
        current[(rel_dir_of(f.label, latest_label, name=f.name), f.name)] = f.checksum
    items, published = [], []
    for f in cfs.list(run_label):
        rel_dir = rel_dir_of(f.label, run_label, name=f.name)
        rel = f"{rel_dir}/{f.name}" if rel_dir else f.name
        if skip(rel) or current.get((rel_dir, f.name)) == f.checksum:
            continue
        items.append((label_for(latest_label, rel_dir), f))
        published.append(rel)
    register_all(cfs, items)
    return sorted(published)
