"""``@task.pollinator`` and return values through Airflow's parse -> serialize -> run path.

The DAG file is parsed by a real ``airflow dag-processor`` run (which imports it
in its own process and stores the serialized DAG in the metadata DB); the test
reads the serialized DAG back, then runs the DAG. The function form ships the
source captured when the DAG file was parsed; a command writes JSON to
``$POLLINATOR_RETURN``. XCom ``return_value`` has one shape per task kind, the
same in sync and deferrable mode:

* ``@task.pollinator``: the function's JSON return value;
* ``PollinatorOperator``: the ``JobResult`` dict, whose ``return_value`` is the
  command's JSON (``returned`` tells ``null`` from nothing written).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(1200)  # a dag-processor pass and four jobs, on a loaded 2-core box

DAG = r'''
from datetime import datetime

from airflow.sdk import DAG, task
from pollinator_airflow.operators import PollinatorOperator

FACTOR = 10
CMD = r"""sh -c 'mkdir -p $POLLINATOR_RESULT_DIR/.pollinator && echo "{\"rows\": 7}" > $POLLINATOR_RETURN'"""

with DAG("DAG_ID", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    @task.pollinator(executor_names=["dev-k8s"], walltime=300)
    def scaled(x: int) -> dict:
        return {"x": x, "scaled": x * FACTOR}

    @task.pollinator(executor_names=["dev-k8s"], walltime=300, deferrable=True, poll_interval=0.5)
    def scaled_deferred(x: int) -> dict:
        return {"x": x, "scaled": x * FACTOR}

    scaled(4)
    scaled_deferred(5)
    PollinatorOperator(task_id="rows", executor_names=["dev-hpc"], cmd=CMD, walltime=300)
    PollinatorOperator(task_id="rows_deferred", executor_names=["dev-hpc"], cmd=CMD, walltime=300,
                       deferrable=True, poll_interval=0.5)
'''

READ_SERIALIZED = r'''
import json, sys
from sqlalchemy import select
from airflow.models.errors import ParseImportError
from airflow.models.serialized_dag import SerializedDagModel
from airflow.utils.session import create_session

dag_id, fileloc = sys.argv[1], sys.argv[2]
with create_session() as session:
    errors = [e.stacktrace for e in session.scalars(select(ParseImportError)) if e.filename.endswith(fileloc)]
    row = SerializedDagModel.get(dag_id, session=session)
    tasks = {}
    if row is not None:
        for t in row.dag.tasks:
            tasks[t.task_id] = {"type": t.task_type, "deferrable": bool(getattr(t, "deferrable", False)),
                                "start_from_trigger": bool(getattr(t, "start_from_trigger", False))}
print(json.dumps({"errors": errors, "serialized": row is not None, "tasks": tasks}))
'''


def test_a_dag_parsed_by_the_dag_processor_runs_and_returns_values(airflow_env, tmp_path):
    dag_id = f"serialized_{uuid.uuid4().hex[:8]}"
    dag_file = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    dag_file.write_text(DAG.replace("DAG_ID", dag_id))
    airflow = str(Path(sys.executable).with_name("airflow"))

    parsed = subprocess.run([airflow, "dag-processor", "--num-runs", "1"], env=airflow_env, capture_output=True,
                            text=True, timeout=600)
    assert parsed.returncode == 0, parsed.stdout[-3000:] + parsed.stderr[-3000:]
    reader = tmp_path / "read_serialized.py"
    reader.write_text(READ_SERIALIZED)
    out = subprocess.run([sys.executable, str(reader), dag_id, dag_file.name], env=airflow_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    stored = json.loads(out.stdout.strip().splitlines()[-1])
    assert stored["errors"] == [] and stored["serialized"], stored
    assert stored["tasks"]["scaled"]["type"] == "_PollinatorDecoratedOperator"
    assert stored["tasks"]["rows_deferred"]["type"] == "PollinatorOperator"

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("dagrun.py")), str(run_dir),
                           f"{dag_file}:{dag_id}"], env=airflow_env, capture_output=True, text=True, timeout=900)
    log = (run_dir / f"{dag_id}.log").read_text(errors="replace") if (run_dir / f"{dag_id}.log").exists() else ""
    assert done.returncode == 0, done.stderr[-3000:] + log[-3000:]
    report = json.loads((run_dir / f"{dag_id}.json").read_text())
    assert report["state"] == "success", log[-5000:]
    xcoms = report["xcoms"]
    assert xcoms["scaled"]["return_value"] == {"x": 4, "scaled": 40}
    assert xcoms["scaled_deferred"]["return_value"] == {"x": 5, "scaled": 50}
    for task_id in ("rows", "rows_deferred"):
        value = xcoms[task_id]["return_value"]
        assert value["state"] == "SUCCESS" and value["returned"] is True, (task_id, value)
        assert value["return_value"] == {"rows": 7}, (task_id, value)
        assert ".pollinator/return.json" not in value["result_files"]
    # one shape in both modes
    assert set(xcoms["rows"]["return_value"]) == set(xcoms["rows_deferred"]["return_value"])
    assert xcoms["scaled"]["pollinator"]["returned"] and xcoms["scaled_deferred"]["pollinator"]["returned"]
