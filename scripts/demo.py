"""`make demo`: the mission on one machine.

Starts a local colony (server, S3, executors dev-k8s and dev-hpc), runs the
Airflow example DAG with `airflow dags test`, the cross-DAG asset pair
(`scripts/asset_chain.py`: preprocess emits asset events, a real `airflow
scheduler` makes and runs the train runs they trigger, each mounting exactly
its event's snapshot) and the Prefect twin flow, shows the remote log lines as they
stream, prints a summary table of every ColonyOS process the runs created,
and stops the colony. Exit 0 only when every step succeeded and its result
files are there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pollinator.colonies.models import ProcessState, parse_go_time
from pollinator.dev.colony import LocalColony
from pollinator.run.handle import result_label_of
from pollinator.run.layout import is_internal, latest_label_of

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_dags"
console = Console(width=None if sys.stdout.isatty() else 120)
# remote steps: 3 in the DAG, 4 in the asset pair (preprocess twice, a train run per event), 2 in the flow
EXPECTED_ROWS = {None: 9, "airflow": 7, "prefect": 2}
# each step's result file that must be in its run's result label afterwards ("": it returns a value only)
EXPECTED = {"airflow": {"preprocess": "train.csv", "train": "model.json", "evaluate": "", "asset_prep": "train.csv",
                        "asset_train": "model.json"},
            "prefect": {"preprocess": "train.json", "train": "model.json"}}


def stream(argv: list[str], env: dict[str, str], label: str, cwd: Path) -> int:
    """Run a step, echoing its output live with a prefix (the remote lines are in it)."""
    console.rule(f"[bold]{label}")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if not interesting(line):
            continue
        line = tidy(line)
        text = Text(f"{label:>8} | ", style="dim")
        text.append(line.rstrip())
        console.print(text, highlight=False, soft_wrap=True)
    return proc.wait()


def submitted_at(process) -> datetime:
    return parse_go_time(process.submissiontime) or datetime.min.replace(tzinfo=timezone.utc)


def interesting(line: str) -> bool:
    """Airflow's own bookkeeping is noise here: keep the task's lines, its start/end and errors."""
    keep = ("PollinatorOperator", "[DAG TEST]", "[chain]", "pollinator", "ERROR", "Error", "Task run", "Flow run",
            "evaluation", "Traceback", "Exception")
    return any(k in line for k in keep) and "Pushing xcom" not in line


def tidy(line: str) -> str:
    """Drop structlog's trailing ``[logger] loc=file:line`` tail."""
    line = line.rstrip()
    for marker in (" [airflow.task.operators", " [airflow.sdk.definitions.dag]", " [pollinator.run"):
        if marker in line:
            line = line.split(marker, 1)[0]
    return line


def summary(colony: LocalColony, since: datetime, prefect_from: datetime,
            expected_rows: int) -> tuple[Table, bool]:
    settings = colony.settings()
    table = Table(title="ColonyOS processes of this demo")
    for col in ("engine", "step", "executor", "process id", "state", "seconds", "result files"):
        table.add_column(col)
    ok = True
    rows = []
    with settings.client() as client:
        executors = {e.executorid: e.executorname for e in client.get_executors() or []}
        for state in ProcessState:
            for p in client.get_processes(state, count=100) or []:
                if submitted_at(p) < since:
                    continue
                rows.append(p)
        for p in sorted(rows, key=lambda p: p.submissiontime):
            latest = latest_label_of(p.spec).split("/")  # /pollinator/<job name>/result
            project = latest[2] if len(latest) > 3 else "-"
            files = [f.name for f in client.get_files(result_label_of(p)) or [] if not is_internal(f.name)]
            engine = "prefect" if submitted_at(p) >= prefect_from else "airflow"
            start, end = parse_go_time(p.starttime), parse_go_time(p.endtime)
            secs = f"{(end - start).total_seconds():.1f}" if start and end else "-"
            state = ProcessState(p.state).name
            ok &= state == "SUCCESS" and EXPECTED[engine].get(project, "?") in files + [""]
            table.add_row(engine, project, executors.get(p.assignedexecutorid, "-"), p.processid[:12], state, secs,
                          ", ".join(sorted(files)[:4]) or "-")
    return table, ok and len(rows) >= expected_rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slurm", action="store_true",
                        help="run dev-hpc on a local one-node Slurm cluster (needs Debian's slurm-wlm and munge)")
    parser.add_argument("--only", choices=("airflow", "prefect"), help="run one engine's example only")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".pollinator" / "demo-colony")
    args = parser.parse_args(argv)
    colony = LocalColony(args.data_dir, slurm=args.slurm)
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    with console.status("starting the local colony (Colonies server, S3, executors dev-k8s and dev-hpc)..."):
        env = {**os.environ, **colony.start()}
    console.print(f"local colony up at http://{env['COLONIES_SERVER_HOST']}:{env['COLONIES_SERVER_PORT']}")
    codes = {}
    try:
        with tempfile.TemporaryDirectory(prefix="pollinator-demo-") as tmp:
            airflow_env = {**env, "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
                           "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
                           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # asset events queue runs
                           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp}/airflow.db",
                           "POLLINATOR_DEMO_OUT": str(Path(tmp) / "out")}
            airflow = str(Path(sys.executable).with_name("airflow"))
            if args.only != "prefect":
                subprocess.run([airflow, "db", "migrate"], env=airflow_env, check=True, capture_output=True)
                codes["airflow"] = stream([airflow, "dags", "test", "cloud_to_hpc"], airflow_env, "airflow", ROOT)
                codes["assets"] = stream([sys.executable, str(ROOT / "scripts" / "asset_chain.py"),
                                          str(Path(tmp) / "asset-chain")], airflow_env, "assets", ROOT)
            prefect_env = {**env, "PREFECT_HOME": str(Path(tmp) / "prefect"),
                           "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
                           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                           "POLLINATOR_DEMO_OUT": str(Path(tmp) / "out")}
            prefect_from = datetime.now(timezone.utc)
            if args.only != "airflow":
                codes["prefect"] = stream([sys.executable, str(EXAMPLES / "cloud_to_hpc_flow.py")], prefect_env,
                                      "prefect", ROOT)
        table, ok = summary(colony, started, prefect_from, expected_rows=EXPECTED_ROWS[args.only])
        console.print(table)
        if args.slurm:
            jobs = colony.slurm_cluster().root / "jobcomp.txt"
            records = jobs.read_text().splitlines() if jobs.exists() else []
            console.print(f"Slurm: {len(records)} job(s) in {jobs}")
    finally:
        with console.status("stopping the local colony..."):
            colony.stop()
    ok = ok and all(code == 0 for code in codes.values())
    verdict = "[green]every step SUCCESS, results home[/green]" if ok else f"[red]failed[/red] {codes}"
    console.print(f"{verdict} in {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
