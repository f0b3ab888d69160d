"""The one run pipeline every entry point uses. See docs/architecture.md."""

from pollinator.run.follow import afollow_logs, follow_logs
from pollinator.run.job import Job
from pollinator.run.options import JobOptions
from pollinator.run.handle import ProcessHandle
from pollinator.run.result import JobResult


def remote_function_job(settings, func, args=(), kwargs=None, **options):
    """A Job that runs ``func``'s source remotely with JSON arguments (see pollinator.run.remote)."""
    from pollinator.run.remote import remote_function_job as _make

    return _make(settings, func, args, kwargs, **options)


__all__ = ["Job", "JobOptions", "JobResult", "ProcessHandle", "follow_logs", "afollow_logs", "remote_function_job"]
