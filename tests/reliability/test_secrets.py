"""No private key or S3 secret in anything Pollinator prints, logs, raises, reprs or writes; forged keys refused."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import rel_tally
from rel_helpers import cli
from pollinator.cfs import CFS
from pollinator.colonies import crypto
from pollinator.colonies.rpc import encode_envelope
from pollinator.errors import AccessDenied, ColoniesError, PollinatorError
from pollinator.run import Job


def _scan(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    leaks = []
    for where, text in texts.items():
        for name, secret in secrets.items():
            if secret and secret in text:
                leaks.append(f"{name} in {where}")
    rel_tally.add("secret_scans", len(texts))
    rel_tally.add("secrets_leaked", len(leaks))
    return leaks


def _files(root: Path) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return out


@pytest.mark.timeout(180)
def test_no_secret_in_cli_output_logs_errors_reprs_or_files(tmp_path, colony_env, settings, secrets_of, caplog,
                                                          local_colony):
    home = tmp_path / "home"
    home.mkdir()
    env = {**colony_env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "POLLINATOR_DEBUG": ""}
    texts: dict[str, str] = {}
    project = tmp_path / "proj"
    project.mkdir()
    texts["new"] = str(cli(["new", "-e", "dev-k8s"], project, env).__dict__)
    yaml_text = (project / "project.yaml").read_text().replace("pip3 install numpy", "")
    (project / "project.yaml").write_text(yaml_text)
    (project / "cfs" / "src" / "main.py").write_text(
        "import os\nprint(sorted(k for k in os.environ if 'KEY' in k))\n")
    run = cli(["run", "--follow"], project, env)
    assert run.returncode == 0, run.stderr
    texts["run --follow"] = run.stdout + run.stderr
    texts["sync"] = str(cli(["sync", str(project / "cfs" / "data"), "--label", "/rel-secrets/data"], project,
                            env).__dict__)
    texts["pull"] = str(cli(["pull", "/rel-secrets/data", str(tmp_path / "pulled")], project, env).__dict__)
    texts["ps --json"] = str(cli(["ps", "--json", "--state", "success"], project, env).__dict__)
    texts["dev summary"] = str(cli(["dev", "--data-dir", str(local_colony.data_dir), "--detach"], project,
                                   env).__dict__)
    bad_key = (crypto.random_id() * 2)[:64]
    bad = cli(["ps"], project, {**env, "COLONIES_PRVKEY": bad_key})
    assert bad.returncode == 1
    texts["bad key"] = bad.stdout + bad.stderr
    wrong_s3 = cli(["sync", str(project / "cfs" / "data"), "--label", "/rel-secrets/x"], project,
                   {**env, "AWS_S3_SECRETKEY": "wrong-secret-" + "s" * 27})
    texts["wrong s3 secret"] = wrong_s3.stdout + wrong_s3.stderr

    # in-process: log records at DEBUG, exception texts and reprs
    caplog.set_level(logging.DEBUG)
    with Job.inline(settings, name="rel-secrets", cmd="sh -c 'exit 4'", executor_names=["dev-hpc"],
                    walltime=30) as job:
        try:
            job.run()
        except PollinatorError as exc:
            texts["JobFailed"] = f"{exc} {exc!r} {getattr(exc, 'result', '')!r}"
        texts["reprs"] = " ".join(repr(x) for x in (settings, settings.s3, job, job.client, job.cfs))
        texts["str settings"] = f"{settings} {settings.model_dump()} {settings.s3.model_dump_json()}"
    broken = settings.model_copy(update={"s3": settings.s3.model_copy(update={"secret_key": SecretStr("x" * 40)})})
    with broken.client() as client:
        try:
            CFS(client, broken.s3).sync(project / "cfs" / "data", "/rel-secrets/broken", True)
        except PollinatorError as exc:
            texts["SyncError"] = f"{exc} {exc!r} {exc.__cause__!r}"
    try:
        settings.client().with_key(bad_key).get_processes(0)
    except ColoniesError as exc:
        texts["AccessDenied"] = f"{exc} {exc!r}"
    texts["log records"] = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)

    texts.update(_files(project))
    texts.update(_files(home))
    leaks = _scan(texts, {**secrets_of, "BAD_KEY": bad_key})
    assert not leaks, leaks
    assert len(texts) > 15


@pytest.mark.timeout(60)
def test_colony_refuses_unknown_and_forged_keys(settings, client):
    stranger = client.with_key((crypto.random_id() * 2)[:64])
    with pytest.raises(AccessDenied):
        stranger.get_processes(0)
    prvkey = settings.prvkey.get_secret_value()
    msg = {"msgtype": "getprocessesmsg", "colonyname": settings.colony_name, "count": 1, "state": 0,
           "executortype": "", "label": "", "initiator": ""}
    env = encode_envelope(msg, prvkey)
    tampered = dict(env, payload=base64.b64encode(json.dumps({**msg, "count": 2}).encode()).decode())
    garbage = dict(env, signature="00" * 65)
    url = f"http://{settings.host}:{settings.port}/api"
    for forged in (tampered, garbage):
        reply = httpx.post(url, json=forged, timeout=10)
        assert reply.status_code in (400, 401, 403), reply.text
    rel_tally.add("bad_inputs_tried", 4)
    rel_tally.add("bad_inputs_refused", 4)


@pytest.mark.timeout(60)
def test_executor_actions_on_processes_not_assigned_to_the_caller(settings, client, colony_env):
    from pollinator.executor.registration import deregister_executor, register_executor

    colony_client = client.with_key(colony_env["COLONIES_COLONY_PRVKEY"])
    name = "rel-intruder-" + os.urandom(3).hex()
    key = register_executor(colony_client, name=name, executor_type="container-executor")
    intruder = client.with_key(key)
    # named for the intruder, which never asks for it: it stays WAITING, assigned to nobody (an unregistered
    # name would be refused at submit)
    job = Job.inline(settings, name="rel-victim", cmd="sleep 30", executor_names=[name], walltime=60)
    pid = job.submit()
    tried = 0
    try:
        for who, action in [("intruder", lambda: intruder.close_successful(pid, ["forged"])),
                            ("intruder", lambda: intruder.close_failed(pid, ["forged"])),
                            ("intruder", lambda: intruder.add_log(pid, "forged line\n")),
                            ("user", lambda: client.close_successful(pid, ["forged"])),
                            ("user", lambda: client.add_log(pid, "forged line\n"))]:
            tried += 1
            with pytest.raises(ColoniesError):
                action()
        process = client.get_process(pid)
        assert process.state == 0 and not process.out
        assert client.get_logs(pid) == []
    finally:
        job.cancel()
        job.close()
        deregister_executor(colony_client, name)
    rel_tally.add("bad_inputs_tried", tried)
    rel_tally.add("bad_inputs_refused", tried)
