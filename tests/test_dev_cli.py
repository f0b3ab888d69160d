"""Issue #3's "done when", as a user types it: `pollinator dev --detach`, `source <(pollinator dev env)`,
a hand-written echo spec through our client, then `pollinator dev stop`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from pollinator.colonies.models import Conditions, FunctionSpec, ProcessState
from pollinator.config import Settings


def _cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "pollinator.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _parse_exports(text):
    env = {}
    for line in text.splitlines():
        key, _, value = line[len("export "):].partition("=")
        env[key] = shlex.split(value)[0]
    return env


def test_detach_env_echo_stop(tmp_path):
    data = str(tmp_path / "colony")
    started = _cli("dev", "--detach", "--data-dir", data, timeout=180)
    assert started.returncode == 0, started.stderr
    try:
        keys = (tmp_path / "colony" / "keys.json").read_text()
        assert all(k not in started.stdout + started.stderr for k in keys.split('"') if len(k) == 64)
        assert oct((tmp_path / "colony" / "env").stat().st_mode & 0o777) == "0o600"
        out = _cli("dev", "env", "--data-dir", data)
        assert out.returncode == 0
        env = _parse_exports(out.stdout)
        for name in ("COLONIES_SERVER_HOST", "COLONIES_PRVKEY", "AWS_S3_ENDPOINT", "AIRFLOW_CONN_COLONIES_DEFAULT"):
            assert name in env
        settings = Settings.from_env(env)
        with settings.client() as client:
            # `pollinator dev` runs its executors strict: the spec must be one the ColonyOS executors run
            spec = FunctionSpec(funcname="execute", kwargs={"cmd": "echo", "args": ["hello", "colony"],
                                                            "docker-image": ""},
                                maxwaittime=-1, maxexectime=30, maxretries=1,
                                conditions=Conditions(colonyname=settings.colony_name,
                                                      executortype="container-executor", nodes=1,
                                                      processespernode=1, cpu="1000m", mem="1000Mi",
                                                      walltime=60))
            pid = client.submit(spec).processid
            deadline = time.monotonic() + 60
            while client.get_process(pid).state < ProcessState.SUCCESS and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.get_process(pid).state == ProcessState.SUCCESS
            assert any("hello colony" in log.message for log in client.get_logs(pid))
        status = _cli("dev", "status", "--data-dir", data)
        assert status.returncode == 0 and "server" in status.stdout + status.stderr
    finally:
        stopped = _cli("dev", "stop", "--data-dir", data)
    assert stopped.returncode == 0
    assert _cli("dev", "status", "--data-dir", data).returncode != 0


def test_restart_keeps_processes(tmp_path):
    data = str(tmp_path / "colony")
    started = _cli("dev", "--data-dir", data, "--detach", timeout=180)
    assert started.returncode == 0
    # the summary's commands act on this colony, not the default one
    said = " ".join((started.stdout + started.stderr).split())
    assert f"source <(pollinator dev env --data-dir {data})" in said
    assert f"pollinator dev stop --data-dir {data}" in said
    try:
        env = _parse_exports(_cli("dev", "--data-dir", data, "env").stdout)  # --data-dir before the subcommand
        assert _cli("dev", "--data-dir", data, "status").returncode == 0
        with Settings.from_env(env).client() as client:
            spec = FunctionSpec(funcname="nobody-runs-this", maxwaittime=-1, maxexectime=-1,
                                conditions=Conditions(colonyname="dev", executortype="no-such-executor"))
            pid = client.submit(spec).processid
    finally:
        stopped = _cli("dev", "--data-dir", data, "stop")
    assert stopped.returncode == 0 and "Stopped: " in stopped.stdout + stopped.stderr
    assert _cli("dev", "status", "--data-dir", data).returncode == 1
    assert _cli("dev", "--detach", "--data-dir", data, timeout=180).returncode == 0
    try:
        env = _parse_exports(_cli("dev", "env", "--data-dir", data).stdout)
        with Settings.from_env(env).client() as client:
            assert client.get_process(pid).state == ProcessState.WAITING
    finally:
        _cli("dev", "stop", "--data-dir", data)


def test_data_dir_in_either_position_names_that_dir(tmp_path):
    """No colony in X: every subcommand says so about X, whichever side of the subcommand --data-dir is."""
    data = str(tmp_path / "nothing-here")
    for args in (("dev", "--data-dir", data, "status"), ("dev", "status", "--data-dir", data),
                 ("dev", "--data-dir", data, "stop"), ("dev", "stop", "--data-dir", data),
                 ("dev", "--data-dir", data, "env"), ("dev", "env", "--data-dir", data)):
        out = _cli(*args, timeout=60)
        said = " ".join((out.stdout + out.stderr).split())
        assert data in said, (args, said)
        assert out.returncode == (0 if "stop" in args else 1 if "status" in args else 2), (args, said)
