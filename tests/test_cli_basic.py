"""The `pollinator` command without a server: new, funcspec, error policy, safe output.

The server commands (executors, ps, get, logs, cancel) are covered here by UNIT tests with the
client stubbed (`test_unit_*`); end-to-end tests against the local colony come separately.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pollinator
from pollinator.cli import common, main
from pollinator.cli.main import app
from pollinator.cli.output import mask_env, safe_text
from pollinator.colonies.models import Executor, FunctionSpec, Log, Process
from pollinator.errors import NotFound, Unreachable
from pollinator.project import load_project

runner = CliRunner()

GO_MAIN_PY_HEAD = 'import os\nimport socket\n\n# Print the hostname\nhostname = socket.gethostname()\n'
GO_MAIN_PY_TAIL = 'file = open(result_dir + "/result.txt", "w")\nfile.write("Hello, World!")\nfile.close()'

ENV_KEYS = [k for k in os.environ if k.startswith(("COLONIES_", "AWS_S3_", "COLONYOS_"))]


@pytest.fixture(autouse=True)
def _no_colony_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def invoke(*args: str, cwd: Path | None = None) -> Any:
    if cwd is None:
        return runner.invoke(app, list(args))
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, list(args))
    finally:
        os.chdir(old)


# -- version, new, funcspec ----------------------------------------------------------------------------

def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"pollinator {pollinator.__version__}"


def test_new_scaffolds_like_the_go_tool(tmp_path: Path):
    result = invoke("new", "-e", "my-exec", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "cfs", "cfs/data", "cfs/data/hello.txt", "cfs/result", "cfs/src", "cfs/src/main.py", "project.yaml"]
    assert (tmp_path / "cfs/data/hello.txt").read_text() == "Hello world!"
    main_py = (tmp_path / "cfs/src/main.py").read_text()
    assert main_py.startswith(GO_MAIN_PY_HEAD) and main_py.endswith(GO_MAIN_PY_TAIL)
    project = load_project(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{64}", project.project_name)
    assert project.conditions.executor_names == ["my-exec"]
    assert "executorType" not in (tmp_path / "project.yaml").read_text()


def test_new_with_type_and_directory(tmp_path: Path):
    result = invoke("new", "-e", "e", "-t", "local-executor", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert load_project(tmp_path / "p").conditions.executor_type == "local-executor"


def test_new_accepts_the_go_flag_spelling(tmp_path: Path):
    assert invoke("new", "--executorname", "e", cwd=tmp_path).exit_code == 0


def test_new_refuses_a_non_empty_directory(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    result = invoke("new", "-e", "x", cwd=tmp_path)
    assert result.exit_code == 2
    assert "is not empty" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_new_requires_an_executor(tmp_path: Path):
    result = invoke("new", cwd=tmp_path)
    assert result.exit_code == 2 and "--executor" in result.output


def test_funcspec_prints_the_go_spec(tmp_path: Path):
    assert invoke("new", "-e", "x", cwd=tmp_path).exit_code == 0
    result = invoke("funcspec", "--snapshot-id", "S1", "--colony", "dev", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    spec = json.loads(result.stdout)
    p = load_project(tmp_path).project_name
    # the command (python3 <src>/main.py) travels in the run's launcher (docs/executors/); the spec runs it
    assert spec["kwargs"]["cmd"] == f"sh /cfs/pollinator/{p}/runs/<run_id>/files/launch.sh"
    assert spec["kwargs"]["args"] == [] and spec["conditions"]["colonyname"] == "dev"
    FunctionSpec.model_validate(spec)


def test_funcspec_placeholders_and_colony_from_env(tmp_path: Path, monkeypatch):
    assert invoke("new", "-e", "x", cwd=tmp_path).exit_code == 0
    spec = json.loads(invoke("funcspec", "-p", str(tmp_path)).stdout)
    assert spec["fs"]["snapshots"][0]["snapshotid"] == "<snapshot>"
    assert spec["conditions"]["colonyname"] == "<colony>"
    monkeypatch.setenv("COLONIES_COLONY_NAME", "envcolony")
    assert json.loads(invoke("funcspec", "-p", str(tmp_path)).stdout)["conditions"]["colonyname"] == "envcolony"


def test_funcspec_bad_project_is_one_line_exit_2(tmp_path: Path):
    (tmp_path / "project.yaml").write_text("projectname: p\nconditions:\n  cpus: 2\n")
    result = invoke("funcspec", cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr.strip()
    assert err.startswith("error: project.yaml:3: conditions.cpus: unknown key `cpus`: did you mean `cpu`?")
    assert len(err.splitlines()) == 1


def test_funcspec_without_project(tmp_path: Path):
    result = invoke("funcspec", cwd=tmp_path)
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_unknown_option_is_usage_error():
    assert invoke("ps", "--bogus").exit_code == 2


def test_real_subprocess_new_then_funcspec_matches_go(tmp_path: Path):
    """`pollinator new -e x && pollinator funcspec` through the installed console script.

    Go's shape (kwargs); Pollinator's deadline rule (walltime as run time plus a staging allowance); what
    Pollinator's `run` adds to it (the client token as label and env, the run id, the result dir, the named
    executors' type) shows as placeholders, because funcspec is what `run` sends. Every mount is
    the run's own (docs/runs.md): src and data are snapshots of /pollinator/<p>/runs/<run_id>/{src,data}.
    """
    exe = Path(sys.executable).with_name("pollinator")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["COLONIES_COLONY_NAME"] = "dev"
    env.pop("POLLINATOR_STAGING_ALLOWANCE", None)
    proc = subprocess.run(f"'{exe}' new -e x && '{exe}' funcspec --snapshot-id SNAP", shell=True, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)
    p = load_project(tmp_path).project_name
    assert spec["label"] == "pollinator:<token-hash>"
    assert spec["funcname"] == "execute" and spec["args"] == []
    run = f"/pollinator/{p}/runs/<run_id>"
    # Go's cmd/args/init-cmd (pip3 install numpy; python3 <src>/main.py) travel in the run's launcher;
    # the spec only runs it, in characters no ColonyOS executor template changes (docs/executors/)
    assert spec["kwargs"] == {"args": [], "cmd": f"sh /cfs{run}/files/launch.sh",
                              "docker-image": "python:3.12-rc-bookworm", "init-cmd": "", "rebuild-image": False}
    assert spec["env"] == {"PROJECT_DIR": f"/cfs{run}", "POLLINATOR_CLIENT_TOKEN": "<token>",
                           "POLLINATOR_RESULT_DIR": f"/cfs{run}/result", "POLLINATOR_RUN_ID": "<run_id>",
                           "POLLINATOR_RETURN": f"/cfs{run}/result/.pollinator/return.json",
                           "POLLINATOR_LATEST_LABEL": f"/pollinator/{p}/result",
                           "POLLINATOR_RUN_FILES": f"/cfs{run}/files",
                           "POLLINATOR_LAUNCHER": f"/cfs{run}/files/launch.sh",
                           "POLLINATOR_WALLTIME": "600"}  # the scaffold's walltime, as run time (the launcher's)
    assert spec["fs"] == {
        "mount": "/cfs",
        "snapshots": [{"snapshotid": "SNAP", "label": f"{run}/src", "dir": f"{run}/SNAP/src",
                       "keepfiles": False, "keepsnapshot": True},
                      {"snapshotid": "<data snapshot>", "label": f"{run}/data", "dir": f"{run}/data",
                       "keepfiles": False, "keepsnapshot": True},
                      {"snapshotid": "<run files snapshot>", "label": f"{run}/files", "dir": f"{run}/files",
                       "keepfiles": False, "keepsnapshot": True}],
        "dirs": [
            {"label": f"{run}/result", "dir": f"{run}/result", "keepfiles": False,
             "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}}},
        ],
    }
    # the deadline rule (docs/hpc.md): walltime 600 s of run time + the default 600 s staging allowance
    assert (spec["maxwaittime"], spec["maxexectime"], spec["maxretries"], spec["priority"]) == (-1, 1200, 3, 5)
    assert spec["conditions"]["walltime"] == 1200
    assert spec["conditions"]["executornames"] == ["x"]
    # the type left at its default with executors named: theirs, looked up at submit (run.discovery)
    assert spec["conditions"]["executortype"] == "<executor type>"
    assert "Traceback" not in proc.stderr


def test_real_subprocess_error_has_no_traceback(tmp_path: Path):
    exe = Path(sys.executable).with_name("pollinator")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    proc = subprocess.run([str(exe), "ps"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: COLONIES_PRVKEY is not set") and "Traceback" not in proc.stderr


# -- safe output ------------------------------------------------------------------------------------------

def test_safe_text_neutralises_terminal_controls():
    evil = "a\x1b]0;owned\x07b\x1b[2Jc\x9bd\u202ee\x00f"
    out = safe_text(evil)
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f or ch == "\u202e" for ch in out)
    assert out == "a\\x1b]0;owned\\x07b\\x1b[2Jc\\x9bd\\u202ee\\x00f"
    assert safe_text("x\ny\tz") == "x\\ny\\tz"
    assert safe_text("x\ny\r\nz\rw\t", multiline=True) == "x\ny\nz\nw\t"
    assert safe_text(None) == ""


def test_mask_env():
    assert mask_env({"AWS_S3_SECRETKEY": "s", "API_TOKEN": "t", "X": "1", "COLONIES_PRVKEY": "k", "E_KEY": ""}) == {
        "AWS_S3_SECRETKEY": "***", "API_TOKEN": "***", "X": "1", "COLONIES_PRVKEY": "***", "E_KEY": ""}


def test_secret_values_never_printed_on_config_errors(monkeypatch):
    secret = "not-hex-" + "s3cr3t" * 9
    monkeypatch.setenv("COLONIES_PRVKEY", secret)
    result = invoke("executors")
    assert result.exit_code == 2 and secret not in result.output and "64 hex" in result.stderr


# -- server commands: UNIT tests with the client stubbed ---------------------------------------------------

class FakeClient:
    def __init__(self, **behaviour: Any):
        self.calls: list[tuple] = []
        self.behaviour = behaviour

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.calls.append(("close",))

    def _answer(self, name: str, *args: Any) -> Any:
        self.calls.append((name, *args))
        value = self.behaviour.get(name)
        if isinstance(value, Exception):
            raise value
        return value(*args) if callable(value) else value

    def get_executors(self):
        return self._answer("get_executors")

    def get_processes(self, state, count=100, **kw):
        return self._answer("get_processes", int(state), count)

    def get_process(self, process_id):
        return self._answer("get_process", process_id)

    def get_logs(self, process_id, since=0, count=500, **kw):
        return self._answer("get_logs", process_id, since, count)

    def cancel_process(self, process_id):
        return self._answer("cancel_process", process_id)


@pytest.fixture
def fake(monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(common, "open_client", lambda: client)
    return client


EVIL = "\x1b]0;pwned\x07[bold]x[/bold]\x1b[31m"


def _process(pid: str, state: int, when: str, cmd: str = "python3", env: dict | None = None) -> Process:
    return Process.model_validate({
        "processid": pid, "state": state, "submissiontime": when, "errors": [EVIL] if state == 3 else None,
        "spec": {"funcname": "execute", "kwargs": {"cmd": cmd, "args": ["a b"], "docker-image": "img"},
                 "conditions": {"executortype": "container-executor", "executornames": ["x"]},
                 "env": env or {"PROJECT_DIR": "/cfs/pollinator/p", "AWS_S3_SECRETKEY": "topsecret"},
                 "maxretries": 3}})


def test_unit_executors_table_and_json(fake):
    fake.behaviour["get_executors"] = [Executor(executorname="e" + EVIL, executortype="container-executor",
                                                state=1, lastheardfromtime="2024-01-02T03:04:05.123Z")]
    result = invoke("executors")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\\x1b]0;pwned" in result.stdout and "[bold]" in result.stdout
    assert "approved" in result.stdout and "2024-01-02 03:04:05" in result.stdout
    data = json.loads(invoke("executors", "--json").stdout)
    assert data[0]["executorname"] == "e" + EVIL and data[0]["state"] == 1


def test_unit_executors_empty(fake):
    fake.behaviour["get_executors"] = []
    result = invoke("executors")
    assert result.exit_code == 0 and "No executors" in result.stderr


def test_unit_ps_defaults_to_waiting_and_running(fake):
    fake.behaviour["get_processes"] = lambda state, count: {
        0: [_process("w1", 0, "2024-01-01T00:00:00Z")],
        1: [_process("r1", 1, "2024-01-02T00:00:00Z", cmd="run" + EVIL)]}[state]
    result = invoke("ps")
    assert result.exit_code == 0, result.output
    assert [c[1:] for c in fake.calls if c[0] == "get_processes"] == [(0, 100), (1, 100)]
    assert result.stdout.index("r1") < result.stdout.index("w1")  # newest first
    assert "\x1b" not in result.stdout and "'a b'" in result.stdout
    ids = [p["processid"] for p in json.loads(invoke("ps", "--json").stdout)]
    assert ids == ["r1", "w1"]


def test_unit_ps_state_and_count(fake):
    fake.behaviour["get_processes"] = lambda state, count: []
    result = invoke("ps", "--state", "failed", "--count", "7")
    assert result.exit_code == 0
    assert [c[1:] for c in fake.calls if c[0] == "get_processes"] == [(3, 7)]
    assert "No failed processes" in result.stderr
    assert invoke("ps", "--state", "bogus").exit_code == 2


def test_unit_get_masks_secrets_and_neutralises_errors(fake):
    fake.behaviour["get_process"] = _process("f1", 3, "2024-01-01T00:00:00Z")
    result = invoke("get", "f1")
    assert result.exit_code == 0, result.output
    assert "failed" in result.stdout and "topsecret" not in result.stdout and "***" in result.stdout
    assert "\x1b" not in result.stdout and "\\x1b]0;pwned" in result.stdout
    data = json.loads(invoke("get", "f1", "--json").stdout)
    assert data["spec"]["env"]["AWS_S3_SECRETKEY"] == "***" and data["errors"] == [EVIL]


def test_unit_get_not_found_is_exit_1(fake):
    fake.behaviour["get_process"] = NotFound("process " + EVIL + " not found", status=404, msgtype="getprocessmsg")
    result = invoke("get", "nope")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: HTTP 404: process \\x1b]0;pwned") and "\x1b" not in result.stderr
    assert "Traceback" not in result.output


def test_unit_unreachable_is_exit_1(fake):
    fake.behaviour["get_executors"] = Unreachable("cannot reach the Colonies server at http://h:1/api")
    result = invoke("executors")
    assert result.exit_code == 1 and "cannot reach" in result.stderr


def test_unit_internal_errors_are_one_line(fake):
    fake.behaviour["get_executors"] = RuntimeError("boom")
    result = invoke("executors")
    assert result.exit_code == 1
    assert result.stderr.startswith("internal error: RuntimeError: boom") and "Traceback" not in result.output


def test_unit_logs_prints_all_pages_safely(fake, monkeypatch):
    monkeypatch.setattr("pollinator.cli.inspect.MAX_LOG_COUNT", 2)
    lines = [Log(message="one\n", timestamp=10), Log(message=EVIL + "\n", timestamp=20),
             Log(message="three\r\n", timestamp=30)]
    # as the server pages: since is exclusive, at most count lines
    fake.behaviour["get_logs"] = lambda pid, since, count: [x for x in lines if x.timestamp > since][:count]
    result = invoke("logs", "p1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "one\n\\x1b]0;pwned\\x07[bold]x[/bold]\\x1b[31m\nthree\n"
    data = json.loads(invoke("logs", "p1", "--json").stdout)
    assert [d["message"] for d in data] == ["one\n", EVIL + "\n", "three\r\n"]
    lines[2] = Log(message="partial", timestamp=30)
    assert invoke("logs", "p1").stdout.endswith("\npartial")  # no newline invented


def test_unit_logs_stops_if_server_does_not_advance(fake, monkeypatch):
    monkeypatch.setattr("pollinator.cli.inspect.MAX_LOG_COUNT", 1)
    fake.behaviour["get_logs"] = lambda pid, since, count: [Log(message="same\n", timestamp=0)]
    result = invoke("logs", "p1")
    assert result.exit_code == 0 and result.stdout == "same\n"


def test_unit_logs_empty(fake):
    fake.behaviour["get_logs"] = []
    result = invoke("logs", "p1")
    assert result.exit_code == 0 and "No logs yet" in result.stderr


def test_unit_cancel(fake):
    fake.behaviour["cancel_process"] = None
    result = invoke("cancel", "p1")
    assert result.exit_code == 0 and ("cancel_process", "p1") in fake.calls and "Cancelled p1" in result.stderr


# -- registration --------------------------------------------------------------------------------------------

def test_every_lazy_command_resolves_and_shows_in_help():
    from typer.main import get_command

    group = get_command(app)
    for name in main.LAZY_COMMANDS:
        command = group.get_command(None, name)
        assert command is not None and command.name == name
    listed = invoke("--help").stdout
    for name in main.LAZY_COMMANDS:
        assert name in listed


def test_starting_the_cli_imports_no_command_module_and_no_client():
    """Start-up is most of a short `run --follow`: importing the CLI must not pull in the heavy parts."""
    code = ("import sys, pollinator.cli.main\n"
            "heavy = ['httpx', 'httpcore', 'asyncio', 'rich', 'pathspec', 'boto3', 'pollinator.cli.run',\n"
            "         'pollinator.cli.dev', 'pollinator.cli.fs', 'pollinator.cli.inspect', 'pollinator.cfs',\n"
            "         'pollinator.colonies.client', 'pollinator.dev.colony']\n"
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_the_console_script_trims_start_up_but_importing_the_cli_changes_nothing():
    out = subprocess.run([sys.executable, "-m", "pollinator.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"pollinator {pollinator.__version__}"
    code = "import sys, pollinator.cli.main\nprint(any(sys.modules.get(m, 1) is None for m in ('h2', 'httpx._main')))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"  # a program importing the CLI keeps httpx/h2 whole


def test_version_runs_without_importing_the_run_stack():
    code = ("import sys\nfrom pollinator.cli.main import main\nsys.argv = ['pollinator', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED' if 'pollinator.run' in sys.modules or 'httpx' in sys.modules else 'LIGHT')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("LIGHT") and f"pollinator {pollinator.__version__}" in out


def test_registered_commands():
    result = invoke("--help")
    for name in ("new", "funcspec", "executors", "ps", "get", "logs", "cancel", "version"):
        assert name in result.stdout


def test_funcspec_and_dry_run_show_inputs_from_project_yaml_and_input_flags(tmp_path: Path):
    assert invoke("new", "-e", "x", cwd=tmp_path).exit_code == 0
    with (tmp_path / "project.yaml").open("a") as f:
        f.write("inputs:\n  prep: /pollinator/prep/result\n")
    p = load_project(tmp_path).project_name
    for command in (("funcspec",), ("run", "--dry-run")):
        result = invoke(*command, "--input", "more=/pollinator/other/result", "-i", "prep=/pollinator/prep2/result",
                        cwd=tmp_path)
        assert result.exit_code == 0, result.output
        spec = json.loads(result.stdout)
        mounts = {m["label"]: m["dir"] for m in spec["fs"]["snapshots"]}
        assert mounts["/pollinator/prep2/result"] == f"/pollinator/{p}/runs/<run_id>/inputs/prep"  # the flag wins
        assert mounts["/pollinator/other/result"] == f"/pollinator/{p}/runs/<run_id>/inputs/more"
        assert "/pollinator/prep/result" not in mounts
        assert spec["env"]["POLLINATOR_INPUT_MORE"] == f"/cfs/pollinator/{p}/runs/<run_id>/inputs/more"


@pytest.mark.parametrize("value, expect", [
    ("prep", "--input 'prep': use NAME=LABEL, e.g. --input prep=/pollinator/prep/result"),
    ("=/pollinator/a/result", "use NAME=LABEL"),
    ("prep=relative/label", "--input: input 'prep': label 'relative/label' must be an absolute ColonyFS label"),
    ("bad-name=/x", "--input: input name 'bad-name' must be a valid identifier"),
])
def test_run_bad_input_flag_is_exit_2_naming_it_and_submits_nothing(tmp_path: Path, fake, value, expect):
    assert invoke("new", "-e", "x", cwd=tmp_path).exit_code == 0
    result = invoke("run", "--input", value, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert expect in " ".join(result.stderr.split())
    assert not any(call[0] == "submit" for call in fake.calls)
    assert not (tmp_path / ".pollinator").exists()
