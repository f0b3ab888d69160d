"""Pollinator: run a step of an Airflow DAG or Prefect flow as a ColonyOS job.

The core is engine-agnostic: the Airflow and Prefect adapters translate their
idioms into one call of :mod:`pollinator.run`. The public surface:

* :class:`Settings` (and :class:`S3Settings`): where the colony and its storage are;
* :class:`Job` (with :class:`JobOptions`): what to run -> spec -> submit;
* :class:`ProcessHandle`: a process that exists (follow, wait, cancel, results);
* :class:`JobResult`: what a finished process hands back;
* :func:`remote_function_job`: a job running a Python function's body remotely;
* the errors of :mod:`pollinator.errors`.

The run pipeline is imported on first use of one of its names, so
``import pollinator`` (and the CLI's start) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from pollinator.errors import (  # noqa: E402
    AccessDenied,
    BadRequest,
    ColoniesError,
    ColoniesReplyError,
    ConfigError,
    JobFailed,
    JobTimeout,
    NotFound,
    PollinatorError,
    ProjectError,
    ServerError,
    SyncError,
    Unreachable,
    UsageError,
)

if TYPE_CHECKING:
    from pollinator.config import S3Settings, Settings
    from pollinator.run import Job, JobOptions, JobResult, ProcessHandle, remote_function_job

_LAZY = {
    "Settings": "pollinator.config",
    "S3Settings": "pollinator.config",
    "Job": "pollinator.run",
    "JobOptions": "pollinator.run",
    "JobResult": "pollinator.run",
    "ProcessHandle": "pollinator.run",
    "remote_function_job": "pollinator.run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pollinator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
    "Settings",
    "S3Settings",
    "Job",
    "JobOptions",
    "JobResult",
    "ProcessHandle",
    "remote_function_job",
    "PollinatorError",
    "ConfigError",
    "UsageError",
    "ProjectError",
    "SyncError",
    "JobFailed",
    "JobTimeout",
    "ColoniesError",
    "ColoniesReplyError",
    "NotFound",
    "AccessDenied",
    "BadRequest",
    "ServerError",
    "Unreachable",
]
