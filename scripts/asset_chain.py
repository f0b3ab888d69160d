"""Cross-DAG chaining through a colonyfs:// Asset, with a real ``airflow scheduler`` making the downstream run.

    python scripts/asset_chain.py OUT_DIR [--dags DIR] [--step-logs]

Runs the example pair (``example_dags/asset_preprocess.py`` -> ``asset_train.py``) against the colony in
the environment, in the Airflow of the environment (``AIRFLOW_HOME``, its metadata DB, the DAG folder
holding both files; the DAGs must not be paused at creation):

1. ``asset_preprocess`` runs (``dag.test()``): its task emits an asset event whose ``extra`` pins its
   result snapshot, and Airflow queues ``asset_train`` (scheduled on that asset);
2. an ``airflow scheduler`` process, unchanged, turns the queue into an asset-triggered run of
   ``asset_train`` consuming that event, and is stopped once the run exists. Meanwhile the default pool
   has no slots, so the scheduler sends no task to its executor: executing one needs an api-server,
   which this one-machine run replaces by ``dag.test()`` (step 4);
3. ``asset_preprocess`` runs again: its label now holds other files (a second event);
4. the scheduler's run of ``asset_train`` executes (``dag.test()`` driving that very run). Its job mounts
   the snapshot of the event that triggered it; this script checks the mount in the process's spec and
   that the file the job trained on is byte-identical to what the first preprocess run wrote.

Prints what happened (lines starting ``[chain]``), writes ``OUT_DIR/report.json`` (events, runs, task
states, XComs, checks) and the scheduler's output to ``OUT_DIR/scheduler.log``; with ``--step-logs``
each step's output goes to ``OUT_DIR/<step>.log`` instead of stdout. Exit 0 only when every check
holds. ``make demo`` runs it; so does ``tests/airflow/test_e2e_assets.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM, DOWNSTREAM = "asset_preprocess", "asset_train"
LABEL = "/pollinator/asset_prep/result"  # the label asset_preprocess publishes (its asset's URI path)
WROTE, READ = "train.csv", "trained_on.csv"  # preprocess writes WROTE; train copies what it read to READ
SCHEDULER_WAIT = 600.0  # seconds for a loaded box: scheduler start-up plus a few loops


def say(line: str) -> None:
    print(f"[chain] {line}", flush=True)


def _load(dag_file: Path, dag_id: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"chain_{dag_id}", dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if getattr(v, "dag_id", None) == dag_id)


def _report(dag_id: str, run_id: str) -> dict:
    """A run's state, type, task states and XComs, read from the metadata DB."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    report: dict = {"run_id": run_id, "tasks": {}, "xcoms": {}}
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        report.update(state=str(getattr(run.state, "value", run.state)), run_type=str(run.run_type),
                      consumed_event_ids=sorted(e.id for e in run.consumed_asset_events))
        for ti in session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id,
                                                             TaskInstance.run_id == run_id)):
            report["tasks"][ti.task_id] = {"state": str(getattr(ti.state, "value", ti.state)),
                                           "try_number": ti.try_number}
        for x in session.scalars(select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run_id)):
            try:
                value = XComModel.deserialize_value(x)
            except Exception:
                value = x.value
            report["xcoms"].setdefault(x.task_id, {})[x.key] = value
    return report


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
    """Rows Airflow queued for ``dag_id`` because an asset it is scheduled on got an event."""
    from sqlalchemy import func, select

    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        return int(session.scalar(select(func.count()).select_from(AssetDagRunQueue)
                                  .where(AssetDagRunQueue.target_dag_id == dag_id)) or 0)


def _asset_runs(dag_id: str) -> list[str]:
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    with create_session() as session:
        return list(session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id,
                                                                DagRun.run_type == DagRunType.ASSET_TRIGGERED)))


def _default_pool(slots: int) -> int:
    """Set the default pool's slots; returns the previous number."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = Pool.get_default_pool(session=session)
        before = pool.slots if pool is not None else 128
        Pool.create_or_update_pool(Pool.DEFAULT_POOL_NAME, slots, (pool.description if pool else "") or "Default pool",
                                   bool(pool.include_deferred) if pool else False, session=session)
    return before


def schedule_with_airflow_scheduler(dag_id: str, log_path: Path) -> tuple[str, float, int]:
    """Start ``airflow scheduler``, wait until its loop created an asset-triggered run of ``dag_id``, stop it.

    Returns the run id, the seconds it took and the scheduler's pid.
    """
    from sqlalchemy.exc import OperationalError

    airflow = str(Path(sys.executable).with_name("airflow"))
    slots = _default_pool(0)  # the scheduler makes runs and schedules tasks, but sends none to its executor
    t0 = time.monotonic()
    proc = None
    try:
        with open(log_path, "wb") as log:
            # no log server: it would take port 8793, which another scheduler on the machine may hold
            proc = subprocess.Popen([airflow, "scheduler", "--skip-serve-logs"], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        while True:
            try:
                runs = _asset_runs(dag_id)
            except OperationalError:  # SQLite busy past its timeout while the scheduler writes: ask again
                runs = []
            if runs:
                return runs[0], time.monotonic() - t0, proc.pid
            if proc.poll() is not None:
                raise RuntimeError(f"airflow scheduler exited with {proc.returncode} before it made a run of "
                                   f"{dag_id}; its output: {log_path}")
            if time.monotonic() - t0 > SCHEDULER_WAIT:
                raise TimeoutError(f"airflow scheduler made no run of {dag_id} in {SCHEDULER_WAIT:.0f} s; "
                                   f"its output: {log_path}")
            time.sleep(0.5)
    finally:
        if proc is not None:
            _stop(proc)
        _default_pool(slots)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the scheduler's process group (it and its executor's workers), SIGKILL what is left."""
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue


def _run_existing(dag: Any, run_id: str) -> Any:
    """``dag.test()`` driving the run the scheduler created (instead of making a new manual one)."""
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


def _snapshot_file(snapshot_id: str, name: str) -> bytes:
    from pollinator.cfs import CFS
    from pollinator.config import Settings

    settings = Settings.from_env(need_s3=True)
    with tempfile.TemporaryDirectory(prefix="pollinator-chain-") as tmp, settings.client() as client:
        CFS(client, settings.require_s3()).download_snapshot(snapshot_id, tmp)
        return (Path(tmp) / name).read_bytes()


def _mounted(process_id: str, input_name: str) -> tuple[str, bool]:
    """The snapshot id the process's spec mounts at ``inputs/<input_name>``, and whether it is kept."""
    from pollinator.config import Settings

    with Settings.from_env().client() as client:
        spec = client.get_process(process_id).spec
    mount = next(m for m in spec.fs.snapshots or [] if m.dir.endswith(f"/inputs/{input_name}"))
    return mount.snapshotid, bool(mount.keepsnapshot)


def _describe(extra: dict) -> str:
    files = ", ".join(f"{f['path']} ({f['size']} B)" for f in extra.get("files", [])[:3])
    return f"snapshot {extra['snapshot_id'][:12]} of {extra['label']}: {files}"


def chain(out: Path, dags: Path, step: Callable[[str, Callable[[], Any]], Any]) -> dict:
    from pollinator.pins import asset_uri

    colony = os.environ.get("POLLINATOR_COLONY") or os.environ.get("COLONIES_COLONY_NAME", "dev")
    uri = asset_uri(colony, LABEL)
    report: dict = {"uri": uri, "checks": {}}
    checks = report["checks"]
    up_dag, down_dag = _load(dags / f"{UPSTREAM}.py", UPSTREAM), _load(dags / f"{DOWNSTREAM}.py", DOWNSTREAM)

    first = step("upstream1", up_dag.test)
    report["upstream1"] = _report(UPSTREAM, first.run_id)
    report["events_after_1"] = _events(uri)
    report["queued_after_1"] = _queued(DOWNSTREAM)
    pinned = report["events_after_1"][-1]["extra"]
    say(f"{UPSTREAM} run 1 emitted an asset event on {uri} pinning {_describe(pinned)}")
    say(f"Airflow queued {DOWNSTREAM} (scheduled on that asset): {report['queued_after_1']} queue row(s)")

    run_id, took, pid = step("schedule", lambda: schedule_with_airflow_scheduler(DOWNSTREAM, out / "scheduler.log"))
    report["scheduler"] = {"pid": pid, "seconds": took, "run_id": run_id}
    say(f"airflow scheduler (pid {pid}) created run {run_id} of {DOWNSTREAM} from the asset event "
        f"in {took:.0f} s, and was stopped")

    second = step("upstream2", up_dag.test)
    report["upstream2"] = _report(UPSTREAM, second.run_id)
    report["events_after_2"] = _events(uri)
    newer = report["events_after_2"][-1]["extra"]
    say(f"{UPSTREAM} run 2 wrote other rows: the label's latest files are now {_describe(newer)}")

    down = step("downstream", lambda: _run_existing(down_dag, run_id))
    report["downstream"] = _report(DOWNSTREAM, down.run_id)
    train = report["downstream"]["xcoms"].get("train", {}).get("return_value") or {}
    checks["downstream_succeeded"] = report["downstream"]["tasks"].get("train", {}).get("state") == "success"
    checks["consumed_first_event"] = report["events_after_1"][-1]["id"] in report["downstream"]["consumed_event_ids"]
    if train.get("process_id"):
        mounted, kept = _mounted(train["process_id"], "prep")
        checks["mounted_the_pinned_snapshot"] = mounted == pinned["snapshot_id"] and kept
        wrote, wrote_later = _snapshot_file(pinned["snapshot_id"], WROTE), _snapshot_file(newer["snapshot_id"], WROTE)
        read = _snapshot_file(train["result_snapshot_id"], READ)
        checks["label_changed_in_between"] = wrote != wrote_later
        checks["read_byte_identical_to_run_1"] = read == wrote
        same = "byte-identical" if read == wrote else "NOT identical"
        say(f"{DOWNSTREAM} ({report['downstream']['run_type']} run) mounted snapshot {mounted[:12]} at inputs/prep: "
            f"the {len(read)} bytes it trained on are {same} to run 1's {WROTE}, though the label moved on")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where report.json and the logs go")
    parser.add_argument("--dags", type=Path, default=ROOT / "example_dags",
                        help="the folder holding asset_preprocess.py and asset_train.py (Airflow's DAG folder)")
    parser.add_argument("--step-logs", action="store_true", help="each step's output to OUT/<step>.log")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1), os.dup(2)

    def step(name: str, fn: Callable[[], Any]) -> Any:
        if not args.step_logs:
            return fn()
        sys.stdout.flush(), sys.stderr.flush()
        with open(args.out / f"{name}.log", "wb") as log:
            os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
            try:
                return fn()
            except Exception:
                traceback.print_exc()
                raise
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os.dup2(saved[0], 1), os.dup2(saved[1], 2)

    report: dict = {}
    try:
        report = chain(args.out, args.dags, step)
    except Exception:
        report["error"] = traceback.format_exc()
        print(report["error"], file=sys.stderr)
    (args.out / "report.json").write_text(json.dumps(report, default=str, indent=1))
    checks = report.get("checks", {})
    ok = "error" not in report and bool(checks) and all(checks.values())
    say("every check holds" if ok else f"FAILED: {[k for k, v in checks.items() if not v] or 'see the error'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
