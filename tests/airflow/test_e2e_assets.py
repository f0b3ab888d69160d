"""End-to-end: the asset example DAGs (example_dags/asset_*.py) chained by a colonyfs:// Asset.

``scripts/asset_chain.py`` (what ``make demo`` runs too) drives, against the local colony: the upstream DAG
(``dag.test()``), then a real ``airflow scheduler`` process whose own loop creates the asset-triggered run
of the downstream DAG from the upstream's asset event (the run waits: no pool slots), then the upstream
again (its label now holds other files, a second event), then an ``airflow api-server`` and the scheduler,
whose LocalExecutor runs the waiting run and the second event's run as a deployment does. Each downstream
job must read byte-identical files from the snapshot pinned by the event that triggered it; the first
one started after the label had moved on. This test checks each of those facts itself, from the metadata
DB's report and the colony, not from the script's verdict alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pollinator.cfs import CFS
from pollinator.pins import parse_input

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(1500)  # two scheduler starts, an api-server, four jobs, on a loaded 2-core box


@pytest.fixture(scope="module")
def chained(airflow_env, colony_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("asset-runs")
    # an Airflow of its own: the scheduler runs whatever is runnable in its DB, and the session's DB holds
    # the other tests' DAGs and runs
    home = tmp_path_factory.mktemp("asset-airflow")
    dags_dir = home / "dags"
    dags_dir.mkdir()
    for name in ("asset_preprocess.py", "asset_train.py"):
        shutil.copy(ROOT / "example_dags" / name, dags_dir / name)
    env = {**airflow_env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # a paused DAG gets no runs
           # OpenLineage events of every task (dag.test()'s and the executor's), when the provider is installed
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "append": True,
                                                         "log_file_path": str(out / "openlineage.jsonl")}),
           "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True", "AIRFLOW__OPENLINEAGE__EXECUTION_TIMEOUT": "300"}
    airflow = Path(sys.executable).with_name("airflow")
    migrated = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "asset_chain.py"), str(out), "--dags",
                           str(dags_dir), "--step-logs"], env=env, capture_output=True, text=True, timeout=1400,
                          cwd=out)
    report = json.loads((out / "report.json").read_text())
    report["openlineage_file"] = str(out / "openlineage.jsonl")
    logs = {p.stem: p.read_text(errors="replace") for p in out.glob("*.log")}
    assert "error" not in report, report.get("error", "") + "\n".join(v[-3000:] for v in logs.values())
    return report, logs, done


def _snapshot_bytes(settings, snapshot_id: str, name: str, where: Path) -> bytes:
    with settings.client() as client:
        CFS(client, settings.require_s3()).download_snapshot(snapshot_id, where)
    return (where / name).read_bytes()


def test_the_upstream_emits_an_asset_event_pinning_its_result_snapshot(chained):
    report, logs, _done = chained
    assert report["upstream1"]["tasks"]["preprocess"]["state"] == "success", logs["upstream1"][-4000:]
    [event] = report["events_after_1"]
    extra = event["extra"]
    xcom = report["upstream1"]["xcoms"]["preprocess"]["return_value"]
    assert extra["snapshot_id"] == xcom["result_snapshot_id"] and extra["label"] == xcom["result_label"]
    assert [f["path"] for f in extra["files"]] == ["train.csv"] and extra["files"][0]["size"] > 0
    assert parse_input(extra["input"]) == (extra["label"], extra["snapshot_id"])
    assert report["queued_after_1"] >= 1  # Airflow queued the DAG scheduled on the asset


def test_a_real_scheduler_process_creates_and_runs_the_downstream_runs_from_the_events(chained):
    report, logs, _done = chained
    down, first = report["downstream"], report["events_after_1"][0]
    assert report["scheduler"]["pid"] > 0 and report["scheduler"]["run_id"] == down["run_id"]
    assert down["run_type"] == "asset_triggered", down  # made by the scheduler's loop, not by dag.test()
    # it consumed the first event only: the second came after the scheduler made the run
    assert down["consumed_event_ids"] == [first["id"]], (down, report["events_after_2"])
    runs = report["downstream_runs"]
    assert len(runs) == 2 and sorted(e for r in runs for e in r["consumed_event_ids"]) == [
        e["id"] for e in report["events_after_2"]]  # one run per event, each event consumed once
    for run in runs:
        train = run["tasks"]["train"]
        assert train["state"] == "success", run["log"][-4000:] or logs.get("scheduler", "")[-4000:]
        assert train["queued_by"] == "SchedulerJob"  # queued to the scheduler's executor, not run by dag.test()
        assert "train: slope=" in run["log"]  # the remote line, in the log the executor's task process wrote


def test_the_downstream_mounts_the_triggering_snapshot_after_the_label_was_overwritten(chained, settings,
                                                                                        tmp_path):
    report, logs, done = chained
    first, second = report["events_after_2"]
    assert report["upstream2"]["tasks"]["preprocess"]["state"] == "success", logs["upstream2"][-4000:]
    assert first["extra"]["snapshot_id"] != second["extra"]["snapshot_id"]
    pinned = _snapshot_bytes(settings, first["extra"]["snapshot_id"], "train.csv", tmp_path / "first")
    newer = _snapshot_bytes(settings, second["extra"]["snapshot_id"], "train.csv", tmp_path / "second")
    assert pinned != newer  # the label really changed before the first downstream job started

    waiting = report["downstream"]  # the run made before the label moved on
    [later] = [r for r in report["downstream_runs"] if r["run_id"] != waiting["run_id"]]
    for run, event, expected in ((waiting, first, pinned), (later, second, newer)):
        assert run["consumed_event_ids"] == [event["id"]]
        train = run["xcoms"]["train"]["return_value"]
        read = _snapshot_bytes(settings, train["result_snapshot_id"], "trained_on.csv", tmp_path / run["run_id"][-8:])
        assert read == expected  # byte-identical to what its triggering run wrote
        with settings.client() as client:
            spec = client.get_process(train["process_id"]).spec
        mount = next(m for m in spec.fs.snapshots if m.dir.endswith("/inputs/prep"))
        assert mount.snapshotid == event["extra"]["snapshot_id"] and mount.keepsnapshot
    # the script's own checks agree, and it says so (what `make demo` prints)
    assert done.returncode == 0 and all(report["checks"].values()), (report["checks"], done.stdout[-3000:])
    assert "byte-identical to that run's train.csv (the label had moved on" in done.stdout


def test_openlineage_links_the_train_run_to_the_preprocess_run_across_dags(chained, colony_env):
    """The task processes the scheduler's executor started emit lineage too: a backend sees train's input as
    the very dataset version preprocess run 1 produced."""
    pytest.importorskip("airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage")
    report, _logs, _done = chained
    path = Path(report["openlineage_file"])
    assert path.exists(), "no OpenLineage event was written"
    complete = [e for e in map(json.loads, filter(str.strip, path.read_text().splitlines()))
                if e.get("eventType") == "COMPLETE"]

    def datasets(job: str, side: str) -> list[tuple[str, str, str]]:
        return [(d["namespace"], d["name"], d.get("facets", {}).get("version", {}).get("datasetVersion", ""))
                for e in complete if e["job"]["name"] == job for d in e.get(side, [])]

    namespace = f"colonyfs://{colony_env['COLONIES_COLONY_NAME']}"
    wrote = [(namespace, e["extra"]["label"], e["extra"]["snapshot_id"]) for e in report["events_after_2"]]
    assert datasets("asset_preprocess.preprocess", "outputs") == wrote  # both preprocess runs, in order
    # both train runs (run by the executor's task processes) read exactly those dataset versions
    assert sorted(datasets("asset_train.train", "inputs")) == sorted(wrote)
