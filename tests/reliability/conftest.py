"""Fixtures for the reliability tests: private colonies to break, counters for the summary."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import rel_tally
from pollinator.colonies import crypto
from pollinator.dev.colony import LocalColony, _wait_http

_outcomes: Counter[str] = Counter()


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        kind = "xfailed" if hasattr(report, "wasxfail") else report.outcome
        _outcomes[kind] += 1


def pytest_sessionfinish(session, exitstatus):
    rel_tally.write_report(dict(_outcomes))


class PrivateColony:
    """A LocalColony of our own (sharing the session's moto S3) that tests may kill parts of."""

    def __init__(self, colony: LocalColony):
        self.colony = colony
        self.env = colony.env()
        self.settings = colony.settings()

    @property
    def pids(self) -> dict[str, int]:
        pids = dict(self.colony.read_state().pids)
        pids.update({n: p.pid for n, p in self.colony._procs.items()})
        return pids

    def kill(self, name: str) -> None:
        """SIGKILL one part (its whole session) and reap it."""
        proc = self.colony._procs.get(name)
        pid = proc.pid if proc else self.pids[name]
        os.killpg(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(10)

    def restart_server(self) -> None:
        """Start the server again on the same port and data dir (as `pollinator dev` would)."""
        from pollinator.dev.keys import load_or_create_keys

        keys = load_or_create_keys(self.colony.data_dir)
        argv = [sys.executable, "-m", "pollinator.dev.server", "--host", self.colony.host, "--port",
                str(self.colony.port), "--data-dir", str(self.colony.data_dir), "--server-id",
                crypto.id_from_private_key(keys.server)]
        deadline = time.monotonic() + 20
        while True:  # the killed server's port may linger for a moment
            proc = self.colony._spawn("server", argv)
            try:
                _wait_http(f"http://{self.colony.host}:{self.colony.port}/health", 20, proc, "restarted server")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                proc.wait(5)

    def start_executor(self, name: str) -> subprocess.Popen:
        fs_dir = self.colony.data_dir / "executors" / name
        argv = [sys.executable, "-m", "pollinator.cli.main", "executor", "start", "--name", name,
                "--fs-dir", str(fs_dir), "--max-jobs", "2", "--poll-timeout", "2"]
        return self.colony._spawn(f"executor-{name}", argv, self.env)


@pytest.fixture
def private_colony(tmp_path, settings):
    """Factory: a fresh colony (server + executors) in tmp, stopped after the test."""
    made: list[LocalColony] = []

    def make(executors: tuple[str, ...] = ("rel-exec",), max_jobs: int = 4) -> PrivateColony:
        colony = LocalColony(tmp_path / f"colony{len(made)}", executors=executors, external_s3=settings.s3,
                             max_jobs=max_jobs)
        made.append(colony)
        colony.start()
        return PrivateColony(colony)

    yield make
    for colony in made:
        colony.stop(timeout=5)


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


@pytest.fixture
def secrets_of(colony_env) -> dict[str, str]:
    """Every secret of the session colony by name."""
    names = ("COLONIES_PRVKEY", "COLONIES_COLONY_PRVKEY", "COLONIES_SERVER_PRVKEY", "AWS_S3_SECRETKEY")
    return {n: colony_env[n] for n in names if colony_env.get(n)}


def cli(args, cwd, env, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pollinator.cli.main", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, **kw)

