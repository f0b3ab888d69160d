"""Airflow test setup: an isolated AIRFLOW_HOME before anything imports Airflow, and shared fakes.

Unit tests need no metadata DB. End-to-end tests run ``dag.test()`` in a
subprocess (see ``dagrun.py``) so Airflow's global config and ORM state never
leak into the rest of the session.
"""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="pollinator-airflow-unit-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

import pytest  # noqa: E402

pytest.importorskip("airflow.sdk")

