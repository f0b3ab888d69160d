"""colonyfs:// assets: Airflow validates the URI through our provider info; events <-> pinned inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from airflow.sdk import Asset

from pollinator.pins import parse_input
from pollinator.run import JobResult
from pollinator.run.pinned import ResultFile
from pollinator_airflow import assets
from pollinator_airflow.assets import colonyfs_asset, inputs_from_asset_events, resolve_inputs
from pollinator_airflow.provider import get_provider_info


def test_the_scheme_is_registered_and_airflow_validates_it():
    [entry] = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["colonyfs"] and entry["handler"] == "pollinator_airflow.assets.sanitize_uri"
    # Airflow's own Asset runs our normalizer (found through the provider entry point)
    assert Asset(uri="colonyfs://dev/pollinator/p/result/").uri == "colonyfs://dev/pollinator/p/result"
    with pytest.raises(ValueError, match="names the colony first"):
        Asset(uri="colonyfs:///pollinator/p/result")
    with pytest.raises(ValueError, match="has no label"):
        Asset(uri="colonyfs://dev")
    with pytest.raises(ValueError, match="no '..'"):
        Asset(uri="colonyfs://dev/pollinator/../x")


@dataclass
class Event:  # the fields of Airflow's AssetEventDagRunReferenceResult we read
    extra: dict
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _result(snapshot="snap1", label="/pollinator/prep/runs/r1/result") -> JobResult:
    return JobResult(process_id="p1", state="SUCCESS", result_label=label, result_snapshot_id=snapshot,
                     result_snapshot_files=[ResultFile(path="a.csv", size=3, checksum="c" * 64)])


def test_an_event_extra_becomes_a_pinned_input_the_newest_event_wins():
    prep = colonyfs_asset("/pollinator/prep/result", colony="dev")
    old, new = _result("s-old").pin_record(), _result("s-new").pin_record()
    events = {prep: [Event(new, datetime(2026, 1, 2, tzinfo=timezone.utc)),
                     Event(old, datetime(2026, 1, 1, tzinfo=timezone.utc))],
              Asset(uri="s3://bucket/other"): [Event({})]}
    assert inputs_from_asset_events(events) == {"prep": "/pollinator/prep/runs/r1/result@s-new"}
    assert parse_input(inputs_from_asset_events(events, {"data": prep})["data"]).snapshot_id == "s-new"
    with pytest.raises(ValueError, match="no triggering event of colonyfs://dev/pollinator/x/result"):
        inputs_from_asset_events(events, {"x": colonyfs_asset("/pollinator/x/result", colony="dev")})
    with pytest.raises(ValueError, match="carries no snapshot"):
        inputs_from_asset_events({prep: [Event({"note": "made by hand"})]})


def test_an_asset_input_is_the_triggering_snapshot_else_the_label():
    prep = colonyfs_asset("/pollinator/prep/result", colony="dev")
    events = {prep: [Event(_result("s1").pin_record())]}
    inputs = {"prep": prep, "raw": "/pollinator/raw/result"}
    assert resolve_inputs(inputs, events, "dev") == {"prep": "/pollinator/prep/runs/r1/result@s1",
                                                     "raw": "/pollinator/raw/result"}
    assert resolve_inputs(inputs, {}, "dev")["prep"] == "/pollinator/prep/result"  # a manual run: latest
    with pytest.raises(ValueError, match="is in colony 'dev', this task runs in 'prod'"):
        resolve_inputs(inputs, events, "prod")
    inlets = assets.inlets_of(resolve_inputs(inputs, events, "dev"), "dev")
    assert [a.uri for a in inlets] == ["colonyfs://dev/pollinator/prep/runs/r1/result",
                                       "colonyfs://dev/pollinator/raw/result"]


def test_pin_record_is_json_with_the_input_that_mounts_it():
    record = _result().pin_record()
    assert record["snapshot_id"] == "snap1" and record["input"] == "/pollinator/prep/runs/r1/result@snap1"
    assert record["files"] == [{"path": "a.csv", "size": 3, "checksum": "c" * 64}] and record["files_total"] == 1
    with pytest.raises(Exception, match="no result snapshot"):
        JobResult(process_id="p", state="FAILED").pin_record()


def test_input_names_come_from_the_job_name():
    assert assets.input_name("/pollinator/prep/result") == "prep"
    assert assets.input_name("/pollinator/prep/runs/abc/result") == "prep"
    assert assets.input_name("/data/my-set") == "my_set"


def test_the_operator_emits_the_pin_record_to_its_colonyfs_outlets_and_lists_inputs_as_inlets(monkeypatch):
    """With the core stubbed: the emission and the checks around it (the real path: test_e2e_assets)."""
    import fakes
    import pollinator.run
    from fakes import FakeJob, FakeTI, context
    from pollinator_airflow.hooks import PollinatorHook
    from pollinator_airflow.operators import PollinatorOperator

    class Outlets(dict):
        def __missing__(self, key):
            self[key] = SimpleNamespace(extra={})
            return self[key]

    from airflow.sdk.exceptions import AirflowFailException
    from pollinator.run.options import JobOptions

    class PinningJob(FakeJob):  # a job with real options, so the outlet's label is checked
        def __init__(self, options=None, token=None, process_id=None):
            super().__init__(options, token, process_id)
            self.raw, self.options = dict(options or {}), JobOptions.build(**(options or {"name": "n", "cmd": "c"}))

        def finish(self):
            return _result("s9", "/pollinator/x/runs/r/result").model_copy(update={"process_id": self.process_id})

    FakeJob.reset()
    monkeypatch.setattr(pollinator.run, "Job", PinningJob)
    monkeypatch.setattr(pollinator.run, "ProcessHandle", PinningJob)
    monkeypatch.setattr(PollinatorHook, "get_settings", lambda self: fakes.settings())
    out = colonyfs_asset("/pollinator/x/result", colony="dev")
    prep = colonyfs_asset("/pollinator/prep/result", colony="dev")
    ctx = {**context(FakeTI()), "outlet_events": Outlets(),
           "triggering_asset_events": {prep: [Event(_result("s1").pin_record())]}}
    task = PollinatorOperator(task_id="x", cmd="true", outlets=[out], inputs={"prep": prep})
    task.execute(ctx)
    assert ctx["outlet_events"][out].extra["snapshot_id"] == "s9"
    assert ctx["outlet_events"][out].extra["input"] == "/pollinator/x/runs/r/result@s9"
    assert PinningJob.instances[0].raw["inputs"] == {"prep": "/pollinator/prep/runs/r1/result@s1"}
    assert "colonyfs://dev/pollinator/prep/runs/r1/result" in [a.uri for a in task.inlets]

    wrong = PollinatorOperator(task_id="y", cmd="true", outlets=[out])  # writes /pollinator/y/result
    with pytest.raises(AirflowFailException, match="outlet colonyfs://dev/pollinator/x/result: this task writes"):
        wrong.execute({**context(FakeTI()), "outlet_events": Outlets()})
    assert len(PinningJob.instances) == 2 and PinningJob.instances[1].process_id is None  # nothing submitted


def test_lineage_plan_names_inputs_and_results_with_their_snapshots():
    from pollinator_airflow.lineage import lineage_plan

    plan = lineage_plan("dev", {"prep": ("/pollinator/prep/runs/r1/result", "s1")}, _result("s9").pin_record())
    assert plan == {
        "inputs": [{"namespace": "colonyfs://dev", "name": "/pollinator/prep/runs/r1/result", "version": "s1",
                    "input": "prep"}],
        "outputs": [{"namespace": "colonyfs://dev", "name": "/pollinator/prep/runs/r1/result", "version": "s9",
                     "files": 1}]}
    assert lineage_plan("dev", {}, None) == {"inputs": [], "outputs": []}


def test_openlineage_is_optional():
    """The provider is not installed here: the hook says so by ImportError, the rest works without it."""
    from pollinator_airflow.lineage import operator_lineage

    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError):
            operator_lineage({"inputs": [], "outputs": []})
    else:  # pragma: no cover - with the provider installed
        assert operator_lineage({"inputs": [], "outputs": []}).inputs == []


def test_input_mounts_read_from_a_submitted_spec():
    from pollinator.run import Job
    from pollinator.run.pinned import input_mounts

    import fakes

    job = Job.inline(fakes.settings(), name="t", cmd="true", inputs={"prep": "/pollinator/p/result@s1",
                                                                     "raw": "/pollinator/raw/result"})
    spec = job.spec(None, {"raw": "s2"})
    assert input_mounts(spec) == {"prep": ("/pollinator/p/result", "s1"), "raw": ("/pollinator/raw/result", "s2")}


def test_task_pollinator_takes_outlets_and_asset_inputs(monkeypatch):
    import fakes
    import pollinator.run
    from airflow.sdk import DAG, task
    from fakes import FakeJob, FakeTI, context
    from pollinator.run.options import JobOptions
    from pollinator_airflow.hooks import PollinatorHook

    class Outlets(dict):
        def __missing__(self, key):
            self[key] = SimpleNamespace(extra={})
            return self[key]

    made = {}

    class Job(FakeJob):
        def finish(self):
            return _result("s7", "/pollinator/score/runs/r/result").model_copy(update={"process_id": self.process_id})

    def remote_function_job(settings, func, args, kwargs, **options):
        made.update(options)
        job = Job(options, options.get("token"))
        job.options = JobOptions.build(name=options["name"], cmd="python3", inputs=options.get("inputs", {}))
        return job

    FakeJob.reset()
    monkeypatch.setattr(pollinator.run, "remote_function_job", remote_function_job)
    monkeypatch.setattr(PollinatorHook, "get_settings", lambda self: fakes.settings())
    prep = colonyfs_asset("/pollinator/prep/result", colony="dev")
    scored = colonyfs_asset("/pollinator/score/result", colony="dev")
    with DAG("d") as dag:
        @task.pollinator(executor_names=["dev-hpc"], inputs={"prep": prep}, outlets=[scored])
        def score() -> int:
            return 1

        score()
    o = dag.get_task("score")
    ctx = {**context(FakeTI(task_id="score")), "outlet_events": Outlets(),
           "triggering_asset_events": {prep: [Event(_result("s1").pin_record())]}}
    assert o.execute(ctx) == _result().return_value  # the function's value (None here)
    assert made["inputs"] == {"prep": "/pollinator/prep/runs/r1/result@s1"}
    assert ctx["outlet_events"][scored].extra["snapshot_id"] == "s7"
