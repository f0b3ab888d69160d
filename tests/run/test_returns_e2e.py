"""Return values, remote-function hygiene and secrets against a real local colony (server, moto S3, executors)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.errors import JobFailed, JobTimeout, ProjectError
from pollinator.run import Job, remote_function_job
from pollinator.run.remote import capture

WRITE_RETURN = """\
import os
p = os.environ["POLLINATOR_RETURN"]
os.makedirs(os.path.dirname(p), exist_ok=True)
with open(p, "w") as fh:
    fh.write({payload!r})
with open(os.path.join(os.environ["POLLINATOR_RESULT_DIR"], "out.txt"), "w") as fh:
    fh.write("x")
"""
API_TOKEN = "s3cr3t-token-" + os.urandom(6).hex()  # unique per session: a hit in S3 can only come from this test


def _command_job(settings, tmp_path, payload: str | None, **kw):
    src = tmp_path / ("src-" + os.urandom(4).hex())
    src.mkdir()
    (src / "job.py").write_text(WRITE_RETURN.format(payload=payload) if payload is not None else "print('none')\n")
    return Job.inline(settings, name="ret-" + os.urandom(4).hex(), image="python:3.12", executor_names=["dev-k8s"],
                      cmd="python3", source="job.py", src_dir=src, walltime=120,
                      result_label=f"/pollinator/ret-{os.urandom(4).hex()}/result", **kw)


def test_a_command_hands_back_json_through_pollinator_return(settings, tmp_path):
    with _command_job(settings, tmp_path, '{"rows": 200, "ok": true}', result_dir=tmp_path / "res") as job:
        result = job.run()
        spec_env = job.handle.process.spec.env
    assert result.return_value == {"rows": 200, "ok": True} and result.returned
    assert result.result_files == ["out.txt"]  # .pollinator/return.json is not a user result
    assert sorted(p.name for p in (tmp_path / "res").iterdir() if p.name != ".cfs") == ["out.txt"]  # no .pollinator
    assert spec_env["POLLINATOR_RETURN"] == spec_env["POLLINATOR_RESULT_DIR"] + "/.pollinator/return.json"
    assert result.to_xcom()["return_value"] == {"rows": 200, "ok": True}


def test_no_return_file_is_none_and_null_is_returned(settings, tmp_path):
    with _command_job(settings, tmp_path, None) as job:
        result = job.run()
    assert result.ok and result.return_value is None and not result.returned
    with _command_job(settings, tmp_path, "null") as job:
        result = job.run()
    assert result.return_value is None and result.returned


def test_invalid_json_and_oversize_values_are_clear_errors(settings, tmp_path):
    with _command_job(settings, tmp_path, "ok then") as job:
        with pytest.raises(ProjectError, match=r"\.pollinator/return.json is not valid JSON \(Expecting value"):
            job.run()
    with _command_job(settings, tmp_path, "[" + "1," * 600_000 + "1]") as job:
        with pytest.raises(ProjectError, match="over the limit of 1048576 bytes"):
            job.run()


# -- remote functions ----------------------------------------------------------------------------------------
def scaled(x):
    return {"x": x, "scaled": x * FACTOR}


FACTOR = 10


def explode(x):
    raise ValueError(f"bad {x}")


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


def leak(x):
    return f"{x}:{API_TOKEN}"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Temporary files of this test go to a directory of its own, so leftovers can be counted."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_temporary_files_of_a_call_are_gone_after_success_failure_and_cancel(settings, private_tmp):
    with remote_function_job(settings, scaled, (4,), executor_names=["dev-k8s"], walltime=120) as job:
        assert list(private_tmp.iterdir())  # the call file waits here until it is uploaded
        result = job.run()
        assert list(private_tmp.iterdir()) == []  # gone once submitted, not at interpreter exit
    assert result.return_value == {"x": 4, "scaled": 40} and result.returned
    assert result.result_files == [] and result.result_dir == ""  # nothing downloaded, no worker folder

    with remote_function_job(settings, explode, (1,), executor_names=["dev-hpc"], walltime=120) as job:
        with pytest.raises(JobFailed, match="bad 1"):
            job.run()
    assert list(private_tmp.iterdir()) == []

    with remote_function_job(settings, nap, (120,), executor_names=["dev-k8s"], walltime=300) as job:
        with pytest.raises(JobTimeout):
            job.run(timeout=3)
        pid = job.process_id
    assert list(private_tmp.iterdir()) == []
    with settings.client() as client:
        import time

        deadline = time.monotonic() + 60
        while not ProcessState(client.get_process(pid).state).is_final and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get_process(pid).state == ProcessState.CANCELLED


def _bucket_blobs(settings) -> list[bytes]:
    import boto3
    from botocore.config import Config

    s3 = settings.s3
    scheme = "https" if s3.tls else "http"
    client = boto3.client("s3", endpoint_url=f"{scheme}://{s3.endpoint}", region_name=s3.region,
                          aws_access_key_id=s3.access_key.get_secret_value(),
                          aws_secret_access_key=s3.secret_key.get_secret_value(),
                          config=Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3}))
    blobs = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        for obj in page.get("Contents", []):
            blobs.append(client.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read())
    return blobs


def _processes_mentioning(client, text: str) -> list[str]:
    found = []
    for state in (ProcessState.WAITING, ProcessState.RUNNING, ProcessState.SUCCESS, ProcessState.FAILED):
        for p in client.get_processes(state) or []:
            if text in p.model_dump_json():
                found.append(p.processid)
    return found


def test_a_token_like_global_never_leaves_the_client_unless_shipped_on_purpose(settings, client):
    with pytest.raises(ProjectError, match=r"API_TOKEN .its name reads like a credential.*ship=\['API_TOKEN'\]"):
        remote_function_job(settings, leak, ("a",), executor_names=["dev-k8s"])
    token = API_TOKEN.encode()
    assert not any(token in blob for blob in _bucket_blobs(settings))
    assert _processes_mentioning(client, API_TOKEN) == []

    # the positive control: shipped deliberately, the same scan finds it (so the scan above could fail)
    with remote_function_job(settings, leak, ("a",), executor_names=["dev-k8s"], walltime=120,
                             source=capture(leak, ship=["API_TOKEN"])) as job:
        assert job.run().return_value == f"a:{API_TOKEN}"
    assert any(token in blob for blob in _bucket_blobs(settings))
