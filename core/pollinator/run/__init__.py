"""The one run pipeline every entry point uses. See docs/architecture.md.

Names are imported on first use, so an adapter module that only needs
:mod:`pollinator.run.options` (the operator's argument names, read when a DAG
file is parsed) does not pull in the client, ColonyFS and the follower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pollinator.run.follow import afollow_logs, follow_logs
    from pollinator.run.handle import ProcessHandle
    from pollinator.run.job import Job
    from pollinator.run.options import JobOptions
    from pollinator.run.remote import RemoteFunctionJob
    from pollinator.run.result import JobResult

_LAZY = {
    "Job": "pollinator.run.job",
    "JobOptions": "pollinator.run.options",
    "JobResult": "pollinator.run.result",
    "ProcessHandle": "pollinator.run.handle",
    "follow_logs": "pollinator.run.follow",
    "afollow_logs": "pollinator.run.follow",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pollinator.run' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def remote_function_job(settings: Any, func: Any, args: Any = (), kwargs: Any = None,
                        **options: Any) -> "RemoteFunctionJob":
    """A Job that runs ``func``'s source remotely with JSON arguments (see pollinator.run.remote)."""
    from pollinator.run.remote import remote_function_job as _make

    return _make(settings, func, args, kwargs, **options)


__all__ = ["Job", "JobOptions", "JobResult", "ProcessHandle", "follow_logs", "afollow_logs", "remote_function_job"]
