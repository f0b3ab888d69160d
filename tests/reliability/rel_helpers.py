"""Plain helpers of the reliability tests. A module of their own, not conftest: a pytest run that also
collects tests/slurm loads that directory's conftest.py under the same module name, and `from conftest
import ...` then finds the wrong one."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or the link target / 'dir') of everything under root."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = os.path.relpath(os.fsencode(full), os.fsencode(root)).decode("utf-8", "surrogateescape")
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
            elif full.is_dir():
                out[rel] = "dir"
            elif full.is_file():
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest()
            else:
                out[rel] = "special"
    return out


def process_total(client) -> int:
    """Every process the colony knows, in any state (statistics have no 100 cap)."""
    st = client.get_colony_statistics()
    return (st.waitingprocesses + st.runningprocesses + st.successfulprocesses + st.failedprocesses
            + st.cancelledprocesses)


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def cli(args, cwd, env, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pollinator.cli.main", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, **kw)

