"""Cross-DAG chaining through a colonyfs:// Asset: a real ``airflow scheduler`` makes and runs the downstream DAG.

    python scripts/asset_chain.py OUT_DIR [--dags DIR] [--step-logs]

Runs the example pair (``example_dags/asset_preprocess.py`` -> ``asset_train.py``) against the colony in
the environment, in the Airflow of the environment (``AIRFLOW_HOME``, its metadata DB, the DAG folder
holding both files; the DAGs must not be paused at creation):

1. ``asset_preprocess`` runs (``dag.test()``): its task emits an asset event whose ``extra`` pins its
   result snapshot, and Airflow queues ``asset_train`` (scheduled on that asset);
2. an ``airflow scheduler`` process turns the queue into an asset-triggered run of ``asset_train``
   consuming that event. The default pool has no slots meanwhile, so the run waits, and the scheduler
   is stopped once the run exists;
3. ``asset_preprocess`` runs again: its label now holds other files (a second event, queued);
4. an ``airflow api-server`` (the execution API) and the scheduler again, with the pool open: the
   scheduler makes the second event's run and its LocalExecutor runs both runs' tasks, each in its
   own task process talking to the api-server, as in a deployment.

Each run's job mounts the snapshot of the event that triggered it: this script checks the mount in
each process's spec and that the first run trained on bytes identical to what the first preprocess
run wrote (not the label's newer ones), the second on the second's.

Prints what happened (lines starting ``[chain]``), writes ``OUT_DIR/report.json`` (events, runs, task
states, XComs, checks), the services' output to ``OUT_DIR/{scheduler,api-server}.log`` and the train
tasks' logs to ``OUT_DIR/train-<n>.log``; with ``--step-logs`` each ``dag.test()`` step's output goes to
``OUT_DIR/<step>.log`` instead of stdout. Exit 0 only when every check holds. ``make demo`` runs it;
so does ``tests/airflow/test_e2e_assets.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM, DOWNSTREAM = "asset_preprocess", "asset_train"
LABEL = "/pollinator/asset_prep/result"  # the label asset_preprocess publishes (its asset's URI path)
WROTE, READ = "train.csv", "trained_on.csv"  # preprocess writes WROTE; train copies what it read to READ
SERVICE_WAIT = 600.0  # seconds, for a loaded box: a service's start-up plus a few scheduler loops


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

    from airflow.jobs.job import Job
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
            queued_by = session.get(Job, ti.queued_by_job_id) if ti.queued_by_job_id else None
            report["tasks"][ti.task_id] = {"state": str(getattr(ti.state, "value", ti.state)),
                                           "try_number": ti.try_number,
                                           "queued_by": queued_by.job_type if queued_by else None}
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


def _finished_runs(dag_id: str, n: int) -> list[str]:
    """The asset-triggered runs of ``dag_id`` once ``n`` of them are finished (else [])."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id,
                                                    DagRun.run_type == DagRunType.ASSET_TRIGGERED)).all()
        done = [r for r in runs if r.state in (DagRunState.SUCCESS, DagRunState.FAILED)]
        return [r.run_id for r in sorted(done, key=lambda r: r.id)] if len(done) >= n else []


class Services:
    """Airflow's own processes, each in its own process group with its output in OUT_DIR/<name>.log."""

    def __init__(self, out: Path):
        self.out = out
        self.procs: dict[str, subprocess.Popen] = {}
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    def start(self, name: str, *args: str) -> int:
        with open(self.out / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([self.airflow, *args], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc.pid

    def wait(self, what: str, condition: Callable[[], Any], timeout: float = SERVICE_WAIT) -> Any:
        """Poll ``condition`` until it is truthy; fail at once if a service died meanwhile."""
        from sqlalchemy.exc import OperationalError

        t0 = time.monotonic()
        while True:
            try:
                got = condition()
            except OperationalError:  # SQLite busy past its timeout while a service writes: ask again
                got = None
            if got:
                return got
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode} while waiting for {what}; "
                                       f"its output: {self.out / name}.log")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{what}: not within {timeout:.0f} s (output in {self.out})")
            time.sleep(0.5)

    def stop(self, name: str) -> None:
        """SIGTERM the service's process group (it and its children), SIGKILL what is left."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _task_log(dag_id: str, run_id: str, task_id: str) -> str:
    """The task's log as the executor's task process wrote it (``[logging] base_log_folder``)."""
    from airflow.configuration import conf

    base = Path(conf.get("logging", "base_log_folder"))
    found = sorted(base.glob(f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/attempt=*.log"))
    return found[-1].read_text(errors="replace") if found else ""


def _log_events(text: str, *needles: str) -> list[str]:
    """The messages of a JSON-lines task log that contain one of ``needles``."""
    lines = []
    for raw in text.splitlines():
        try:
            msg = str(json.loads(raw).get("event", ""))
        except ValueError:
            msg = raw
        if any(n in msg for n in needles):
            lines.append(msg)
    return lines


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
    report: dict = {"uri": uri, "out": str(out), "checks": {}}
    up_dag = _load(dags / f"{UPSTREAM}.py", UPSTREAM)

    first = step("upstream1", up_dag.test)
    report["upstream1"] = _report(UPSTREAM, first.run_id)
    report["events_after_1"] = _events(uri)
    report["queued_after_1"] = _queued(DOWNSTREAM)
    pinned = report["events_after_1"][-1]["extra"]
    say(f"{UPSTREAM} run 1 emitted an asset event on {uri} pinning {_describe(pinned)}")
    say(f"Airflow queued {DOWNSTREAM} (scheduled on that asset): {report['queued_after_1']} queue row(s)")

    services = Services(out)
    slots = None
    try:
        port = _free_port()  # the api-server starts now, to be up by step 4
        os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{port}/execution/"
        os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(32))  # shared by both services
        services.start("api-server", "api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", str(port),
                       "-w", "1")
        slots = _default_pool(0)  # the scheduler makes the run, but hands no task to its executor yet
        t0 = time.monotonic()
        pid = services.start("scheduler", "scheduler", "--skip-serve-logs")  # no log server: port 8793 is shared
        [run_id] = services.wait(f"an asset-triggered run of {DOWNSTREAM}", lambda: _asset_runs(DOWNSTREAM))
        services.stop("scheduler")
        report["scheduler"] = {"pid": pid, "seconds": time.monotonic() - t0, "run_id": run_id}
        say(f"airflow scheduler (pid {pid}) created run {run_id} of {DOWNSTREAM} from that event in "
            f"{report['scheduler']['seconds']:.0f} s; the run waits (no pool slots) and the scheduler stops")

        second = step("upstream2", up_dag.test)
        report["upstream2"] = _report(UPSTREAM, second.run_id)
        report["events_after_2"] = _events(uri)
        newer = report["events_after_2"][-1]["extra"]
        say(f"{UPSTREAM} run 2 wrote other rows: the label's latest files are now {_describe(newer)}")

        _default_pool(slots)
        t0 = time.monotonic()
        services.wait("the api-server's execution API", lambda: _healthy(f"http://127.0.0.1:{port}/execution/health"))
        pid = services.start("scheduler", "scheduler", "--skip-serve-logs")
        say(f"airflow api-server (execution API on port {port}) and scheduler (pid {pid}) running: "
            f"its LocalExecutor runs the waiting run and the one for the second event")
        runs = services.wait(f"two finished runs of {DOWNSTREAM}", lambda: _finished_runs(DOWNSTREAM, 2))
        report["executed_in"] = time.monotonic() - t0
    finally:
        services.stop_all()
        if slots is not None:
            _default_pool(slots)
    return _check_runs(report, runs, run_id)


def _check_runs(report: dict, runs: list[str], first_run: str) -> dict:
    """Each downstream run mounted its own triggering event's snapshot and read exactly its bytes."""
    checks = report["checks"]
    events = report["events_after_2"]
    bytes_of = {e["id"]: _snapshot_file(e["extra"]["snapshot_id"], WROTE) for e in events}
    checks["label_changed_in_between"] = len(set(bytes_of.values())) == len(events) == 2
    report["downstream_runs"] = []
    for n, run_id in enumerate(runs, 1):
        run = _report(DOWNSTREAM, run_id)
        run["log"] = _task_log(DOWNSTREAM, run_id, "train")
        (Path(report["out"]) / f"train-{n}.log").write_text(run["log"])
        report["downstream_runs"].append(run)
        if run_id == first_run:
            report["downstream"] = run
        consumed = [e for e in events if e["id"] in run["consumed_event_ids"]]
        train = run["xcoms"].get("train", {}).get("return_value") or {}
        ok = run["tasks"].get("train", {}).get("state") == "success" and len(consumed) == 1 and bool(train)
        checks[f"run_{n}_succeeded_with_one_event"] = ok and len(run["consumed_event_ids"]) == 1
        if not ok:
            continue
        event = consumed[0]
        mounted, kept = _mounted(train["process_id"], "prep")
        read = _snapshot_file(train["result_snapshot_id"], READ)
        which = 1 + [e["id"] for e in events].index(event["id"])
        checks[f"run_{n}_mounted_its_event_snapshot"] = mounted == event["extra"]["snapshot_id"] and kept
        checks[f"run_{n}_read_byte_identical"] = read == bytes_of[event["id"]]
        same = "byte-identical" if read == bytes_of[event["id"]] else "NOT identical"
        later = " (the label had moved on before it started)" if run_id == first_run else ""
        say(f"{DOWNSTREAM} run {run_id} ({run['state']}), triggered by preprocess run {which}'s event, mounted "
            f"snapshot {mounted[:12]}: the {len(read)} bytes it trained on are {same} to that run's {WROTE}{later}")
        for line in _log_events(run["log"], "train:"):
            say(f"  its task log (LocalExecutor): {line}")
    checks["the_waiting_run_finished"] = first_run in runs
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
    t0 = time.monotonic()
    try:
        report = chain(args.out, args.dags, step)
    except Exception:
        report["error"] = traceback.format_exc()
        print(report["error"], file=sys.stderr)
    (args.out / "report.json").write_text(json.dumps(report, default=str, indent=1))
    checks = report.get("checks", {})
    ok = "error" not in report and bool(checks) and all(checks.values())
    took = f" ({time.monotonic() - t0:.0f} s)"
    say(("every check holds" if ok else f"FAILED: {[k for k, v in checks.items() if not v] or 'see the error'}")
        + took)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
