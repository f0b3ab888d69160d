"""The one spec path: a preview with placeholders, filled in at submit, equals building with the real values."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from pollinator.config import Settings
from pollinator.errors import ProjectError
from pollinator.project import Project
from pollinator.run import Job
from pollinator.run.build import PLACEHOLDER_EXECUTOR_TYPE, PLACEHOLDER_TOKEN, RunContext, build_job_spec, fill
from pollinator.run.options import JobOptions


def _options(tmp_path, **kw) -> JobOptions:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "main.py").write_text("print(1)\n")
    fields = dict(name="p1", cmd="python3", source="main.py", src_dir=src, args=["--x", "1"],
                  env={"A": "b"}, inputs={"prep": "/pollinator/prep/result"}, result_label="/r/p1")
    fields.update(kw)
    return JobOptions.build(**fields)


def test_fill_equals_building_with_the_real_values(tmp_path):
    options = _options(tmp_path)
    real = RunContext(run_id="R" * 8, snapshot_id="S" * 8, input_snapshots={"prep": "I" * 8}, token="dag/t/1",
                      files_snapshot_id="F" * 8)
    preview = build_job_spec("dev", options, RunContext(token=PLACEHOLDER_TOKEN))
    assert "<run_id>" in preview.model_dump_json() and "<snapshot of input prep>" in preview.model_dump_json()
    assert fill(preview, real, options.inputs) == build_job_spec("dev", options, real)
    assert "<" not in fill(preview, real, options.inputs).model_dump_json()


def test_a_placeholder_in_user_text_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ProjectError, match=r"args\[1\] contains '<run_id>'"):
        build_job_spec("dev", _options(tmp_path, args=["--id", "<run_id>"]))


def test_project_yaml_maps_onto_job_options_in_one_place(tmp_path):
    project = Project.scaffold("x")
    project.write(tmp_path)
    options = project.job_options(walltime=60)
    assert options.name == project.project_name and options.walltime == 60
    assert options.src_dir == tmp_path / "cfs" / "src" and options.source == "main.py"
    settings = Settings(colony_name="dev", prvkey=SecretStr("0" * 64))
    assert Job.from_project(tmp_path, settings, walltime=60).options == options


def test_the_preview_is_built_once_per_job(tmp_path, monkeypatch):
    import pollinator.run.job as job_module

    calls = []
    real_build = job_module.build_job_spec
    monkeypatch.setattr(job_module, "build_job_spec", lambda *a, **k: calls.append(1) or real_build(*a, **k))
    job = Job(Settings(colony_name="dev", prvkey=SecretStr("0" * 64)), _options(tmp_path), token="t")
    job.preview()
    job.spec("S1", {"prep": "I1"})
    job.spec("S2")
    assert len(calls) == 1


SETTINGS = Settings(colony_name="dev", prvkey=SecretStr("0" * 64))


@pytest.mark.parametrize("given, shown", [
    (dict(executor_names=["dev-k8s"]), PLACEHOLDER_EXECUTOR_TYPE),  # theirs: looked up at submit
    (dict(executor_names=["dev-k8s"], executor_type="container-executor"), PLACEHOLDER_EXECUTOR_TYPE),
    (dict(executor_names=["dev-k8s"], executor_type="hpc-executor"), "hpc-executor"),  # explicit: checked, kept
    (dict(executor_names=None), "container-executor"),  # no names: discovery never changes the type
])
def test_the_preview_shows_the_executor_type_only_submit_decides_as_a_placeholder(tmp_path, given, shown):
    """What is shown is what is sent: executor discovery may send the named executors' type, so the preview
    shows a placeholder for it, and the submitted spec is the preview with the looked-up type filled in."""
    job = Job(SETTINGS, _options(tmp_path, **given), token="t")
    assert job.preview().conditions.executortype == shown
    assert job.spec().conditions.executortype == shown  # nothing looked up yet: still the placeholder
    job.executor_type = "borg-kubeexecutor" if shown == PLACEHOLDER_EXECUTOR_TYPE else shown  # discover()'s
    sent = job.spec("S" * 8)
    assert sent.conditions.executortype == job.executor_type
    ctx = RunContext(snapshot_id="S" * 8, token="t", executor_type=job.executor_type)
    assert sent == fill(job.preview(), ctx, job.options.inputs) == build_job_spec("dev", job.options, ctx)


def test_discover_decides_the_type_without_changing_the_options(tmp_path, monkeypatch):
    """The named executors' type goes into the spec through the placeholder; the options (what the user
    asked for) and the cached preview stay as they were."""
    from pollinator.colonies.models import Executor

    class Client:
        def get_executors(self):
            return [Executor(executorname="k1", executortype="borg-kubeexecutor", state=1)]

    job = Job(SETTINGS, _options(tmp_path, executor_names=["k1"]), token="t")
    preview = job.preview()
    monkeypatch.setattr(Job, "client", property(lambda self: Client()))
    job.discover()
    assert job.executor_type == "borg-kubeexecutor"
    assert job.options.executor_type == "container-executor" and job.preview() is preview
    assert job.spec().conditions.executortype == "borg-kubeexecutor"


def test_a_colony_that_lists_no_executors_gets_the_jobs_own_type(tmp_path, monkeypatch):
    from pollinator.errors import AccessDenied

    class Client:
        def get_executors(self):
            raise AccessDenied("not allowed", status=403)

    job = Job(SETTINGS, _options(tmp_path, executor_names=["k1"]), token="t")
    monkeypatch.setattr(Job, "client", property(lambda self: Client()))
    assert job.discover() is None
    assert job.spec().conditions.executortype == "container-executor"


def test_the_executor_type_placeholder_in_user_text_is_refused(tmp_path):
    with pytest.raises(ProjectError, match=r"cmd contains '<executor type>'"):
        build_job_spec("dev", _options(tmp_path, cmd="echo '<executor type>'"))
