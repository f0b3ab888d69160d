"""The small public surface: names, the error tree, and a light `import pollinator`."""

from __future__ import annotations

import subprocess
import sys

import pollinator
from pollinator import errors


def test_the_public_names_import_from_the_package():
    from pollinator import Job, JobOptions, JobResult, ProcessHandle, S3Settings, Settings, remote_function_job
    from pollinator.run import Job as RunJob, ProcessHandle as RunHandle

    assert Job is RunJob and ProcessHandle is RunHandle
    assert {c.__name__ for c in (JobOptions, JobResult, S3Settings, Settings)} == {
        "JobOptions", "JobResult", "S3Settings", "Settings"}
    assert callable(remote_function_job)
    assert set(pollinator.__all__) >= {"Job", "Settings", "ProcessHandle", "JobResult", "UsageError"}


def test_import_pollinator_does_not_load_the_pipeline():
    code = "import sys, pollinator; print('pollinator.run' in sys.modules, 'httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_error_tree():
    # no reply at all is not an HTTP-status error
    assert not issubclass(errors.Unreachable, errors.ColoniesReplyError)
    assert issubclass(errors.Unreachable, errors.ColoniesError)
    for cls in (errors.BadRequest, errors.AccessDenied, errors.NotFound, errors.ServerError):
        assert issubclass(cls, errors.ColoniesReplyError)
    assert type(errors.error_for_status(418, "teapot")) is errors.ColoniesReplyError
    # the caller's timeout is not a remote failure
    assert not issubclass(errors.JobTimeout, errors.JobFailed)
    timeout = errors.JobTimeout("too slow", process_id="p", state="RUNNING")
    assert (timeout.process_id, timeout.state) == ("p", "RUNNING")
    # using the API the wrong way has its own class, and the CLI treats it as a local problem (exit 2)
    from pollinator.cli.common import EXIT_USAGE, exit_code_for

    assert not issubclass(errors.UsageError, errors.ProjectError)
    assert exit_code_for(errors.UsageError("x")) == EXIT_USAGE


def test_results_before_submit_is_a_usage_error():
    import pytest
    from pydantic import SecretStr

    from pollinator import Job, Settings

    job = Job.inline(Settings(colony_name="c", prvkey=SecretStr("1" * 64)), name="n", cmd="true")
    with pytest.raises(errors.UsageError, match="submit"):
        job.result()
