"""OpenLineage for real: the provider's listener calls the operator's ``get_openlineage_facets_on_complete``
and its transport writes the events; the COMPLETE events name the mounted inputs and the results as
``colonyfs://`` datasets versioned by their snapshot ids (so a backend links train's input to the exact
run of prep that wrote it).

Two steps in one DAG run by ``dag.test()`` against the local colony (``dagrun.py``), with
apache-airflow-providers-openlineage configured by environment to a file transport.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage "
                    "(pip install 'pollinator[airflow]')")

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.timeout(900)

DAG = '''
import shlex
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.assets import colonyfs_asset
from pollinator_airflow.operators import PollinatorOperator

WRITE = 'mkdir -p "$POLLINATOR_RESULT_DIR" && printf "1,4\\\\n2,7\\\\n" > "$POLLINATOR_RESULT_DIR/train.csv"'
COUNT = 'wc -l < "$POLLINATOR_INPUT_PREP/train.csv" > "$POLLINATOR_RESULT_DIR/rows.txt"'
PINNED = ("{{ ti.xcom_pull(task_ids='prep')['result_label'] }}@"
          "{{ ti.xcom_pull(task_ids='prep')['result_snapshot_id'] }}")

with DAG("DAG_ID", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    prep = PollinatorOperator(task_id="prep", name="DAG_ID_prep", executor_names=["dev-k8s"], cmd="sh -c",
                              args=[shlex.quote(WRITE)],
                              outlets=[colonyfs_asset("/pollinator/DAG_ID_prep/result", colony="COLONY")])
    train = PollinatorOperator(task_id="train", name="DAG_ID_train", executor_names=["dev-hpc"], cmd="sh -c",
                               args=[shlex.quote(COUNT)], inputs={"prep": PINNED})
    prep >> train
'''


@pytest.fixture(scope="module")
def lineage(airflow_env, colony_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("openlineage")
    dag_id = f"lineage_{uuid.uuid4().hex[:8]}"
    dag_file = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    dag_file.write_text(DAG.replace("DAG_ID", dag_id).replace("COLONY", colony_env["COLONIES_COLONY_NAME"]))
    events_file = out / "openlineage.jsonl"
    env = {**airflow_env,
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                          "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "pollinator-tests",
           "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",  # no fork of the task runner; waits below
           "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "300"}  # generous: a loaded box
    done = subprocess.run([sys.executable, str(HERE / "dagrun.py"), str(out), f"{dag_file}:{dag_id}"], env=env,
                          capture_output=True, text=True, timeout=800, cwd=out)
    log = (out / f"{dag_id}.log").read_text(errors="replace") if (out / f"{dag_id}.log").exists() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + log[-3000:]
    report = json.loads((out / f"{dag_id}.json").read_text())
    assert report["state"] == "success", log[-6000:]
    assert events_file.exists(), "no OpenLineage event was written:\n" + log[-6000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return dag_id, report, events, log


def _complete(events: list[dict], job: str) -> dict:
    found = [e for e in events if e.get("eventType") == "COMPLETE" and e.get("job", {}).get("name") == job]
    assert len(found) == 1, [(e.get("eventType"), e.get("job", {}).get("name")) for e in events]
    return found[0]


def _datasets(items: list[dict]) -> list[tuple[str, str, str]]:
    return [(d["namespace"], d["name"], d.get("facets", {}).get("version", {}).get("datasetVersion", ""))
            for d in items]


def test_complete_events_carry_inputs_and_results_pinned_by_snapshot(lineage, colony_env):
    dag_id, report, events, log = lineage
    namespace = f"colonyfs://{colony_env['COLONIES_COLONY_NAME']}"
    prep = report["xcoms"]["prep"]["return_value"]
    train = report["xcoms"]["train"]["return_value"]
    assert prep["result_snapshot_id"] and train["result_snapshot_id"]

    prep_event = _complete(events, f"{dag_id}.prep")
    assert _datasets(prep_event.get("outputs", [])) == [(namespace, prep["result_label"], prep["result_snapshot_id"])]
    assert prep_event.get("inputs", []) == []

    train_event = _complete(events, f"{dag_id}.train")
    # train read exactly the snapshot prep wrote: the same dataset and version on both sides
    assert _datasets(train_event.get("inputs", [])) == [(namespace, prep["result_label"], prep["result_snapshot_id"])]
    assert _datasets(train_event.get("outputs", [])) == [(namespace, train["result_label"],
                                                          train["result_snapshot_id"])]
    assert train_event["job"]["namespace"] == "pollinator-tests"
    assert "Failed to extract OpenLineage metadata" not in log
