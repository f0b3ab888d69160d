"""``.pollinatorignore``: gitignore-syntax rules for what a sync leaves alone.

Only the file at the root of the synced directory is read (one place to look,
like ``.dockerignore``). Ignored paths are neither uploaded nor downloaded,
so a re-sync after a pull is stable. Bookkeeping files (the Go client's
``.cfs`` marker and our in-flight ``.cfs-tmp-*`` downloads) are always ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from pollinator.cfs.paths import CFS_FILE, TMP_PREFIX

log = logging.getLogger(__name__)

IGNORE_FILE = ".pollinatorignore"


class IgnoreRules:
    """Decides whether a POSIX path relative to the synced root is ignored."""

    def __init__(self, lines: Optional[list[str]] = None):
        self._spec = None
        if lines:
            import pathspec  # only a project with a .pollinatorignore pays for it

            self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    @classmethod
    def load(cls, root: Path) -> "IgnoreRules":
        path = Path(root) / IGNORE_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read %s (%s); ignoring nothing", path, exc)
            return cls()
        return cls(text.splitlines())

    def ignored(self, rel: str, *, is_dir: bool = False) -> bool:
        name = rel.rsplit("/", 1)[-1]
        if not is_dir and (name == CFS_FILE or name.startswith(TMP_PREFIX)):
            return True
        if self._spec is None:
            return False
        return self._spec.match_file(rel + "/" if is_dir else rel)
