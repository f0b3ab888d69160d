"""Data-aware chaining, downstream: train on Slurm whenever ``asset_preprocess`` publishes new data.

Scheduled on the ``colonyfs://`` asset ``asset_preprocess`` emits. ``inputs={"prep": PREPARED}`` mounts
the snapshot pinned by the asset event that triggered this run: exactly the files that preprocess run
wrote, byte for byte, whatever happened to the label since. (Run by hand, with no triggering event, it
mounts the label's latest files.) The input also shows up as the task's inlet.
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
HPC = os.environ.get("POLLINATOR_HPC_EXECUTOR", "dev-hpc")
IMAGE = os.environ.get("POLLINATOR_IMAGE", "python:3.12-slim")

PREPARED = colonyfs_asset("/pollinator/asset_prep/result", colony=COLONY)  # what asset_preprocess emits

TRAIN = r"""
import csv, json, os, shutil
src = os.path.join(os.environ["POLLINATOR_INPUT_PREP"], "train.csv")
rows = [(float(x), float(y)) for x, y in csv.reader(open(src))]
n = len(rows); mx = sum(x for x, _ in rows) / n; my = sum(y for _, y in rows) / n
slope = sum((x - mx) * (y - my) for x, y in rows) / sum((x - mx) ** 2 for x, _ in rows)
out = os.environ["POLLINATOR_RESULT_DIR"]
json.dump({"slope": slope, "intercept": my - slope * mx, "rows": n}, open(os.path.join(out, "model.json"), "w"))
shutil.copy(src, os.path.join(out, "trained_on.csv"))  # what it read, for anyone to check
print(f"train: slope={slope:.3f} on {n} rows")
"""

with DAG(
    dag_id="asset_train",
    schedule=[PREPARED],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["pollinator", "colonyos", "assets"],
    doc_md=__doc__,
) as dag:
    PollinatorOperator(
        task_id="train",
        name="asset_train",
        executor_names=[HPC],
        image=IMAGE,
        cmd="python3 -c",
        args=[shlex.quote(TRAIN)],
        walltime=1800,
        inputs={"prep": PREPARED},  # the triggering event's snapshot
        colonies_conn_id=CONN_ID,
    )
