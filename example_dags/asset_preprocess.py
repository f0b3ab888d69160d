"""Data-aware chaining, upstream: preprocess on Kubernetes and publish the result as an Airflow Asset.

On success the task emits an asset event on ``colonyfs://<colony>/pollinator/asset_prep/result`` whose
``extra`` pins the exact result files of this run (a ColonyFS snapshot id, the files with sizes and
checksums). ``asset_train`` (example_dags/asset_train.py) is scheduled on that asset and mounts exactly
that snapshot, even if a later preprocess run has overwritten the label by the time it starts.

Runs unchanged against the local colony (``pollinator dev``); for a real colony set
``POLLINATOR_COLONY`` (the colony name in the asset URI), ``POLLINATOR_CONN_ID`` and
``POLLINATOR_K8S_EXECUTOR``.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime

from airflow.sdk import DAG

from pollinator_airflow.assets import colonyfs_asset
from pollinator_airflow.operators import PollinatorOperator

COLONY = os.environ.get("POLLINATOR_COLONY") or os.environ.get("COLONIES_COLONY_NAME", "dev")
CONN_ID = os.environ.get("POLLINATOR_CONN_ID", "colonies_default")
K8S = os.environ.get("POLLINATOR_K8S_EXECUTOR", "dev-k8s")
IMAGE = os.environ.get("POLLINATOR_IMAGE", "python:3.12-slim")

PREP_JOB = "asset_prep"
PREPARED = colonyfs_asset(f"/pollinator/{PREP_JOB}/result", colony=COLONY)

PREPROCESS = r"""
import csv, os, random, sys
out = os.environ["POLLINATOR_RESULT_DIR"]
random.seed(sys.argv[1])  # each Airflow run prepares its own sample
rows = [(x, 3.0 * x + 1.0 + random.uniform(-0.1, 0.1)) for x in range(100)]
with open(os.path.join(out, "train.csv"), "w", newline="") as fh:
    csv.writer(fh).writerows(rows)
print(f"preprocess: wrote {len(rows)} rows for {sys.argv[1]}")
"""

with DAG(
    dag_id="asset_preprocess",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["pollinator", "colonyos", "assets"],
    doc_md=__doc__,
) as dag:
    PollinatorOperator(
        task_id="preprocess",
        name=PREP_JOB,
        executor_names=[K8S],
        image=IMAGE,
        cmd="python3 -c",
        args=[shlex.quote(PREPROCESS), "{{ run_id | replace('+', '_') | replace(':', '_') }}"],
        walltime=600,
        colonies_conn_id=CONN_ID,
        outlets=[PREPARED],  # on success: an asset event pinning this run's result snapshot
    )
