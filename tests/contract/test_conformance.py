"""The specs the product builds pass the real ColonyOS executors' validation and survive their templates.

Covers the example DAG and flow, the README's operator and a scaffolded
project (issue 15). ``executor_problems`` mirrors ``ValidateFuncSpec`` of
colonyos/executors (``common/pkg/parsers/validate_funcspec.go``);
``quoting_problems`` finds characters their command templates would change.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pollinator.config import Settings
from pollinator.contract import executor_problems, quoting_problems
from pollinator.project import Project
from pollinator.run import Job
from pollinator.spec import spec_from_project

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(colony_name="dev", prvkey="a" * 64)


def _conforms(spec) -> None:
    assert executor_problems(spec) == []
    assert quoting_problems(spec) == []


def _as_submitted(job: Job):
    """The spec as submit() sends it (a run id minted), not the dry run's placeholders."""
    from pollinator.run.layout import Staged

    job.run_id = "0123456789abcdef" * 4
    job.executor_type = job.options.executor_type  # what discover() sends when no executor says otherwise
    staged = Staged(src_snapshot="f" * 64, data_snapshot="c" * 64, files_snapshot="d" * 64)
    return job.spec(input_snapshots={n: "e" * 64 for n in job.options.inputs}, staged=staged)


def _airflow_specs(module_path: Path, namespace_patch=None) -> dict:
    pytest.importorskip("airflow.sdk")
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"conformance_{module_path.stem}", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = {}
    for task in module.dag.tasks:
        if isinstance(task.inputs, dict):  # templated XCom pulls: what they render to
            task.inputs = {k: "/pollinator/upstream/result" for k in task.inputs}
        if hasattr(task, "op_kwargs"):
            task.op_kwargs = {k: "a-process-id" for k in task.op_kwargs}
        out[task.task_id] = _as_submitted(task.build_job(SETTINGS, "dag/task/manual__2026-01-01T00:00:00+00:00/-1/1",
                                                         {}))
    return out


def test_example_dag_specs_conform():
    specs = _airflow_specs(ROOT / "example_dags" / "cloud_to_hpc.py")
    assert set(specs) == {"preprocess", "train", "evaluate"}
    for spec in specs.values():
        _conforms(spec)
    assert specs["train"].conditions.cpu == "1000m" and specs["train"].conditions.mem == "1000Mi"


def test_example_flow_specs_conform():
    pytest.importorskip("prefect")
    import importlib.util

    path = ROOT / "example_dags" / "cloud_to_hpc_flow.py"
    spec = importlib.util.spec_from_file_location("conformance_flow", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for task, args in ((module.preprocess, (200, 7)), (module.train, (2000, 0.5, 200))):
        remote = inspect.getclosurevars(task.fn).nonlocals["remote"]
        job = remote.job(SETTINGS, args, {}, None, "flow/task/run/1")
        _conforms(_as_submitted(job))


def test_readme_operator_conforms():
    pytest.importorskip("airflow.sdk")
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "PollinatorOperator(" in b)
    airflow_part = block.split("# Prefect")[0]
    namespace: dict = {}
    exec(airflow_part, namespace)  # noqa: S102 - the README's own example
    op = namespace["train"]
    spec = _as_submitted(op.build_job(SETTINGS, "t", {}))
    _conforms(spec)
    assert (spec.conditions.cpu, spec.conditions.mem) == ("4000m", "8Gi")


def test_scaffolded_project_conforms(tmp_path):
    project = Project.scaffold("dev-hpc")
    project.write(tmp_path)
    (tmp_path / "cfs" / "src").mkdir(parents=True)
    (tmp_path / "cfs" / "src" / "main.py").write_text("print('hi')\n")
    _conforms(spec_from_project("dev", project, "f" * 64))  # what `pollinator funcspec` shows (Go's shape)
    _conforms(_as_submitted(Job.from_project(tmp_path, SETTINGS)))  # what `pollinator run` sends


def test_the_dry_run_shows_placeholders_and_the_submitted_spec_has_none():
    job = Job.inline(SETTINGS, name="dry", cmd="echo 'x'", inputs={"prep": "/pollinator/p/result"})
    dry = job.spec().to_wire()
    assert "<run_id>" in dry["kwargs"]["cmd"] and "<run_id>" in dry["env"]["POLLINATOR_INPUT_PREP"]
    sent = _as_submitted(job)
    assert "<" not in str(sent.to_wire())
    _conforms(sent)


def test_launcher_opt_out_sends_the_raw_command():
    job = Job.inline(SETTINGS, name="raw", cmd="echo 'x' && true", launcher=False)
    spec = _as_submitted(job)
    assert spec.kwargs["cmd"] == "echo 'x' && true" and "POLLINATOR_LAUNCHER" not in spec.env
    assert executor_problems(spec) == [] and quoting_problems(spec)  # the user's responsibility now
