"""What a sync will do, decided before any byte moves: the ``SyncPlan``.

A plan has one ``LabelPlan`` per label involved (the root label and one per
sub-directory/sub-label). Per label, exactly like the Go ``CalcSyncPlan``:

* ``upload``: local files the server does not have (always uploaded),
* ``download``: server files missing locally (always downloaded, whatever
  ``keep_local`` says: the Go client's LocalMissing),
* ``conflicts``: same name, different SHA-256. ``keep_local=True`` uploads the
  local file as a new revision; ``keep_local=False`` overwrites the local file
  with the server's latest revision.

Nothing is ever deleted on either side. The plan is pure data (pydantic), so
``--dry-run`` prints it and ``apply`` executes it without consulting anything
but the records it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from pydantic import BaseModel, Field, computed_field


class PlannedFile(BaseModel):
    """One file to move. ``checksum`` is the one the destination must end up with.

    For an upload of a file the server does not have yet, ``checksum`` may be
    ``""``: planning does not read such files, the engine hashes them while it
    uploads them (see ``CFS._upload``).
    """

    name: str
    size: int
    checksum: str
    s3_object: str = ""  # the S3 object to download (downloads / remote-wins conflicts)
    mtime_ns: int = 0  # local stat at planning time (uploads), to catch edits during the sync
    inode: int = 0


class LabelPlan(BaseModel):
    label: str
    rel_dir: str = Field("", description="POSIX sub-directory of the synced dir ('' for the root)")
    upload: list[PlannedFile] = Field(default_factory=list)
    download: list[PlannedFile] = Field(default_factory=list)
    conflicts: list[PlannedFile] = Field(default_factory=list)
    # identical on both sides (with the server's S3 object): nothing to move, but a per-run label built from
    # this plan points at them (see pollinator.cfs.pin); left out of dumps, a dry run shows what moves
    same: list[PlannedFile] = Field(default_factory=list, exclude=True)

    @property
    def is_empty(self) -> bool:
        return not (self.upload or self.download or self.conflicts)


class SyncPlan(BaseModel):
    local_dir: str
    label: str
    keep_local: bool
    labels: list[LabelPlan] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_empty(self) -> bool:
        return all(lp.is_empty for lp in self.labels)

    def _count(self, attr: str) -> tuple[int, int]:
        files = [f for lp in self.labels for f in getattr(lp, attr)]
        return len(files), sum(f.size for f in files)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def upload_count(self) -> int:
        return self._count("upload")[0] + (self._count("conflicts")[0] if self.keep_local else 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def download_count(self) -> int:
        return self._count("download")[0] + (0 if self.keep_local else self._count("conflicts")[0])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def upload_bytes(self) -> int:
        return self._count("upload")[1] + (self._count("conflicts")[1] if self.keep_local else 0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def download_bytes(self) -> int:
        return self._count("download")[1] + (0 if self.keep_local else self._count("conflicts")[1])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conflict_count(self) -> int:
        return self._count("conflicts")[0]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_files(self) -> int:
        return self.upload_count + self.download_count

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_bytes(self) -> int:
        return self.upload_bytes + self.download_bytes

    def remote_paths(self) -> list[str]:
        """Every server file the plan knows of, as ``rel_dir/name`` (sorted).

        For a pull plan (:meth:`pollinator.cfs.CFS.plan_pull`) that is the whole
        label, whether or not a file has to move: the names and the download
        come from one listing.
        """
        out: list[str] = []
        for lp in self.labels:
            files = lp.download + lp.same + ([] if self.keep_local else lp.conflicts)
            out.extend(f"{lp.rel_dir}/{f.name}" if lp.rel_dir else f.name for f in files)
        return sorted(out)

    def summary(self) -> str:
        rule = "keep local" if self.keep_local else "keep remote"
        return (f"{self.label} <-> {self.local_dir}: upload {self.upload_count} file(s) ({self.upload_bytes} B), "
                f"download {self.download_count} file(s) ({self.download_bytes} B), "
                f"{self.conflict_count} conflict(s) ({rule})")


class SyncReport(BaseModel):
    label: str
    local_dir: str
    uploaded: list[str] = Field(default_factory=list, description="label/name of every file uploaded")
    downloaded: list[str] = Field(default_factory=list, description="label/name of every file written locally")
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    # label, name, size, checksum and S3 object of every record this apply registered (uploads)
    records: list[RemoteFile] = Field(default_factory=list, exclude=True)

    @property
    def files(self) -> int:
        return len(self.uploaded) + len(self.downloaded)


@dataclass(slots=True)
class LocalFile:
    """A local file as planning sees it (a plain dataclass: a plan may hold 100,000 of them)."""

    name: str
    size: int
    checksum: str
    mtime_ns: int = 0
    inode: int = 0


@dataclass(slots=True, kw_only=True)
class RemoteFile:
    """A server file (latest revision) as getfilesmsg describes it, with its label."""

    label: str = ""
    name: str
    size: int
    checksum: str
    s3_object: str = ""


def plan_label(label: str, rel_dir: str, local: Mapping[str, LocalFile], remote: Mapping[str, RemoteFile],
               keep_local: bool) -> LabelPlan:
    """Compare one directory with one label (the Go CalcSyncPlan rules, see module doc)."""
    lp = LabelPlan(label=label, rel_dir=rel_dir)
    for name in sorted(local):
        lf = local[name]
        rf: Optional[RemoteFile] = remote.get(name)
        if rf is not None and rf.checksum == lf.checksum:
            lp.same.append(PlannedFile(name=name, size=rf.size, checksum=rf.checksum, s3_object=rf.s3_object))
            continue
        if rf is None or keep_local:
            up = PlannedFile(name=name, size=lf.size, checksum=lf.checksum, mtime_ns=lf.mtime_ns, inode=lf.inode)
            (lp.upload if rf is None else lp.conflicts).append(up)
        else:
            lp.conflicts.append(PlannedFile(name=name, size=rf.size, checksum=rf.checksum, s3_object=rf.s3_object))
    for name in sorted(remote):
        if name not in local:
            rf = remote[name]
            lp.download.append(PlannedFile(name=name, size=rf.size, checksum=rf.checksum, s3_object=rf.s3_object))
    return lp
