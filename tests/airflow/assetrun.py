"""Cross-DAG chaining through an Airflow Asset, as close to a deployment as one process gets.

    python assetrun.py OUT_DIR UPSTREAM_FILE:DAG_ID DOWNSTREAM_FILE:DAG_ID

1. the upstream DAG runs (``dag.test()``); its task's asset event is read from the metadata DB, and the
   queue row Airflow adds for DAGs scheduled on the asset (AssetDagRunQueue) is checked;
2. the scheduler's own code (``SchedulerJobRunner._create_dag_runs_asset_triggered``) turns that queue
   into an asset-triggered run of the downstream DAG, consuming the event;
3. the upstream DAG runs again: its label now holds other files (a second event);
4. the downstream run made in step 2 executes (``dag.test()`` driving that run).

Writes OUT_DIR/report.json (events, run ids, task states and XComs) and OUT_DIR/<step>.log.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from unittest import mock

from dagrun import _load, _report


def _events(uri: str) -> list[dict]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetModel.uri == uri).order_by(AssetEvent.id)).all()
        return [{"id": e.id, "extra": e.extra, "source_dag_id": e.source_dag_id, "source_run_id": e.source_run_id}
                for e in rows]


def _queued(dag_id: str) -> int:
    from sqlalchemy import func, select

    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                              .where(AssetDagRunQueue.target_dag_id == dag_id))


def _schedule(dag_id: str) -> str:
    """What the scheduler loop does for an asset-triggered DAG: a run consuming the queued events."""
    from sqlalchemy import select

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        query, triggered = DagModel.dags_needing_dagruns(session)
        models = [d for d in query.all() if d.dag_id in triggered and d.dag_id == dag_id]
        assert models, f"{dag_id} is not asset-triggered by the queue: {triggered}"
        SchedulerJobRunner(job=Job())._create_dag_runs_asset_triggered(dag_models=models, session=session)
        session.commit()
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).one()
        return run.run_id


def _run_existing(dag, run_id: str):
    """``dag.test()`` driving the run the scheduler created (instead of a new manual one)."""
    import airflow.models.dagrun as dagrun_module
    from sqlalchemy import select

    from airflow.utils.state import DagRunState

    def existing(*, dag, session, **_kw):
        run = session.scalars(select(dagrun_module.DagRun).where(dagrun_module.DagRun.dag_id == dag.dag_id,
                                                                 dagrun_module.DagRun.run_id == run_id)).one()
        run.state = DagRunState.RUNNING
        run.dag = dag  # as create_dagrun leaves it
        session.commit()
        return run

    with mock.patch.object(dagrun_module, "get_or_create_dagrun", existing):
        return dag.test()


def main(out_dir: str, upstream: str, downstream: str, asset_uri: str) -> int:
    out = Path(out_dir)
    up_file, _, up_id = upstream.rpartition(":")
    down_file, _, down_id = downstream.rpartition(":")
    report: dict = {}
    saved = os.dup(1), os.dup(2)

    def step(name, fn):
        sys.stdout.flush(), sys.stderr.flush()
        with open(out / f"{name}.log", "wb") as log:
            os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
            try:
                return fn()
            except Exception:
                traceback.print_exc()
                raise
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os.dup2(saved[0], 1), os.dup2(saved[1], 2)

    try:
        up_dag, down_dag = _load(up_file, up_id), _load(down_file, down_id)
        first = step("upstream1", up_dag.test)
        report["upstream1"] = {"state": str(first.state), **_report(up_id, first.run_id)}
        report["events_after_1"] = _events(asset_uri)
        report["queued_after_1"] = _queued(down_id)
        report["downstream_run_id"] = step("schedule", lambda: _schedule(down_id))
        second = step("upstream2", up_dag.test)
        report["upstream2"] = {"state": str(second.state), **_report(up_id, second.run_id)}
        report["events_after_2"] = _events(asset_uri)
        down = step("downstream", lambda: _run_existing(down_dag, report["downstream_run_id"]))
        report["downstream"] = {"state": str(down.state), **_report(down_id, down.run_id)}
    except Exception:
        report["error"] = traceback.format_exc()
    (out / "report.json").write_text(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
