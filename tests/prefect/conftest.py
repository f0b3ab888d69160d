"""One temporary Prefect server for the whole session, and a fake core Job for unit tests."""

from __future__ import annotations

import pytest

# "prefect.flows", not "prefect": without Prefect, tests/prefect itself imports as a namespace package "prefect"
pytest.importorskip("prefect.flows", reason="needs Prefect: pip install 'pollinator[prefect]'")

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    import os

    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry calls from a test server

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/prefect/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.prefect)
