"""Labels, names and the local paths they map to — and refusing the hostile ones.

ColonyFS has one label per directory: ``/proj/data`` is the directory synced
as label ``/proj/data`` and its sub-directory ``x/y`` is label
``/proj/data/x/y``. Every record a server hands us names a file by (label,
name); before anything is written we prove that the pair lands inside the
target directory, because a record is data from the network, not a path we
chose. A name must be a single path component; a label suffix may have
several ``/``-separated components, none of them ``.``/``..``/empty, and no
component may contain a backslash, a NUL, or look like a Windows drive.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pollinator.errors import UnsafePathError

CFS_FILE = ".cfs"  # the Go client's per-directory {"label": ...} marker; never synced
TMP_PREFIX = ".cfs-tmp-"  # our in-flight downloads; never synced
_DRIVE = re.compile(r"^[A-Za-z]:")


def normalize_label(label: str) -> str:
    """``a/b/`` -> ``/a/b`` exactly as the Go CLI does (one leading slash, none trailing)."""
    label = label.strip().strip("/")
    return "/" + label


def label_for(root_label: str, rel_dir: str) -> str:
    """The label of a sub-directory (``rel_dir`` is ``""`` or ``a/b`` in POSIX form)."""
    return root_label if not rel_dir else (root_label.rstrip("/") + "/" + rel_dir)


def is_under(label: str, root_label: str) -> bool:
    """True for ``root_label`` itself and its sub-labels (``/a`` covers ``/a/b``, not ``/ab``)."""
    if root_label == "/":
        return label.startswith("/")
    return label == root_label or label.startswith(root_label + "/")


def _bad_component(part: str) -> str:
    if part in ("", ".", ".."):
        return f"the component {part!r} is not allowed"
    if "\x00" in part:
        return "it contains a NUL byte"
    if "\\" in part:
        return "it contains a backslash"
    if _DRIVE.match(part):
        return "it looks like a Windows drive"
    if "/" in part:
        return "it contains a slash"
    return ""


def _record(label: str, name: str) -> str:
    return f"label={label!r} name={name!r}" if name else f"label={label!r}"


def rel_dir_of(label: str, root_label: str, *, name: str = "") -> str:
    """The POSIX sub-directory a (sub-)label maps to, or UnsafePathError naming the record."""
    if not is_under(label, root_label):
        raise UnsafePathError(f"refusing record {_record(label, name)}: the label is not under {root_label!r}")
    suffix = label[len(root_label):] if root_label != "/" else label
    suffix = suffix.strip("/") if root_label == "/" else suffix[1:]
    if not suffix:
        return ""
    for part in suffix.split("/"):
        reason = _bad_component(part)
        if reason:
            raise UnsafePathError(f"refusing record {_record(label, name)}: the label escapes the target "
                                  f"directory ({reason})")
    return suffix


def check_name(name: str, *, label: str = "") -> str:
    """A record's file name must be one plain path component."""
    reason = _bad_component(name)
    if not reason and os.path.isabs(name):
        reason = "it is absolute"
    if not reason and (name == CFS_FILE or name.startswith(TMP_PREFIX)):
        reason = "it is reserved for sync bookkeeping"
    if reason:
        raise UnsafePathError(f"refusing record {_record(label, name)}: the name escapes the target directory "
                              f"({reason})")
    return name


def safe_target(root: Path, rel_dir: str, name: str) -> Path:
    """``root/rel_dir/name``, verified not to leave ``root`` through ``..`` or a symlink.

    Existing directories on the way must be real directories inside ``root``;
    the file itself may be an existing symlink (``os.replace`` replaces the
    link, it does not write through it).
    """
    root_real = Path(os.path.realpath(root))
    parent = root_real.joinpath(*rel_dir.split("/")) if rel_dir else root_real
    probe = root_real
    for part in (rel_dir.split("/") if rel_dir else []):
        probe = probe / part
        if probe.is_symlink():
            raise UnsafePathError(f"refusing to write {rel_dir}/{name}: {probe} is a symlink")
        if probe.exists() and not probe.is_dir():
            raise UnsafePathError(f"refusing to write {rel_dir}/{name}: {probe} is not a directory")
    target = parent / name
    if os.path.commonpath([root_real, os.path.realpath(parent)]) != str(root_real):
        raise UnsafePathError(f"refusing to write {rel_dir}/{name}: it leaves {root_real}")
    return target
