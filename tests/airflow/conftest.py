"""Airflow test setup: an isolated AIRFLOW_HOME before anything imports Airflow, and shared fakes.

Unit tests need no metadata DB. End-to-end tests run ``dag.test()`` in a
subprocess (see ``dagrun.py``) so Airflow's global config and ORM state never
leak into the rest of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="pollinator-airflow-unit-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

import pytest  # noqa: E402

pytest.importorskip("airflow.sdk", reason="needs Apache Airflow: pip install 'pollinator[airflow]'")



ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, colony_env) -> dict[str, str]:
    """Environment for Airflow subprocesses: own AIRFLOW_HOME, migrated SQLite DB, the colony connection."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(colony_env)  # includes AIRFLOW_CONN_COLONIES_DEFAULT
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return env


