"""Issue #17 item 5 with Airflow's real triggerer: stopped mid-job, every remote line is in the task log once.

Processes, as in a deployment: ``airflow triggerer`` (its own process group, as in its own container)
and a worker (``dag.test()`` with its inline-trigger shortcut off, so the task really defers: the
Trigger row goes to the metadata DB, a triggerer runs it, the event puts the task back to SCHEDULED and
the worker resumes it in ``execute_complete``). The remote job prints 60 numbered lines, one each
0.3 s; it waits for the test before line 1 and after lines 20 and 40, so each kill lands while lines flow
and the trigger is past its first poll:

1. triggerer A follows lines 1..; after three polls of lines it gets SIGTERM (a rolling restart);
2. triggerer B takes the trigger over (rebuilt from the kwargs stored at deferral), catches up to 20;
   the job goes on, and after three polls B's whole process group gets SIGKILL (a node lost);
3. triggerer C takes it over once B's heartbeat is stale, and follows to the end.

The task log is read the way the UI reads it (``TaskLogReader``: the worker's log and every triggerer's
file for this try, merged). Each remote line is one record; no line is missing; the guarantee for the
rest is docs/airflow.md's: a stopped triggerer may repeat only the batch it was logging when it stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

LINES = 60
BATCH_GAP = 0.2  # seconds: lines further apart in a triggerer's log came from different polls (0.5 s apart)

DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PollinatorOperator(task_id="work", executor_names=["dev-hpc"], name="{dag_id}", deferrable=True,
                       poll_interval=0.5, cmd={cmd!r})
'''

# dag.test() runs a deferred task's trigger inline; off, the task stays DEFERRED for a real triggerer
WORKER = '''
import sys
import importlib.util
import airflow.sdk.definitions.dag as dagmod

_run_task = dagmod._run_task
dagmod._run_task = lambda *, ti, task, run_triggerer=False: _run_task(ti=ti, task=task, run_triggerer=False)
spec = importlib.util.spec_from_file_location("restart_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dr = module.dag.test()
print("DAGRUN-STATE", dr.state, dr.run_id, flush=True)
'''

# the task log as the UI serves it, one JSON record per line
READ_LOG = '''
import json, sys
from sqlalchemy import select
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.log.log_reader import TaskLogReader
from airflow.utils.session import create_session

with create_session() as session:
    ti = session.scalar(select(TaskInstance).where(TaskInstance.dag_id == sys.argv[1],
                                                   TaskInstance.task_id == "work"))
    logs, _meta = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
    for record in logs:
        print(json.dumps({"event": str(record.event), "timestamp": str(getattr(record, "timestamp", ""))}))
    cursor = session.scalar(select(XComModel).where(XComModel.dag_id == ti.dag_id, XComModel.run_id == ti.run_id,
                                                    XComModel.task_id == ti.task_id,
                                                    XComModel.key == "pollinator_log_cursor"))
    print("CURSOR", json.dumps(XComModel.deserialize_value(cursor) if cursor is not None else None))
'''


def _job(mark: str, gates: Path) -> str:
    """60 numbered lines, one each 0.3 s; before line 1 and after lines 20 and 40 the job waits for the test
    to open a gate, saying ``tick-<mark>`` each second meanwhile (so the test sees a triggerer polling)."""

    def wait(gate: str) -> str:
        return (f"n=0; while [ ! -e {gates / gate} ] && [ $n -lt 2400 ]; do sleep 0.25; n=$((n+1)); "
                f"if [ $((n % 4)) = 1 ]; then echo tick-{mark}; fi; done")

    return (f"{wait('go-0')}; for i in $(seq 1 {LINES}); do echo {mark}-$i; "
            f"if [ $i = 20 ]; then {wait('go-20')}; fi; "
            f"if [ $i = 40 ]; then {wait('go-40')}; fi; sleep 0.3; done")


class Triggerer:
    """One ``airflow triggerer``, in its own process group (as in its own container)."""

    def __init__(self, name: str, env: dict[str, str], logs: Path):
        self.log = logs / f"triggerer-{name}.log"
        airflow = Path(sys.executable).with_name("airflow")
        self.proc = subprocess.Popen([str(airflow), "triggerer"], env=env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        self.proc.wait(90)
        if sig != signal.SIGKILL:  # its trigger runner child: gone with it (or orphaned and killed here)
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _trigger_logs(home: Path, dag_id: str) -> dict[str, list[tuple[str, datetime]]]:
    """Each triggerer's log file of this task instance: its records (message, time), in order."""
    out: dict[str, list[tuple[str, datetime]]] = {}
    for path in sorted((home / "logs").glob(f"dag_id={dag_id}/**/*.trigger.*.log")):
        records = []
        for raw in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(raw)
                records.append((str(record.get("event", "")), datetime.fromisoformat(record["timestamp"])))
            except (ValueError, KeyError):
                continue  # a line being written right now
        out[path.name] = records
    return out


def _numbers(events, mark: str) -> list[int]:
    return [int(e.rsplit("-", 1)[1]) for e in events if e.startswith(f"{mark}-")]


def _batches(records: list[tuple[str, datetime]], mark: str) -> list[list[int]]:
    """The remote lines one triggerer logged, grouped by poll: one poll's lines are logged in the same
    instant, and between two polls the trigger writes its cursor and sleeps poll_interval (0.5 s here)."""
    batches: list[list[int]] = []
    last: datetime | None = None
    for event, when in records:
        if not event.startswith(f"{mark}-"):
            continue
        if last is None or (when - last).total_seconds() > BATCH_GAP:
            batches.append([])
        batches[-1].append(int(event.rsplit("-", 1)[1]))
        last = when
    return batches


def _wait(what: str, check, timeout: float, *procs: subprocess.Popen, debug=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for p in procs:
            assert p.poll() is None, f"{p.args} exited {p.returncode} while waiting for {what}\n{debug()}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{debug()}")


def test_real_triggerer_stopped_and_killed_mid_job_logs_each_remote_line_once(airflow_env, tmp_path):
    env = dict(airflow_env)
    # a killed triggerer's triggers go to another once its heartbeat is this stale (default 30 s)
    env.update({"AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2"})
    home = Path(env["AIRFLOW_HOME"])
    dag_id = f"trestart_{uuid.uuid4().hex[:8]}"
    mark = f"L{uuid.uuid4().hex[:8]}"
    gates = tmp_path / "gates"
    gates.mkdir()
    dag_file = Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    dag_file.write_text(textwrap.dedent(DAG.format(dag_id=dag_id, cmd=_job(mark, gates))))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker_log = tmp_path / "worker.log"

    def seen(name_part: str = "") -> list[int]:
        return [n for name, records in _trigger_logs(home, dag_id).items() if name_part in name
                for n in _numbers((e for e, _ in records), mark)]

    def debug() -> str:
        tails = {p.name: p.read_text(errors="replace")[-2500:] for p in tmp_path.glob("*.log")}
        logs = {name: [e for e, _ in records] for name, records in _trigger_logs(home, dag_id).items()}
        return json.dumps({"trigger_logs": logs, "tails": tails}, indent=1)[-12000:]

    def new_file(before: set[str]) -> str:
        """The log file of the triggerer started after ``before``, once it has logged a tick (it polls)."""
        for name, records in _trigger_logs(home, dag_id).items():
            if name not in before and any(e == f"tick-{mark}" for e, _ in records):
                return name
        return ""

    def batches(name: str, after: int = 0) -> list[list[int]]:
        return [b for b in _batches(_trigger_logs(home, dag_id).get(name, []), mark) if b[-1] > after]

    triggerers: list[Triggerer] = []
    worker = subprocess.Popen([sys.executable, str(script), str(dag_file)], env=env, stdout=open(worker_log, "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        a = Triggerer("a", env, tmp_path)
        triggerers.append(a)
        _wait("triggerer A to follow the job", lambda: new_file(set()), 300, worker, a.proc, debug=debug)
        a_file = new_file(set())
        (gates / "go-0").touch()
        _wait("triggerer A to log 3 polls of lines", lambda: len(batches(a_file)) >= 3, 120, worker, a.proc,
              debug=debug)
        a.stop(signal.SIGTERM)  # mid-stream: a rolling restart

        before = set(_trigger_logs(home, dag_id))
        b = Triggerer("b", env, tmp_path)
        triggerers.append(b)
        _wait("triggerer B to take over (line 20 logged, the job waiting)",
              lambda: new_file(before) and 20 in seen(), 300, worker, b.proc, debug=debug)
        b_file = new_file(before)
        (gates / "go-20").touch()
        _wait("triggerer B to log 3 polls past line 20", lambda: len(batches(b_file, after=20)) >= 3, 120,
              worker, b.proc, debug=debug)
        b.stop(signal.SIGKILL)  # the whole triggerer, mid-stream: a node lost

        before = set(_trigger_logs(home, dag_id))
        c = Triggerer("c", env, tmp_path)
        triggerers.append(c)
        _wait("triggerer C to take over (line 40 logged, the job waiting)",
              lambda: new_file(before) and 40 in seen(), 300, worker, c.proc, debug=debug)
        (gates / "go-40").touch()
        assert worker.wait(300) == 0, debug()
    finally:
        for gate in ("go-0", "go-20", "go-40"):
            (gates / gate).touch()
        for t in triggerers:
            if t.proc.poll() is None:
                t.stop(signal.SIGTERM)
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)

    out = worker_log.read_text(errors="replace")
    assert "DAGRUN-STATE success" in out, debug()
    # issue item 9: the process URL ends its message (Airflow's log viewer links up to the next space)
    announced = re.search(r"ColonyOS process ([0-9a-f]{64}) - dashboard: (\S+)", out)
    assert announced and announced.group(2).endswith(f"processid={announced.group(1)}"), out[-3000:]

    read = subprocess.run([sys.executable, "-c", READ_LOG, dag_id], env=env, capture_output=True, text=True,
                          timeout=300)
    assert read.returncode == 0, read.stderr[-3000:]
    records = [json.loads(line)["event"] for line in read.stdout.splitlines() if line.startswith("{")]
    cursor = json.loads(read.stdout.split("CURSOR ", 1)[1])  # the trigger kept its cursor in Airflow
    assert cursor["process_id"] == announced.group(1) and cursor["since"] > 0, cursor
    numbers = _numbers(records, mark)
    counts = Counter(numbers)
    assert sorted(counts) == list(range(1, LINES + 1)), (numbers, debug())  # no line lost
    assert not any("\n" in r for r in records)  # one record per remote line

    # the guarantee: a stopped triggerer repeats at most the batch it was logging (its last poll), nothing else
    per_file = {name: _batches(records, mark) for name, records in _trigger_logs(home, dag_id).items()}
    assert len([b for b in per_file.values() if b]) == 3, per_file
    assert all(k <= 2 for k in counts.values()), counts
    ordered = sorted((b for b in per_file.values() if b), key=lambda batches: batches[0][0])
    for batches in ordered:
        lines = [n for batch in batches for n in batch]
        assert lines == sorted(lines) and len(set(lines)) == len(lines), per_file  # each triggerer: in order, once
    for earlier, later in zip(ordered, ordered[1:]):
        overlap = sorted({n for b in earlier for n in b} & {n for b in later for n in b})
        assert overlap in ([], earlier[-1]), per_file  # nothing, or exactly the earlier one's last batch
    repeated = sorted(n for n, k in counts.items() if k > 1)
    print(f"repeated lines: {repeated or 'none'}; batches per triggerer: {[len(b) for b in ordered]}; "
          + ", ".join(f"{b[0][0]}-{b[-1][-1]}" for b in ordered))
