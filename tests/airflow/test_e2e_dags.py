"""End-to-end: real DAGs via ``dag.test()`` (SQLite metadata DB) against the local colony.

All DAGs of this module run in ONE subprocess (``dagrun.py``): Airflow's
config and ORM stay out of pytest, and Airflow's in-process API start-up is
paid once. The metadata DB is migrated once per session. We check what a user
sees: remote log lines in the task log, the result file on disk, XCom values,
sync and deferrable modes, the example DAG, and that the private key and the
S3 secret never appear in logs or XCom.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dagrun.py")
MARK = uuid.uuid4().hex[:10]

OPERATOR_DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PollinatorOperator(
        task_id="work",
        executor_names=["dev-hpc"],
        cmd="echo {mark}-one; echo {mark}-two; mkdir -p $POLLINATOR_RESULT_DIR; "
            "echo trained > $POLLINATOR_RESULT_DIR/model.txt; echo",
        args=["{mark}-three"],
        name="{dag_id}",
        result_dir="{result_dir}",
        deferrable={deferrable},
        poll_interval=0.5,
    )
'''

FAILING_DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PollinatorOperator(task_id="work", executor_names=["dev-k8s"], cmd="echo about to fail; echo {mark}-oops >&2; exit 3",
                       name="{dag_id}", deferrable={deferrable}, poll_interval=0.5)
'''

KUBE_FAIL_DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PollinatorOperator(task_id="work", executor_names=["kube-mimic"], cmd="echo about to fail; exit 7",
                       name="{dag_id}", deferrable={deferrable}, poll_interval=0.5)
'''

SENSOR_DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator
from pollinator_airflow.sensors import PollinatorSensor

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    run = PollinatorOperator(task_id="work", executor_names=["dev-hpc"], cmd="echo hi",
                             name="{dag_id}")
    PollinatorSensor(task_id="wait", process_id="{{{{ ti.xcom_pull(task_ids='work', key='process_id') }}}}",
                     poke_interval=1, deferrable={deferrable}) << run
'''


def _dags(results: Path) -> dict[str, str]:
    dags = {}
    for mode, deferrable in (("sync", False), ("deferrable", True)):
        dags[f"e2e_op_{mode}"] = OPERATOR_DAG.format(dag_id=f"e2e_op_{mode}", mark=f"{MARK}-{mode}",
                                                     deferrable=deferrable, result_dir=results / mode)
        dags[f"e2e_fail_{mode}"] = FAILING_DAG.format(dag_id=f"e2e_fail_{mode}", mark=f"{MARK}-{mode}",
                                                      deferrable=deferrable)
        dags[f"e2e_kube_fail_{mode}"] = KUBE_FAIL_DAG.format(dag_id=f"e2e_kube_fail_{mode}", deferrable=deferrable)
        dags[f"e2e_sensor_{mode}"] = SENSOR_DAG.format(dag_id=f"e2e_sensor_{mode}", deferrable=deferrable)
    dags["cloud_to_hpc"] = (ROOT / "example_dags" / "cloud_to_hpc.py").read_text()
    return dags


@pytest.fixture(scope="module")
def runs(airflow_env, tmp_path_factory, kube_mimic) -> dict[str, tuple[dict, str]]:
    """Run every DAG of this module once; dag_id -> (report, task log)."""
    out = tmp_path_factory.mktemp("dag-runs")
    results = out / "results"
    dags_dir = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"])
    targets = []
    for dag_id, source in _dags(results).items():
        path = dags_dir / f"{dag_id}.py"  # dag.test() serializes from the dags folder
        path.write_text(textwrap.dedent(source))
        targets.append(f"{path}:{dag_id}")
    done = subprocess.run([sys.executable, str(RUNNER), str(out), *targets], env=airflow_env, capture_output=True,
                          text=True, timeout=900, cwd=out)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    reports = {}
    for target in targets:
        dag_id = target.rpartition(":")[2]
        report_file = out / f"{dag_id}.json"
        log = (out / f"{dag_id}.log").read_text(errors="replace") if (out / f"{dag_id}.log").exists() else ""
        reports[dag_id] = (json.loads(report_file.read_text()) if report_file.exists() else {}, log)
    reports["_results"] = (str(results), "")  # type: ignore[assignment]
    return reports


def _no_secrets(colony_env: dict[str, str], report: dict, log: str) -> None:
    for secret in (colony_env["COLONIES_PRVKEY"], colony_env["AWS_S3_SECRETKEY"]):
        assert secret not in log
        assert secret not in json.dumps(report)


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_operator_dag(runs, colony_env, mode):
    report, log = runs[f"e2e_op_{mode}"]
    assert report["tasks"]["work"]["state"] == "success", log[-6000:]
    xcoms = report["xcoms"]["work"]
    value = xcoms["return_value"]
    assert value["state"] == "SUCCESS" and value["process_id"] == xcoms["process_id"]
    assert value["result_files"] == ["model.txt"]
    # the run's own label; the shared one is "latest successful", updated after success
    assert value["result_label"] == f"/pollinator/e2e_op_{mode}/runs/{value['run_id']}/result"
    assert value["latest_label"] == f"/pollinator/e2e_op_{mode}/result"
    assert (Path(runs["_results"][0]) / mode / "model.txt").read_text().strip() == "trained"
    assert xcoms["_link_PollinatorProcessLink"].endswith(f"/process?processid={value['process_id']}")
    assert f"{MARK}-{mode}-two" in log and f"{MARK}-{mode}-three" in log  # remote lines in the task log
    _no_secrets(colony_env, report, log)


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_first_remote_line_reaches_task_log(runs, mode):
    report, log = runs[f"e2e_op_{mode}"]
    assert f"{MARK}-{mode}-one" in log


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_failing_job_fails_task_with_remote_error(runs, colony_env, mode):
    report, log = runs[f"e2e_fail_{mode}"]
    assert report["tasks"]["work"]["state"] == "failed", log[-6000:]
    assert "ended FAILED" in log
    _no_secrets(colony_env, report, log)


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_failing_command_on_an_executor_that_closes_success_fails_the_task(runs, colony_env, mode):
    """kube-mimic closes every job SUCCESS, as the Kube executor does; the launcher's exit record fails it."""
    report, log = runs[f"e2e_kube_fail_{mode}"]
    assert report["tasks"]["work"]["state"] == "failed", log[-6000:]
    assert "the command exited with code 7" in log and "closed process" in log, log[-6000:]
    _no_secrets(colony_env, report, log)


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_sensor_waits_for_process(runs, mode):
    report, log = runs[f"e2e_sensor_{mode}"]
    assert report["tasks"]["wait"]["state"] == "success", log[-6000:]
    assert report["xcoms"]["wait"]["return_value"]["state"] == "SUCCESS"
    assert report["xcoms"]["wait"]["return_value"]["process_id"] == report["xcoms"]["work"]["process_id"]


def test_example_dag_cloud_to_hpc(runs, colony_env):
    report, log = runs["cloud_to_hpc"]
    states = {t: v["state"] for t, v in report.get("tasks", {}).items()}
    assert states == {"preprocess": "success", "train": "success", "evaluate": "success"}, log[-6000:]
    xcoms = report["xcoms"]
    assert xcoms["evaluate"]["return_value"]["ok"] is True
    assert xcoms["evaluate"]["pollinator"]["state"] == "SUCCESS"
    assert "train: slope=" in log
    _no_secrets(colony_env, report, log)
