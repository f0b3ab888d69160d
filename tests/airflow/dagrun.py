"""Run DAGs with ``dag.test()`` in one fresh process; write each one's states, XComs and log.

Used by the end-to-end tests. A subprocess keeps Airflow's global config,
ORM engine and logging out of the pytest process, and running every DAG in
the same one pays Airflow's in-process API start-up (~10 s) only once.
Usage::

    python dagrun.py OUT_DIR DAG_FILE:DAG_ID [DAG_FILE:DAG_ID ...]

writes ``OUT_DIR/<dag_id>.json`` and ``OUT_DIR/<dag_id>.log`` (everything the
run printed, i.e. the task logs).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path


def _load(dag_file: str, dag_id: str):
    spec = importlib.util.spec_from_file_location(f"e2e_{dag_id}", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if getattr(v, "dag_id", None) == dag_id)


def _report(dag_id: str, run_id: str) -> dict:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    report: dict = {"tasks": {}, "xcoms": {}}
    with create_session() as session:
        for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                             TaskInstance.run_id == run_id)):
            report["tasks"][ti.task_id] = {"state": str(getattr(ti.state, "value", ti.state)),
                                           "try_number": ti.try_number}
        for x in session.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)):
            value = x.value
            try:
                value = XComModel.deserialize_value(x)
            except Exception:
                pass
            report["xcoms"].setdefault(x.task_id, {})[x.key] = value
    return report


def main(out_dir: str, *targets: str) -> int:
    out = Path(out_dir)
    saved = os.dup(1), os.dup(2)
    for target in targets:
        dag_file, _, dag_id = target.rpartition(":")
        sys.stdout.flush(), sys.stderr.flush()
        with open(out / f"{dag_id}.log", "wb") as log:
            os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
            try:
                dr = _load(dag_file, dag_id).test()
                report = {"state": str(getattr(dr.state, "value", dr.state)), **_report(dag_id, dr.run_id)}
            except Exception:
                traceback.print_exc()
                report = {"state": "error", "tasks": {}, "xcoms": {}}
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        (out / f"{dag_id}.json").write_text(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
