"""One run's own place: its id, labels, what it stages before submit and what it publishes after success.

Concurrent runs of one job name (a sweep's mapped tasks, two ``pollinator run``
side by side) must never see each other's arguments, data or results. So
everything of a run is addressed by its ``run_id`` (minted at submit, carried
in the spec as ``POLLINATOR_RUN_ID``), under ``/pollinator/<name>/runs/<run_id>/``
(see :class:`pollinator.spec.RunLabels`):

* ``src``: records of exactly the src files this run was submitted with,
  snapshotted and mounted at ``$PROJECT_DIR/<snapshot>/src`` (built with
  :func:`pollinator.cfs.pin.pin_dir`; why not "sync + snapshot the shared
  label": see that module);
* ``data``: the same for ``data_dir``, snapshotted and mounted at
  ``$PROJECT_DIR/data`` where a Go-style job reads it;
* ``files``: small per-run files (a launcher, a remote function's call file)
  given as ``{name: bytes}`` in :attr:`pollinator.run.Job.run_files`, mounted at
  ``$POLLINATOR_RUN_FILES`` (a snapshot: never synced back);
* ``result``: a sync dir only this run writes (``$POLLINATOR_RESULT_DIR`` =
  ``$PROJECT_DIR/result``); the run's :class:`~pollinator.run.JobResult` points
  at it.

The Go layout ``/pollinator/<name>/{src,data}`` is still kept current (changed
files are uploaded there first; the run's records point at those objects), and
``/pollinator/<name>/result`` (or the job's ``result_label``) is the "latest
successful" label: after a run succeeds, the client that waits for it adds
that run's result files there as new revisions (:func:`publish_latest`; names
the run did not write stay, as ColonyFS never deletes). A failed run never
touches it. Two runs succeeding at the same moment may interleave there; read
the run's own ``result_label`` (or its snapshot) for exact files.

Internal files of a run live in ``.pollinator/`` inside its result dir; they
are never listed as result files, pulled or published.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from pollinator.cfs.paths import check_name
from pollinator.colonies.models import FunctionSpec
from pollinator.errors import ProjectError, UnsafePathError
from pollinator.launcher import INTERNAL_DIR
from pollinator.run.build import LATEST_ENV  # the "latest successful" label a run is published to
from pollinator.spec import RESULT_DIR_ENV, RUN_FILES_ENV, RUN_ID_ENV, RunLabels, labels, run_labels

__all__ = ["RUN_ID_ENV", "RESULT_DIR_ENV", "RUN_FILES_ENV", "LATEST_ENV", "INTERNAL_DIR", "is_internal",
           "check_run_files", "Staged", "stage", "publish_latest", "latest_label_of", "RunLabels", "run_labels"]



def is_internal(rel_path: str) -> bool:
    """True for a run's internal files (``.pollinator/...`` in its result dir)."""
    return rel_path == INTERNAL_DIR or rel_path.startswith(INTERNAL_DIR + "/")


def check_run_files(files: Mapping[str, bytes]) -> None:
    """Refuse unusable run files before anything moves (a plain name and bytes each)."""
    for name, data in files.items():
        try:
            check_name(name)
        except UnsafePathError:
            raise ProjectError(f"run_files: {name!r} is not a plain file name (no '/', not empty, '.' or '..')"
                               ) from None
        if not isinstance(data, (bytes, bytearray)):
            raise ProjectError(f"run_files[{name!r}] is {type(data).__name__}: give the file's bytes")


@dataclass(frozen=True)
class Staged:
    """The snapshots one run is submitted with (``None``: nothing of that kind)."""

    src_snapshot: Optional[str] = None
    data_snapshot: Optional[str] = None
    files_snapshot: Optional[str] = None


def stage(cfs, name: str, run_id: str, *, src_dir: Optional[Path] = None, data_dir: Optional[Path] = None,
          run_files: Optional[Mapping[str, bytes]] = None) -> Staged:
    """Upload and pin everything of run ``run_id`` of ``name``; returns its snapshot ids.

    A src dir and a data dir get a snapshot whenever they exist (the spec
    mounts them: see :func:`pollinator.run.build.has_data`), run files when given.
    """
    from pollinator.cfs.pin import pin_dir, put_files

    go, rl = labels(name), run_labels(name, run_id)
    src = data = files = None
    if src_dir is not None and Path(src_dir).is_dir():
        pin_dir(cfs, Path(src_dir), go.src, rl.src)
        src = cfs.create_snapshot(rl.src).snapshotid
    if data_dir is not None and Path(data_dir).is_dir():
        pin_dir(cfs, Path(data_dir), go.data, rl.data)
        data = cfs.create_snapshot(rl.data).snapshotid
    if run_files:
        put_files(cfs, rl.files, dict(run_files))
        files = cfs.create_snapshot(rl.files).snapshotid
    return Staged(src, data, files)


def publish_latest(cfs, result_label: str, latest_label: str, skip: Callable[[str], bool] = is_internal
                   ) -> list[str]:
    """After success: the run's result files become the latest revisions of ``latest_label``."""
    from pollinator.cfs.pin import publish

    if not latest_label or not result_label or latest_label == result_label:
        return []
    return publish(cfs, result_label, latest_label, skip=skip)


def latest_label_of(spec: FunctionSpec) -> str:
    """The "latest successful" label a per-run process is published to ("" if none)."""
    return (spec.env or {}).get(LATEST_ENV, "")
