"""What each install gets: the lean core works without the `local` extra, and `pollinator dev` names the extra.

The packages of the extra are hidden by setting ``sys.modules[name] = None`` in a
fresh interpreter (what Python does for a module that cannot be imported), so
these run in the full test venv. `scripts/wheel_smoke.sh` checks the same with
a real wheel installed without the extra.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pollinator.dev import extra
from pollinator.errors import ConfigError

LOCAL_EXTRA_MODULES = extra.SERVER_MODULES + extra.S3_MODULES


def _python_without(modules: tuple[str, ...], code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    prelude = f"import sys\nfor _m in {list(modules)!r}:\n    sys.modules[_m] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={**os.environ, "POLLINATOR_DEBUG": ""})


def test_every_local_extra_module_is_found_in_the_test_venv():
    assert extra.missing_modules() == []


def test_missing_modules_sees_a_hidden_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)
    assert extra.missing_modules() == ["moto"]
    assert extra.missing_modules(s3=False) == []  # an external S3 endpoint needs no moto
    with pytest.raises(ConfigError, match=r"pip install 'pollinator\[local\]'.*moto"):
        extra.require_local_extra()


def test_local_colony_refuses_before_creating_anything(monkeypatch, tmp_path):
    from pollinator.dev.colony import LocalColony

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ConfigError, match=r"'local' extra: pip install 'pollinator\[local\]' .*uvicorn"):
        LocalColony(tmp_path / "colony", port=None).start()
    assert not (tmp_path / "colony").exists()


@pytest.mark.parametrize("hidden", [("moto",), LOCAL_EXTRA_MODULES])
def test_pollinator_dev_without_the_extra_says_which_to_install_in_one_line(tmp_path, hidden):
    data = tmp_path / "colony"
    result = _python_without(hidden, """
        from pollinator.cli.main import main
        sys.argv = ["pollinator", "dev", "--detach", "--data-dir", sys.argv[1]]
        main()
    """, str(data))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "pip install 'pollinator[local]'" in lines[0]
    assert all(name in lines[0] for name in hidden)
    assert not data.exists()  # nothing started, nothing written


def test_the_lean_core_imports_and_runs_without_the_local_extra(tmp_path):
    """A worker that only submits and follows (or runs an executor) never needs the local colony's stack."""
    result = _python_without(LOCAL_EXTRA_MODULES, """
        import pollinator, pollinator.run, pollinator.cfs.engine, pollinator.spec, pollinator.colonies.client
        import pollinator.cli.run, pollinator.cli.fs, pollinator.cli.inspect, pollinator.cli.executor
        import pollinator.executor.worker, pollinator.executor.job_runner
        from pollinator.cli.main import main
        sys.argv = ["pollinator", "new", "-e", "an-executor", "proj"]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        sys.argv = ["pollinator", "funcspec", "-p", "proj"]
        main()
    """, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"funcname": "execute"' in result.stdout


# -- the declared extras ---------------------------------------------------------------------------------------
def _pyproject() -> dict:
    import tomllib
    from pathlib import Path

    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_core_is_lean_and_the_extras_match_how_people_install():
    project = _pyproject()["project"]
    core, extras = _names(project["dependencies"]), project["optional-dependencies"]
    assert {"pydantic", "httpx", "coincurve", "boto3", "pyyaml", "pathspec", "typer", "rich"} <= core
    assert not core & {"uvicorn", "starlette", "websockets", "moto", "apache-airflow", "prefect"}
    assert {"uvicorn", "starlette", "websockets", "moto"} <= _names(extras["local"])
    assert "moto[server]" in "".join(extras["local"])  # moto.server needs flask (extra.S3_MODULES)
    assert "pollinator[local]" in extras["dev"]
    assert extras["all"] == ["pollinator[local,airflow,prefect,dev]"]
    assert project["requires-python"] == ">=3.11"  # hashlib.file_digest; CI has no 3.10 to prove less


def test_every_third_party_module_the_core_tests_import_is_declared():
    """`pip install -e '.[dev]'` is enough for every test outside tests/airflow and tests/prefect."""
    import ast
    import importlib.metadata
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    project = _pyproject()["project"]
    declared = _names(project["dependencies"] + project["optional-dependencies"]["local"]
                      + project["optional-dependencies"]["dev"])
    local_names = {p.stem for p in tests.rglob("*.py")} | {p.name for p in tests.rglob("*") if p.is_dir()}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in tests.rglob("*.py"):
        if {"airflow", "prefect", "data"} & set(path.relative_to(tests).parts[:1]):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in local_names or top.startswith("pollinator"):
                    continue
                if top in ("airflow", "prefect", "sqlalchemy", "jsonschema"):  # only under importorskip
                    continue
                dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not dists & declared:
                    undeclared.setdefault(top, set()).add(str(path.relative_to(tests)))
    assert not undeclared, f"imported by tests but not declared in core/local/dev: {undeclared}"


def test_executor_start_runs_a_job_without_the_local_extra(local_colony, client, tmp_path):
    """`pollinator executor start` (e.g. on an HPC login node) needs only the core: it takes and runs a job."""
    import time

    from pollinator.colonies.models import Conditions, FunctionSpec, ProcessState

    prelude = f"import sys\nfor _m in {list(LOCAL_EXTRA_MODULES)!r}:\n    sys.modules[_m] = None\n"
    run = ("from pollinator.cli.main import main\n"
           "sys.argv = ['pollinator', 'executor', 'start', '--name', 'core-only', '--type', 'core-only-type',"
           f" '--fs-dir', {str(tmp_path / 'fs')!r}]\nmain()\n")
    log = open(tmp_path / "executor.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", prelude + run], env={**os.environ, **local_colony.env()},
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        deadline = time.monotonic() + 60
        while not any(e.executorname == "core-only" and e.state == 1 for e in client.get_executors()):
            assert proc.poll() is None, (tmp_path / "executor.log").read_text()
            assert time.monotonic() < deadline, "the core-only executor did not register"
            time.sleep(0.2)
        spec = FunctionSpec(funcname="execute", kwargs={"cmd": "echo", "args": ["from", "the", "core"]},
                            maxwaittime=-1, maxexectime=60, maxretries=0,
                            conditions=Conditions(colonyname="dev", executortype="core-only-type"))
        pid = client.submit(spec).processid
        deadline = time.monotonic() + 60
        while client.get_process(pid).state < ProcessState.SUCCESS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get_process(pid).state == ProcessState.SUCCESS, (tmp_path / "executor.log").read_text()
        assert any("from the core" in line.message for line in client.get_logs(pid))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
