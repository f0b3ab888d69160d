"""One resume rule (pollinator.run.resume), through the CLI against the local colony."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pollinator.run import Job
from pollinator.run.token import token_label

PY = sys.executable


def _cli(args, cwd, env):
    out = subprocess.run([PY, "-m", "pollinator.cli", *args], cwd=cwd, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_attach_to_another_process_keeps_the_interrupted_run(tmp_path, colony_env, settings, client):
    """`pollinator attach X` in a project whose run Y was interrupted, then `pollinator run`: back to Y."""
    proj = tmp_path / "resume"
    proj.mkdir()
    _cli(["new", "-e", "dev-k8s"], proj, colony_env)
    (proj / "project.yaml").write_text((proj / "project.yaml").read_text().replace("pip3 install numpy", ""))
    _cli(["run"], proj, colony_env)  # submitted, not followed: as if the terminal closed
    state = json.loads((proj / ".pollinator" / "run.json").read_text())
    run_y = state["process_id"]

    with Job.inline(settings, name="other-" + os.urandom(3).hex(), cmd="echo other", executor_names=["dev-k8s"],
                    walltime=60) as other:
        run_x = other.submit()
    out = _cli(["attach", run_x], proj, colony_env)
    assert "other" in out
    assert json.loads((proj / ".pollinator" / "run.json").read_text()) == state  # Y's token survives

    out = _cli(["run"], proj, colony_env)
    assert f"re-attached to process {run_y}" in out
    carrying = [p for s in range(5) for p in client.get_processes(s, count=100, label=token_label(state["token"]))]
    assert [p.processid for p in carrying] == [run_y]  # nothing new submitted

    _cli(["attach", run_y], proj, colony_env)  # attaching to the run itself finishes it: the record goes
    assert not (proj / ".pollinator" / "run.json").exists()
