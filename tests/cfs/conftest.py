"""Fixtures for the CFS tests: a real moto S3 server over HTTP, the in-memory
file store for unit tests, and (see test_integration) a real Colonies dev server."""

from __future__ import annotations

import pytest

from cfs_fakes import FakeColonies, free_port, s3_settings
from pollinator.config import S3Settings


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint) -> S3Settings:
    return s3_settings(moto_endpoint)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLLINATOR_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def fake() -> FakeColonies:
    return FakeColonies()


