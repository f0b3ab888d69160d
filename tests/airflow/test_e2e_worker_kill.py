"""Issue #9 item 2, the Airflow half: the process running the operator is SIGKILLed mid-job; running the
same task instance again re-attaches to the running ColonyOS process instead of submitting a second one."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from pollinator.colonies.models import ProcessState

DAG = '''
from datetime import datetime
from airflow.sdk import DAG
from pollinator_airflow.operators import PollinatorOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    PollinatorOperator(task_id="work", executor_names=["dev-hpc"], name="{dag_id}",
                       cmd="echo {mark}-started; sleep 8; echo {mark}-done")
'''

# the same run_after and logical date both times: the same dag run and task instance try
RUNNER = '''
import sys
from datetime import datetime, timezone
import importlib.util
spec = importlib.util.spec_from_file_location("killed_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
when = datetime(2026, 1, 1, tzinfo=timezone.utc)
dr = module.dag.test(run_after=when, logical_date=when)
print("DAGRUN-STATE", dr.state, flush=True)
'''


def _start(script: Path, dag_file: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(dag_file)], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_killed_worker_reruns_into_the_same_process(airflow_env, client, tmp_path):
    dag_id = f"killed_{uuid.uuid4().hex[:8]}"
    mark = uuid.uuid4().hex[:10]
    dag_file = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    dag_file.write_text(textwrap.dedent(DAG.format(dag_id=dag_id, mark=mark)))
    script = tmp_path / "run_dag.py"
    script.write_text(RUNNER)

    first_log = tmp_path / "first.log"
    worker = _start(script, dag_file, airflow_env, first_log)
    deadline = time.monotonic() + 180
    pid = None
    while time.monotonic() < deadline and pid is None:
        found = re.search(r"submitted process ([0-9a-f]{64})", first_log.read_text(errors="replace"))
        pid = found.group(1) if found else None
        time.sleep(0.2)
    assert pid, first_log.read_text(errors="replace")[-3000:]
    worker.send_signal(signal.SIGKILL)  # a worker dying with the job still running remotely
    worker.wait(30)
    assert client.get_process(pid).state in (ProcessState.WAITING, ProcessState.RUNNING)

    second_log = tmp_path / "second.log"
    rerun = _start(script, dag_file, airflow_env, second_log)
    assert rerun.wait(300) == 0, second_log.read_text(errors="replace")[-4000:]
    text = second_log.read_text(errors="replace")
    assert f"re-attaching to process {pid}" in text or f"process {pid}" in text, text[-4000:]
    assert not re.search(r"submitted process (?!%s)[0-9a-f]{64}" % pid, text), "a second process was submitted"
    assert f"{mark}-done" in text  # the re-attached run streamed the remote output to the end
    assert "DAGRUN-STATE success" in text
    ours = [p for state in ProcessState for p in client.get_processes(state, count=100) or []
            if f"/pollinator/{dag_id}/runs/" in (p.spec.env or {}).get("PROJECT_DIR", "")]
    assert [p.processid for p in ours] == [pid], "exactly one process for this task instance"
    assert client.get_process(pid).state == ProcessState.SUCCESS
