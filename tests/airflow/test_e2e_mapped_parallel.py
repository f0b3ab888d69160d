"""Mapped `@task.pollinator` and mapped PollinatorOperator running in parallel worker processes (issue 14).

`airflow dags test` runs mapped task instances one by one, which hides a race between runs of one job
name. Here several Airflow processes run the same DAG at the same time (each a real `dag.test()` task
runner with its own copy of the migrated metadata DB, so SQLite does not serialise them): every
mapped instance of every process shares its job name with all the others, and each must still return
its own input's value.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

PROCESSES = 4
PER_PROCESS = 4

DAG = '''
from datetime import datetime
from airflow.sdk import DAG, task
from pollinator_airflow.operators import PollinatorOperator

XS = {xs}

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    @task.pollinator(executor_names=["dev-k8s", "dev-hpc"], walltime=120, name="{dag_id}-square")
    def square(x: int) -> dict:
        return {{"x": x, "sq": x * x}}

    square.expand(x=XS)
    PollinatorOperator.partial(task_id="tag", executor_names=["dev-k8s", "dev-hpc"], name="{dag_id}-tag",
                               walltime=120).expand(
        cmd=["sh -c 'mkdir -p $POLLINATOR_RESULT_DIR/.pollinator; echo value-%d > $POLLINATOR_RESULT_DIR/out.txt; "
         "echo %d > $POLLINATOR_RETURN'" % (x, x)
             for x in XS])
'''

RUNNER = '''
import json, sys, importlib.util
from sqlalchemy import select
spec = importlib.util.spec_from_file_location("mapped_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dr = module.dag.test()
from airflow.models.xcom import XComModel
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session
out = {"state": str(getattr(dr.state, "value", dr.state)), "tasks": [], "xcoms": []}
with create_session() as session:
    for ti in session.scalars(select(TaskInstance).where(TaskInstance.run_id == dr.run_id)):
        out["tasks"].append([ti.task_id, ti.map_index, str(getattr(ti.state, "value", ti.state))])
    for x in session.scalars(select(XComModel).where(XComModel.run_id == dr.run_id)):
        out["xcoms"].append([x.task_id, x.map_index, x.key, XComModel.deserialize_value(x)])
open(sys.argv[2], "w").write(json.dumps(out, default=str))
'''


def test_mapped_tasks_in_parallel_processes_return_their_own_values(airflow_env, tmp_path):
    dag_id = f"mapped_{uuid.uuid4().hex[:8]}"
    runner = tmp_path / "run_mapped.py"
    runner.write_text(RUNNER)
    db = Path(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    procs = []
    for p in range(PROCESSES):
        xs = [p * 100 + i for i in range(PER_PROCESS)]  # distinct inputs in every process
        home = tmp_path / f"home{p}"
        (home / "dags").mkdir(parents=True)
        shutil.copy(db, home / "airflow.db")  # a migrated DB of its own: no SQLite lock between workers
        dag_file = home / "dags" / f"{dag_id}.py"
        dag_file.write_text(textwrap.dedent(DAG.format(dag_id=dag_id, xs=xs)))
        env = {**airflow_env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
        log = open(tmp_path / f"worker{p}.log", "wb")
        procs.append((p, xs, home, subprocess.Popen([sys.executable, str(runner), str(dag_file),
                                                      str(home / "out.json")], env=env, stdout=log,
                                                     stderr=subprocess.STDOUT)))
    for p, xs, home, proc in procs:
        assert proc.wait(600) == 0, (tmp_path / f"worker{p}.log").read_text(errors="replace")[-4000:]
    labels = set()
    for p, xs, home, _ in procs:
        out = json.loads((home / "out.json").read_text())
        log = (tmp_path / f"worker{p}.log").read_text(errors="replace")
        assert out["state"] == "success", log[-4000:]
        values = {(task, idx): value for task, idx, key, value in out["xcoms"] if key == "return_value"}
        for i, x in enumerate(xs):
            assert values[("square", i)] == {"x": x, "sq": x * x}, (p, i, values)
            tag = values[("tag", i)]
            assert tag["return_value"] == x and tag["result_files"] == ["out.txt"], (p, i, tag)
            labels.add(tag["result_label"])
    assert len(labels) == PROCESSES * PER_PROCESS  # every run wrote to its own label
