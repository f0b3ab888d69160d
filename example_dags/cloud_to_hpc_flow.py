"""Cloud to HPC with Prefect: preprocess on Kubernetes, train on Slurm, evaluate locally.

The Prefect twin of the Airflow DAG in ``cloud_to_hpc.py``:

1. ``preprocess`` runs on the ``dev-k8s`` executor and writes ``train.json``
   into its ColonyFS result label ``/pollinator/preprocess/result``;
2. ``train`` runs on the ``dev-hpc`` executor; ``inputs=`` mounts that label
   read-only at ``$POLLINATOR_INPUT_PREP`` (no round trip through this machine);
3. ``evaluate`` is an ordinary Prefect task on the values the two returned.

The bodies of ``preprocess`` and ``train`` run remotely: they get their JSON
arguments there and their JSON return values come back as task results, their
``print`` lines appear live in the Prefect task logs.

Run it against a local colony with no other set-up::

    pollinator dev --detach
    python example_dags/cloud_to_hpc_flow.py

Credentials come from ``COLONIES_*``/``AWS_S3_*`` (``source <(pollinator dev env)``, or
``POLLINATOR_DEV_DIR`` naming a running ``pollinator dev`` colony's data dir), or from a
saved ``ColonyOSCredentials`` block named in ``COLONYOS_CREDENTIALS_BLOCK``. Against a real
colony set ``POLLINATOR_K8S_EXECUTOR`` / ``POLLINATOR_HPC_EXECUTOR`` to its executor names.
"""

from __future__ import annotations

import os

from prefect import flow, task

from pollinator_prefect import pollinator_task

CREDENTIALS = os.environ.get("COLONYOS_CREDENTIALS_BLOCK") or None  # None: from the environment
K8S = os.environ.get("POLLINATOR_K8S_EXECUTOR", "dev-k8s")
HPC = os.environ.get("POLLINATOR_HPC_EXECUTOR", "dev-hpc")
PREP_LABEL = "/pollinator/preprocess/result"  # the result label of the job named "preprocess"


@pollinator_task(credentials=CREDENTIALS, job_name="preprocess", executor_names=[K8S], cpu="1",
                 mem="1Gi", walltime=600, retries=1, retry_delay_seconds=5)
def preprocess(rows: int, seed: int) -> dict:
    """Make a noisy y = 3x + 2 data set (stands in for cleaning data in the cloud)."""
    import json
    import os
    import random

    rng = random.Random(seed)
    points = [(x / rows, 3.0 * x / rows + 2.0 + rng.gauss(0, 0.05)) for x in range(rows)]
    with open(os.path.join(os.environ["POLLINATOR_RESULT_DIR"], "train.json"), "w") as fh:
        json.dump(points, fh)
    print(f"preprocess: wrote {len(points)} rows", flush=True)
    return {"rows": len(points)}


@pollinator_task(credentials=CREDENTIALS, job_name="train", executor_names=[HPC], inputs={"prep": PREP_LABEL},
                 nodes=1, processes_per_node=1, cpu="2", mem="2Gi", walltime=1800, timeout_seconds=1800)
def train(epochs: int, lr: float, expected_rows: int) -> dict:
    """Fit the line by gradient descent on the HPC side, reading preprocess's result label."""
    import json
    import os

    with open(os.path.join(os.environ["POLLINATOR_INPUT_PREP"], "train.json")) as fh:
        points = json.load(fh)
    assert len(points) == expected_rows, f"expected {expected_rows} rows, found {len(points)}"
    slope = intercept = 0.0
    for epoch in range(1, epochs + 1):
        grad_s = sum((slope * x + intercept - y) * x for x, y in points) * 2 / len(points)
        grad_i = sum((slope * x + intercept - y) for x, y in points) * 2 / len(points)
        slope, intercept = slope - lr * grad_s, intercept - lr * grad_i
        if epoch % max(1, epochs // 5) == 0:
            loss = sum((slope * x + intercept - y) ** 2 for x, y in points) / len(points)
            print(f"train: epoch {epoch}/{epochs} loss {loss:.5f}", flush=True)
    model = {"slope": slope, "intercept": intercept}
    with open(os.path.join(os.environ["POLLINATOR_RESULT_DIR"], "model.json"), "w") as fh:
        json.dump(model, fh)
    return model


@task
def evaluate(model: dict) -> dict:
    """A small local check: how far is the fitted line from the true one?"""
    error = abs(model["slope"] - 3.0) + abs(model["intercept"] - 2.0)
    return {**model, "error": round(error, 4), "ok": error < 0.5}


@flow(name="cloud-to-hpc", log_prints=True)
def cloud_to_hpc(rows: int = 200, epochs: int = 2000, lr: float = 0.5, seed: int = 7) -> dict:
    prep = preprocess(rows, seed)
    model = train(epochs, lr, prep["rows"])
    report = evaluate(model)
    print(f"evaluation: {report}")
    return report


if __name__ == "__main__":
    cloud_to_hpc()
