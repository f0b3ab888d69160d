"""Cloud-to-HPC: preprocess on Kubernetes, train on Slurm, evaluate, all as ColonyOS jobs.

Runs unchanged against the local colony (``pollinator dev`` exports
``AIRFLOW_CONN_COLONIES_DEFAULT``; executors ``dev-k8s`` and ``dev-hpc`` stand
in for a Kubernetes and a Slurm executor) and against a real colony: point the
``colonies_default`` connection (or ``POLLINATOR_CONN_ID``) elsewhere and set
``POLLINATOR_K8S_EXECUTOR`` / ``POLLINATOR_HPC_EXECUTOR`` to its executor names.

Data flows through ColonyFS, never through the Airflow worker: ``train`` mounts
``preprocess``'s result label (read from its XCom) through ``inputs=``; the
evaluation step mounts ``train``'s the same way and returns a small JSON value.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime

from airflow.sdk import DAG, task

from pollinator_airflow.operators import PollinatorOperator

CONN_ID = os.environ.get("POLLINATOR_CONN_ID", "colonies_default")
K8S = os.environ.get("POLLINATOR_K8S_EXECUTOR", "dev-k8s")
HPC = os.environ.get("POLLINATOR_HPC_EXECUTOR", "dev-hpc")
IMAGE = os.environ.get("POLLINATOR_IMAGE", "python:3.12-slim")
DEFERRABLE = os.environ.get("POLLINATOR_DEFERRABLE", "false").lower() == "true"

PREPROCESS = r"""
import csv, os, random
out = os.environ["POLLINATOR_RESULT_DIR"]
os.makedirs(out, exist_ok=True)
random.seed(42)
rows = [(x, 3.0 * x + 1.0 + random.uniform(-0.1, 0.1)) for x in range(100)]
with open(os.path.join(out, "train.csv"), "w", newline="") as fh:
    csv.writer(fh).writerows(rows)
print(f"preprocess: wrote {len(rows)} rows")
"""

TRAIN = r"""
import csv, json, os
rows = [(float(x), float(y)) for x, y in csv.reader(open(os.path.join(os.environ["POLLINATOR_INPUT_PREP"], "train.csv")))]
n = len(rows); mx = sum(x for x, _ in rows) / n; my = sum(y for _, y in rows) / n
slope = sum((x - mx) * (y - my) for x, y in rows) / sum((x - mx) ** 2 for x, _ in rows)
model = {"slope": slope, "intercept": my - slope * mx, "rows": n}
out = os.environ["POLLINATOR_RESULT_DIR"]
os.makedirs(out, exist_ok=True)
json.dump(model, open(os.path.join(out, "model.json"), "w"))
print(f"train: slope={slope:.3f} on {n} rows")
"""

with DAG(
    dag_id="cloud_to_hpc",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["pollinator", "colonyos"],
    doc_md=__doc__,
) as dag:
    preprocess = PollinatorOperator(
        task_id="preprocess",
        executor_names=[K8S],
        image=IMAGE,
        cmd="python3 -c",
        args=[shlex.quote(PREPROCESS)],  # args are shell words of `<cmd> <args...>`, as the executors read them
        walltime=600,
        colonies_conn_id=CONN_ID,
        deferrable=DEFERRABLE,
    )

    train = PollinatorOperator(
        task_id="train",
        executor_names=[HPC],
        image=IMAGE,
        cmd="python3 -c",
        args=[shlex.quote(TRAIN)],
        nodes=1,
        processes_per_node=1,
        walltime=1800,
        inputs={"prep": "{{ ti.xcom_pull(task_ids='preprocess')['result_label'] }}"},
        colonies_conn_id=CONN_ID,
        deferrable=DEFERRABLE,
    )

    @task.pollinator(
        executor_names=[HPC],
        image=IMAGE,
        walltime=600,
        inputs={"model": "{{ ti.xcom_pull(task_ids='train')['result_label'] }}"},
        colonies_conn_id=CONN_ID,
        deferrable=DEFERRABLE,
    )
    def evaluate(train_process: str) -> dict:
        """Runs on the executor: score the model on fresh points."""
        import json
        import os

        model = json.load(open(os.path.join(os.environ["POLLINATOR_INPUT_MODEL"], "model.json")))
        errors = [abs(model["slope"] * x + model["intercept"] - (3.0 * x + 1.0)) for x in range(100, 110)]
        print(f"evaluate: model from {train_process}, max error {max(errors):.3f}")
        return {"max_error": max(errors), "ok": max(errors) < 1.0}

    # Airflow types .output as the base XComArg; it is a PlainXComArg, whose ["key"] is that XCom of the task
    preprocess >> train >> evaluate(train_process=train.output["process_id"])  # type: ignore[index]
