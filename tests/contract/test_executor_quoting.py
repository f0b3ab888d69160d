"""A hostile command reaches the job byte for byte through every executor's template (issue 15).

The product's spec (launcher command + template-safe env) is rendered through
the Python renderings of the HPC Slurm script and the Kube Job YAML
(``executor_templates.py``, which names the colonyos/executors files), and the
rendered command lines are run; their output must equal running the user's
command directly. The ``/cfs`` mount is emulated by pointing ``/cfs`` paths at a
temporary directory, as the bind mount (HPC), the PVC (Kube) or the local
executor's rewrite would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from executor_templates import docker_command, go_html_escape, render_hpc_script, render_kube_job
from pollinator.contract import executor_problems, quoting_problems
from pollinator.launcher import Launcher, spec_command, spec_env
from pollinator.spec import build_spec

PID = "f" * 64
SCRIPT = ('import os, sys\nprint("argv", sys.argv[1:])\nprint("greeting", os.environ["GREETING"])\n'
          "print('tab\\tand back\\\\slash', 1+1)\n")
USER = dict(
    cmd="python3 -c " + shlex.quote(SCRIPT),
    args=['"two words"', "'$HOME stays'", '"$GREETING"', "&&", "printf", "'%s|%s\\n'", '"a\\\\b & <c> 1+1"',
          '"$X_DOLLAR"', ">", '"$POLLINATOR_RESULT_DIR/out.txt"'],
    init_cmd='mkdir -p "$POLLINATOR_RESULT_DIR" && echo "init: $GREETING" > "$POLLINATOR_RESULT_DIR/init.txt"',
    env={"GREETING": 'hi "there" & <you> `echo no` $HOME \\n 1+1 it\'s', "X_DOLLAR": "$$ and 'single' \\"},
)
RESULT_LABEL = "/pollinator/qt/runs/r1/result"
LAUNCHER_PATH = "/cfs/pollinator/qt/runs/r1/files/launch.sh"


def _base_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": "/nonexistent-home", "LC_ALL": "C.UTF-8"}


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode("utf-8", "surrogateescape")


def _results(root: Path) -> dict[str, str]:
    result = root / RESULT_LABEL.lstrip("/")
    return {p.name: p.read_text() for p in sorted(result.glob("*.txt"))}


def _direct(tmp: Path) -> tuple[str, dict[str, str]]:
    root = tmp / "direct"
    root.mkdir()
    env = {**_base_env(), **USER["env"], "POLLINATOR_RESULT_DIR": f"{root}{RESULT_LABEL}"}
    out = _run(["sh", "-c", USER["init_cmd"]], env, root)
    out += _run(["sh", "-c", " ".join([USER["cmd"], *USER["args"]])], env, root)
    return out, _results(root)


def _product_spec(root: Path) -> dict:
    """What Pollinator sends: `sh <launcher>` + safe env; the launcher file lands under the run's files."""
    launcher = Launcher(cmd=USER["cmd"], args=USER["args"], init_cmd=USER["init_cmd"], env=USER["env"])
    path = root / LAUNCHER_PATH[len("/cfs/"):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(launcher.data())
    spec = build_spec("dev", project_name="qt", snapshot_id=None, image="python:3.12", cmd=spec_command(LAUNCHER_PATH),
                      env={**spec_env(USER["env"]), "POLLINATOR_RESULT_DIR": f"/cfs{RESULT_LABEL}"}, walltime=600)
    assert executor_problems(spec) == [] and quoting_problems(spec) == []
    return spec.to_wire()


def _mount(text: str, root: Path) -> str:
    return text.replace("/cfs", str(root))


def _hpc_runnable(script: str, root: Path) -> str:
    """The batch script as the node runs it, with `srun singularity exec ... <image>` left out (same shell)."""
    script = re.sub(r"srun singularity exec --bind \S+ \S+ ", "", script)
    return _mount(script, root)


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    return _direct(tmp_path_factory.mktemp("direct"))


def test_direct_run_is_what_the_user_meant(expected):
    out, files = expected
    assert "greeting hi \"there\" & <you> `echo no` $HOME \\n 1+1 it's\n" in out
    assert "tab\tand back\\slash 2" in out
    assert files["out.txt"].startswith("a\\b & <c> 1+1|$$ and 'single' \\\n")


def test_hpc_slurm_script_runs_the_command_byte_for_byte(tmp_path, expected):
    root = tmp_path / "cfs"
    spec = _product_spec(root)
    script = render_hpc_script(spec, PID)
    assert 'sh -c "sh /cfs/pollinator/qt/runs/r1/files/launch.sh"' in script
    (tmp_path / "job.sh").write_text(_hpc_runnable(script, root))
    out = _run(["bash", str(tmp_path / "job.sh")], _base_env(), tmp_path)
    assert (out, _results(root)) == expected


def test_kube_job_runs_the_command_byte_for_byte(tmp_path, expected):
    root = tmp_path / "cfs"
    spec = _product_spec(root)
    job = yaml.safe_load(render_kube_job(spec, PID))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {**_base_env(), **{e["name"]: _mount(e["value"], root) for e in container["env"]}}
    out = _run([_mount(a, root) for a in container["command"]], env, tmp_path)
    assert (out, _results(root)) == expected


def test_docker_container_runs_the_command_byte_for_byte(tmp_path, expected):
    root = tmp_path / "cfs"
    spec = _product_spec(root)
    argv, env = docker_command(spec, PID)
    out = _run([_mount(a, root) for a in argv], {**_base_env(), **{k: _mount(v, root) for k, v in env.items()}},
               tmp_path)
    assert (out, _results(root)) == expected


def _raw_spec() -> dict:
    return build_spec("dev", project_name="qt", snapshot_id=None, image="python:3.12", cmd=USER["cmd"],
                      args=USER["args"], init_cmd=USER["init_cmd"],
                      env={**USER["env"], "POLLINATOR_RESULT_DIR": f"/cfs{RESULT_LABEL}"}, walltime=600).to_wire()


def test_without_the_launcher_the_hpc_script_runs_something_else(tmp_path, expected):
    """The renderings are not kind: the raw command is HTML-escaped inside sh -c "..." (the issue's finding)."""
    root = tmp_path / "cfs"
    script = render_hpc_script(_raw_spec(), PID)
    assert go_html_escape('"two words"') in script and "&amp;&amp;" in script
    (tmp_path / "job.sh").write_text(_hpc_runnable(script, root))
    done = subprocess.run(["bash", str(tmp_path / "job.sh")], env=_base_env(), cwd=tmp_path, capture_output=True,
                          timeout=60)
    assert (done.stdout.decode(errors="replace"), _results(root)) != expected


def test_without_the_launcher_the_kube_job_yaml_breaks():
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(render_kube_job(_raw_spec(), PID))


def test_the_launcher_keeps_a_nul_free_string_whole():
    launcher = Launcher(cmd="printf %s", args=["'\n\t\\$`\"'"], env={"A": "'''"})
    assert "export A=''\\'''\\'''\\'''" in launcher.script()
