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

import shlex
from pathlib import Path
from typing import Optional

from pollinator.executor.launch import JobSpecError, PathMapper
from pollinator.launcher import MAGIC


def launcher_file(command: str) -> Optional[Path]:
    """The launcher a (rewritten) ``sh <path>`` command runs, if it is one of ours."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) != 2 or words[0] != "sh":
        return None
    path = Path(words[1])
    try:
        with path.open("rb") as fh:
            head = fh.read(256).split(b"\n")
    except OSError:
        return None
    return path if len(head) > 1 and head[1].decode("ascii", "replace") == MAGIC else None


def localize(command: str, mapper: PathMapper) -> bool:
    """Rewrite the launcher ``command`` runs (in place); False when it runs no launcher of ours."""
    path = launcher_file(command)
    if path is None:
        return False
    if "'" in str(mapper.fs_dir):
        raise JobSpecError(f"the executor fs dir {mapper.fs_dir} holds a ' and cannot be written into a launcher")
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    path.write_bytes(mapper.rewrite(text).encode("utf-8", "surrogateescape"))
    return True
