"""Pollinator: run a step of an Airflow DAG or Prefect flow as a ColonyOS job.

The core is engine-agnostic: the Airflow and Prefect adapters translate their
idioms into one call of :mod:`pollinator.run`.
"""

__version__ = "0.1.0"

from pollinator.errors import (  # noqa: E402
    AccessDenied,
    BadRequest,
    ColoniesError,
    ConfigError,
    JobFailed,
    NotFound,
    PollinatorError,
    ProjectError,
    ServerError,
    SyncError,
    Unreachable,
)

__all__ = [
    "__version__",
    "PollinatorError",
    "ConfigError",
    "ProjectError",
    "ColoniesError",
    "NotFound",
    "AccessDenied",
    "BadRequest",
    "ServerError",
    "Unreachable",
    "SyncError",
    "JobFailed",
]
