"""The bad-input corpus (bad_inputs.py): refused with the field named, nothing submitted, nothing local changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rel_tally
from bad_inputs import CASES, GOOD, GOOD_INLINE, Case
from rel_helpers import process_total, tree_digest
from pollinator.errors import PollinatorError
from pollinator.run import Job

PROJECT_CASES = [c for c in CASES if c.kind == "project"]
INLINE_CASES = [c for c in CASES if c.kind == "inline"]
ADAPTER_CASES = [c for c in CASES if c.kind in ("airflow", "prefect")]


def make_project(root: Path, case: Case) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("src", "data", "result"):
        (root / "cfs" / sub).mkdir(parents=True, exist_ok=True)
    (root / "cfs" / "src" / "main.py").write_text("print('should never run')\n")
    (root / "cfs" / "data" / "hello.txt").write_text("hello\n")
    (root / "project.yaml").write_text(case.project_yaml(), encoding="utf-8")
    if case.setup == "binary_yaml":
        (root / "project.yaml").write_bytes(b"projectname: \xff\xfe\x00bad\n")
    elif case.setup == "yaml_is_dir":
        (root / "project.yaml").unlink()
        (root / "project.yaml").mkdir()
    elif case.setup == "no_yaml":
        (root / "project.yaml").unlink()
    elif case.setup == "src_is_file":
        shutil.rmtree(root / "cfs" / "src")
        (root / "cfs" / "src").write_text("not a directory")
    elif case.setup == "non_utf8_name":
        with open(os.path.join(os.fsencode(root / "cfs" / "src"), b"caf\xe9.txt"), "wb") as f:
            f.write(b"latin-1 name")
    elif case.setup:
        raise AssertionError(f"unknown setup {case.setup}")
    return root


def _refused(message: str, case: Case) -> None:
    rel_tally.add("bad_inputs_tried")
    missing = [f for f in case.field if f not in message]
    assert not missing, f"{case.id}: {missing} not named in: {message[:600]}"
    assert "internal error" not in message and "Traceback" not in message, message[:600]
    rel_tally.add("bad_inputs_refused")


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", PROJECT_CASES, ids=[c.id for c in PROJECT_CASES])
def test_project_and_env_cases_refused_by_pollinator_run(case, tmp_path, runner, colony_env, client):
    from pollinator.cli.main import app

    project = make_project(tmp_path / "proj", case)
    before_tree = tree_digest(tmp_path)
    before = process_total(client)
    env = {**colony_env, "POLLINATOR_CACHE_DIR": str(tmp_path.parent / "cache"), **case.env}
    result = runner.invoke(app, ["run", "--follow", "-p", str(project)], env=env)
    message = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code in (1, 2), f"{case.id}: exit {result.exit_code}: {message[:600]} {result.exception!r}"
    _refused(message, case)
    assert process_total(client) == before, f"{case.id}: a process was submitted"
    assert tree_digest(tmp_path) == before_tree, f"{case.id}: the project tree was modified"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", INLINE_CASES, ids=[c.id for c in INLINE_CASES])
def test_inline_job_options_refused(case, settings, client, tmp_path):
    before = process_total(client)
    with pytest.raises(PollinatorError) as info:
        with Job.inline(settings, **{**GOOD_INLINE, "result_dir": tmp_path / "r", **case.inline}) as job:
            job.submit()
    _refused(str(info.value), case)
    assert process_total(client) == before
    assert not (tmp_path / "r").exists()


def _airflow_settings(fields: dict):
    pytest.importorskip("airflow.sdk", reason="needs Apache Airflow: pip install 'pollinator[airflow]'")
    from airflow.models.connection import Connection

    from pollinator_airflow.hooks import settings_from_connection

    extra = {"colony_name": "dev", **fields.pop("extra", {})}
    base = dict(conn_id="colonies_bad", conn_type="colonies", host="127.0.0.1", port=50080, password="a" * 64)
    conn = Connection(**{**base, **fields, "extra": json.dumps(extra)})
    return settings_from_connection(conn)


def _prefect_settings(fields: dict):
    pytest.importorskip("prefect.flows", reason="needs Prefect: pip install 'pollinator[prefect]'")
    from pollinator_prefect.credentials import ColonyOSCredentials

    return ColonyOSCredentials(**{"colony_name": "dev", "private_key": "a" * 64, **fields}).get_settings()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ADAPTER_CASES, ids=[c.id for c in ADAPTER_CASES])
def test_adapter_connection_and_block_fields_refused(case):
    build = _airflow_settings if case.kind == "airflow" else _prefect_settings
    with pytest.raises(Exception) as info:
        build(dict(case.fields))
    _refused(str(info.value), case)


def test_corpus_is_big_enough():
    assert len(CASES) >= 40


@pytest.mark.timeout(60)
def test_unreadable_project_file_as_an_unprivileged_user(colony_env):
    """chmod 000 means nothing to root: run the CLI as `nobody` (setpriv) so the permission bites."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop to nobody")
    import pwd

    nobody = pwd.getpwnam("nobody")
    as_nobody = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", sys.executable]
    # the venv or the checkout may live where nobody cannot read (e.g. under root's home): then this test
    # cannot say anything about project.yaml, so it skips with the reason instead of failing on the import
    probe = subprocess.run([*as_nobody, "-c", "import pollinator.cli.main"], env=dict(os.environ),
                           capture_output=True, text=True, timeout=50)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        pytest.skip(f"the unprivileged user (nobody) cannot import pollinator from this venv/checkout: {reason}")
    root = Path(tempfile.mkdtemp(prefix="rel-unreadable-"))
    try:
        os.chmod(root, 0o755)
        project = make_project(root / "proj", Case("unreadable", ("project.yaml",)))
        os.chmod(root / "proj", 0o755)
        (project / "project.yaml").chmod(0o000)
        before = tree_digest(project)
        out = subprocess.run([*as_nobody, "-m", "pollinator.cli.main", "run", "-p", str(project)],
                             env={**os.environ, **colony_env, "HOME": str(root)}, capture_output=True, text=True,
                             timeout=50)
        rel_tally.add("bad_inputs_tried")
        assert out.returncode == 2, out.stderr
        assert "project.yaml" in out.stderr and "Permission denied" in out.stderr, out.stderr
        assert tree_digest(project) == before
        rel_tally.add("bad_inputs_refused")
    finally:
        shutil.rmtree(root, ignore_errors=True)
