"""Strict mode and the Kube-like exit-code mode of the local executor (pollinator.executor.strict)."""

from __future__ import annotations

import pytest

from executor_fakes import FakeClient, process
from pollinator.colonies.models import Conditions
from pollinator.executor.job_runner import LocalBackend
from pollinator.executor.process_job import ProcessJob
from pollinator.executor.strict import Conformance

GOOD = dict(conditions=Conditions(nodes=1, processespernode=1, cpu="1000m", mem="1000Mi", walltime=60),
            maxexectime=59, maxretries=3)


def run(proc, tmp_path, conformance):
    client = FakeClient()
    ProcessJob(proc, client=client, backend=LocalBackend(kill_grace=0.5), fs_dir=tmp_path / "fs",
               cancel_poll=0.2, executor_id="exec-id", conformance=conformance).run()
    return client


def test_strict_refuses_what_validate_funcspec_refuses_before_running(tmp_path):
    marker = tmp_path / "ran"
    proc = process({"cmd": f"touch {marker}", "docker-image": ""},
                   conditions=Conditions(nodes=1, processespernode=1, cpu="1", mem="512M", walltime=0),
                   maxexectime=-1, maxretries=0)
    client = run(proc, tmp_path, Conformance(strict=True))
    kind, errors = client.closed
    assert kind == "failed" and not marker.exists()
    assert errors[0].startswith("strict mode: the ColonyOS hpc/kube/docker executors would not run this spec")
    assert "Invalid funcspec, walltime cannot be 0" in errors
    assert "Invalid funcspec, maxretries must be set to a larger value than 0" in errors
    assert "Memory must be defined in Mi or Gi" in errors
    assert "CPU must be specified in the following format: {value}m, e.g. 1000m" in errors


def test_strict_refuses_characters_the_templates_change(tmp_path):
    proc = process({"cmd": "echo 'a & b'", "docker-image": ""}, **GOOD)
    kind, errors = run(proc, tmp_path, Conformance(strict=True)).closed
    assert kind == "failed"
    assert any(e.startswith("kwargs.cmd holds \"'\" '&'") for e in errors), errors


def test_strict_runs_a_conforming_spec(tmp_path):
    marker = tmp_path / "ran"
    proc = process({"cmd": f"touch {marker}", "docker-image": ""}, **GOOD)
    assert run(proc, tmp_path, Conformance(strict=True)).closed == ("success", [])
    assert marker.exists()


def test_lenient_runs_what_strict_refuses(tmp_path):
    proc = process({"cmd": "echo 'a & b'", "docker-image": ""}, conditions=Conditions(walltime=0))
    assert run(proc, tmp_path, Conformance()).closed == ("success", [])


def test_ignored_exit_codes_close_success_like_kube(tmp_path):
    proc = process({"cmd": "sh -c 'exit 3'", "docker-image": ""}, **GOOD)
    client = run(proc, tmp_path, Conformance(exit_codes="ignore"))
    assert client.closed == ("success", [])
    assert any("exited with code 3" in line and "closing SUCCESS anyway" in line for line in client.lines)
    assert run(proc, tmp_path, Conformance()).closed[0] == "failed"


def test_unknown_exit_code_mode():
    with pytest.raises(ValueError, match="exit_codes='maybe'"):
        Conformance(exit_codes="maybe")


# -- the launcher on the local executor ----------------------------------------------------------------

def _launcher_job(tmp_path, cmd: str):
    from pollinator.launcher import Launcher, spec_command

    fs = tmp_path / "fs"
    path = fs / "pollinator/p/runs/r/files/launch.sh"
    path.parent.mkdir(parents=True)
    (fs / "pollinator/p/runs/r/result").mkdir(parents=True)  # the result sync dir, staged by a real run
    path.write_bytes(Launcher(cmd=cmd, env={"OUT": "/cfs/pollinator/p/runs/r/result/b.txt"}).data())
    return process({"cmd": spec_command("/cfs/pollinator/p/runs/r/files/launch.sh"), "docker-image": ""},
                   env={"POLLINATOR_RESULT_DIR": "/cfs/pollinator/p/runs/r/result"}, **GOOD), fs


def test_launcher_paths_point_at_the_fs_dir_and_the_exit_record_is_written(tmp_path):
    import json

    proc, fs = _launcher_job(tmp_path, "echo 'a & b' > /cfs/pollinator/p/runs/r/result/a.txt && echo x > \"$OUT\"")
    assert run(proc, tmp_path, Conformance(strict=True)).closed == ("success", [])
    result = fs / "pollinator/p/runs/r/result"
    assert (result / "a.txt").read_text() == "a & b\n" and (result / "b.txt").read_text() == "x\n"
    record = json.loads((result / ".pollinator/exit.json").read_text())
    assert record == {"exit_code": 0, "complete": True, "stage": "cmd", "process_id": "p" * 64, "rank": "0",
                      "reason": ""}


def test_launcher_records_the_real_exit_code_when_the_executor_says_success(tmp_path):
    import json

    proc, fs = _launcher_job(tmp_path, "echo failing; exit 7")
    assert run(proc, tmp_path, Conformance(strict=True, exit_codes="ignore")).closed == ("success", [])
    record = json.loads((fs / "pollinator/p/runs/r/result/.pollinator/exit.json").read_text())
    assert record["exit_code"] == 7
