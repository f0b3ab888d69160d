"""Point a Pollinator launcher's ``/cfs`` paths at this executor's fs dir.

A container executor mounts ColonyFS at ``/cfs``; this executor has no
container, so :mod:`pollinator.executor.launch` rewrites ``/cfs`` paths in
cmd, args and env instead. A job submitted through the launcher
(:mod:`pollinator.launcher`) carries its real cmd, args and env inside the
launcher file, so the same rewrite is applied there, once the run's files are
staged. The launcher keeps every value in single quotes: the fs dir must not
hold a ``'``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Optional

from pollinator.executor.launch import JobSpecError, PathMapper
from pollinator.launcher import INTERNAL_DIR, MAGIC_PREFIX

WALLTIME_LAUNCHER = 2
"""The first launcher version that enforces ``$POLLINATOR_WALLTIME`` itself (pollinator.launcher.VERSION)."""


def launcher_file(command: str) -> Optional[Path]:
    """The launcher a (rewritten) ``sh <path>`` command runs, if it is one of ours."""
    return launcher_of(command)[0]


def launcher_of(command: str) -> tuple[Optional[Path], int]:
    """The launcher ``command`` runs and its version (:data:`pollinator.launcher.VERSION`); (None, 0) if none."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None, 0
    if len(words) != 2 or words[0] != "sh":
        return None, 0
    path = Path(words[1])
    try:
        with path.open("rb") as fh:
            head = fh.read(256).split(b"\n")
    except OSError:
        return None, 0
    magic = head[1].decode("ascii", "replace") if len(head) > 1 else ""
    version = magic[len(MAGIC_PREFIX):]
    if not magic.startswith(MAGIC_PREFIX) or not version.isdigit():
        return None, 0
    return path, int(version)


def localize(command: str, mapper: PathMapper) -> int:
    """Rewrite the launcher ``command`` runs (in place); its version, 0 when it runs no launcher of ours."""
    path, version = launcher_of(command)
    if path is None:
        return 0
    if "'" in str(mapper.fs_dir):
        raise JobSpecError(f"the executor fs dir {mapper.fs_dir} holds a ' and cannot be written into a launcher")
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    path.write_bytes(mapper.rewrite(text).encode("utf-8", "surrogateescape"))
    return version


def recorded_reason(result_dir: Optional[str], since: float = 0.0) -> str:
    """Why the launcher ended the job itself ("walltime exceeded (60 s)"), from its exit records in
    ``result_dir`` (the job's ``$POLLINATOR_RESULT_DIR`` here) written at or after ``since`` (``time.time()``;
    an earlier attempt's record may have been synced down); "" when it did not or left no record."""
    if not result_dir:
        return ""
    records = sorted(Path(result_dir, INTERNAL_DIR).glob("exit*.json"), key=lambda p: (p.name != "exit.json", p.name))
    for path in records:
        try:
            if path.stat().st_mtime < since - 1.0:  # (file systems keep coarse times)
                continue
            reason = json.loads(path.read_text(encoding="utf-8")).get("reason")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(reason, str) and reason:
            return reason
    return ""
