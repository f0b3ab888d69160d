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
