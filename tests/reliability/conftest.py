"""Fixtures for the reliability tests: private colonies to break. (The summary's counters are rel_tally's;
plain helpers are rel_helpers'.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pollinator.colonies import crypto
from pollinator.dev.colony import LocalColony, _wait_http


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


@pytest.fixture
def secrets_of(colony_env) -> dict[str, str]:
    """Every secret of the session colony by name."""
    names = ("COLONIES_PRVKEY", "COLONIES_COLONY_PRVKEY", "COLONIES_SERVER_PRVKEY", "AWS_S3_SECRETKEY")
    return {n: colony_env[n] for n in names if colony_env.get(n)}
