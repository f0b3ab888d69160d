"""Shared fixtures: a real local colony (server + moto S3 + two executors) over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def local_colony(tmp_path_factory):
    """One local colony for the whole test session, on free loopback ports."""
    from pollinator.dev.colony import LocalColony

    data_dir = tmp_path_factory.mktemp("colony")
    colony = LocalColony(data_dir, port=None, max_jobs=8)
    colony.start()
    try:
        yield colony
    finally:
        colony.stop()


@pytest.fixture(scope="session")
def colony_env(local_colony) -> dict[str, str]:
    return local_colony.env()


@pytest.fixture(scope="session")
def settings(local_colony):
    return local_colony.settings()


@pytest.fixture
def client(settings):
    with settings.client() as c:
        yield c


@pytest.fixture
def in_colony_env(colony_env, monkeypatch):
    """Point this test's process environment at the local colony."""
    for key, value in colony_env.items():
        monkeypatch.setenv(key, value)
    return colony_env


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def kube_mimic(local_colony, tmp_path_factory):
    """A strict local executor that closes every finished job SUCCESS, as the ColonyOS Kube executor does.

    It registers its own type, as Kube executors do (colonyos/executors kube/env: ``...-kubeexecutor``).
    Yields its name.
    """
    import subprocess
    import sys
    import time

    name, fs_dir = "kube-mimic", tmp_path_factory.mktemp("kube-mimic")
    log = open(fs_dir / "executor.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "pollinator.cli.main", "executor", "start", "--name", name,
                             "--type", "test-kubeexecutor", "--fs-dir", str(fs_dir / "fs"), "--strict",
                             "--exit-codes", "ignore"], env={**os.environ, **local_colony.env()}, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        with local_colony.settings().client() as client:
            deadline = time.monotonic() + 60
            while not any(e.executorname == name and e.state == 1 for e in client.get_executors()):
                assert proc.poll() is None, (fs_dir / "executor.log").read_text()
                assert time.monotonic() < deadline, "the kube-mimic executor did not register"
                time.sleep(0.2)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


_TESTS = Path(__file__).resolve().parent
_NEEDS = {"airflow": pytest.mark.airflow, "prefect": pytest.mark.prefect}


def pytest_collection_modifyitems(items):
    """Mark what tests/airflow and tests/prefect need, so `-m "not airflow and not prefect"` selects the core.

    Without Apache Airflow or Prefect installed those folders skip themselves (their conftest's importorskip).
    """
    for item in items:
        try:
            top = Path(str(item.fspath)).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if top in _NEEDS:
            item.add_marker(_NEEDS[top])
