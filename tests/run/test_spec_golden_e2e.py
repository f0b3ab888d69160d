"""What is shown is what is sent: `funcspec`, `run --dry-run` and the spec the server stored are one spec.

The only differences allowed are the values known at submit time, which the previews show as
placeholders: the src snapshot id, the run id, the client token (and the label made from it), and the
executor type when the job names executors and leaves the type to them (executor discovery looks it up
at submit: a Kube executor registers a type of its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pollinator.run.build import (
    PLACEHOLDER_EXECUTOR_TYPE,
    PLACEHOLDER_FILES_SNAPSHOT,
    PLACEHOLDER_RUN_ID,
    PLACEHOLDER_DATA_SNAPSHOT,
    PLACEHOLDER_SNAPSHOT,
    PLACEHOLDER_TOKEN,
    PLACEHOLDER_TOKEN_LABEL,
    RUN_ID_ENV,
)
from pollinator.run.token import TOKEN_ENV, token_env_value

PY = sys.executable


def _cli(args, cwd, env):
    out = subprocess.run([PY, "-m", "pollinator.cli", *args], cwd=cwd, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _filled(preview: str, values: dict[str, str]) -> dict:
    for placeholder, value in values.items():
        preview = preview.replace(json.dumps(placeholder)[1:-1], json.dumps(value)[1:-1])
    return json.loads(preview)


def _as_the_server_stores(spec: dict) -> dict:
    """The Colonies server's own normalisation of a submitted spec (the real server's, copied by the local
    one): empty storage and GPU memory are stored as "0Mi". Nothing else may differ."""
    conditions = spec["conditions"]
    conditions["storage"] = conditions.get("storage") or "0Mi"
    conditions["gpu"]["mem"] = conditions["gpu"].get("mem") or "0Mi"
    return spec


@pytest.mark.parametrize("executor, sent_type", [("dev-k8s", "container-executor"),
                                                 ("kube-mimic", "test-kubeexecutor")])
def test_funcspec_equals_dry_run_equals_the_submitted_spec(tmp_path, colony_env, client, request, executor,
                                                            sent_type):
    if executor == "kube-mimic":
        executor = request.getfixturevalue("kube_mimic")  # registers its own type, as Kube executors do
    proj = tmp_path / "golden"
    proj.mkdir()
    _cli(["new", "-e", executor], proj, colony_env)
    text = (proj / "project.yaml").read_text().replace("pip3 install numpy", "")
    (proj / "project.yaml").write_text(text)
    (proj / "cfs" / "data" / "in.txt").write_text("data\n")

    funcspec = _cli(["funcspec"], proj, colony_env)
    dry_run = _cli(["run", "--dry-run"], proj, colony_env)
    assert funcspec == dry_run
    for placeholder in (PLACEHOLDER_SNAPSHOT, PLACEHOLDER_DATA_SNAPSHOT, PLACEHOLDER_RUN_ID, PLACEHOLDER_TOKEN,
                        PLACEHOLDER_TOKEN_LABEL, PLACEHOLDER_EXECUTOR_TYPE):
        assert placeholder in dry_run

    submitted = subprocess.run([PY, "-m", "pollinator.cli", "run"], cwd=proj, env={**os.environ, **colony_env},
                               capture_output=True, text=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    pid = next(word for word in (submitted.stdout + submitted.stderr).split() if len(word) == 64)
    stored = client.get_process(pid).spec
    env = stored.env or {}
    values = {PLACEHOLDER_SNAPSHOT: stored.fs.snapshots[0].snapshotid,
              PLACEHOLDER_DATA_SNAPSHOT: stored.fs.snapshots[1].snapshotid, PLACEHOLDER_RUN_ID: env[RUN_ID_ENV],
              PLACEHOLDER_TOKEN: env[TOKEN_ENV], PLACEHOLDER_TOKEN_LABEL: stored.label,
              PLACEHOLDER_FILES_SNAPSHOT: next(m.snapshotid for m in stored.fs.snapshots if m.label.endswith("/files")),
              PLACEHOLDER_EXECUTOR_TYPE: stored.conditions.executortype}
    assert stored.conditions.executortype == sent_type
    assert all(v and "<" not in v for v in values.values())
    shown, sent = _as_the_server_stores(_filled(dry_run, values)), stored.to_wire()
    assert shown == sent, json.dumps({k: (shown.get(k), sent.get(k)) for k in sent if shown.get(k) != sent.get(k)})
    token = json.loads((proj / ".pollinator" / "run.json").read_text())["token"]
    assert env[TOKEN_ENV] == token_env_value(token)
    client.cancel_process(pid)
