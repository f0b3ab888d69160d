"""The client tells what happened (issue 16): a download failure after SUCCESS is not a job failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fault_proxy import FaultProxy


def cli(args, cwd, env, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pollinator.cli.main", *args], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(240)
def test_results_that_cannot_be_downloaded_after_success_exit_3_and_say_how_to_fetch(tmp_path, colony_env):
    project = tmp_path / "proj"
    project.mkdir()
    assert cli(["new", "-e", "dev-k8s"], project, colony_env).returncode == 0
    yaml_text = (project / "project.yaml").read_text().replace("pip3 install numpy", "")
    (project / "project.yaml").write_text(yaml_text)
    (project / "cfs" / "src" / "main.py").write_text(
        "import os\nopen(os.path.join(os.environ['PROJECT_DIR'], 'result', 'r.txt'), 'w').write('hi')\nprint('ok')\n")
    s3 = FaultProxy(colony_env["AWS_S3_ENDPOINT"], flavor="s3")
    s3._thread.start()
    try:
        s3.fail(lambda method, path, body: method == "GET" and "list-type" not in path, "5xx", times=None)
        run = cli(["run", "--follow"], project, {**colony_env, "AWS_S3_ENDPOINT": s3.endpoint})
    finally:
        s3.server.shutdown()
        s3.server.server_close()
    out = run.stdout + run.stderr
    assert run.returncode == 3, out
    assert "ended SUCCESS, but its results could not be downloaded" in out
    assert "pollinator attach " in out
    process_id = out.split("pollinator attach ")[-1].split()[0]
    again = cli(["attach", process_id], project, colony_env)  # S3 reachable again: attach fetches them
    assert again.returncode == 0, again.stdout + again.stderr
    assert (project / "cfs" / "result" / "r.txt").read_text() == "hi"
