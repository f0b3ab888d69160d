"""The local executor: runs ColonyOS ``execute`` processes on this machine (``pollinator executor start``).

Modules: ``worker`` (LocalExecutor: registration, assign loop, concurrency),
``process_job`` (one process from assigned to closed), ``job_runner`` (the
subprocess backend), ``fs_mounts`` (snapshot and sync-dir mounts),
``launch`` (spec -> local command/env/paths), ``log_stream`` (batched
addlog), ``backend`` (the Backend protocol a Slurm backend would implement).
"""

from pollinator.executor.backend import AbortSignal, Backend, LaunchSpec, RunResult
from pollinator.executor.job_runner import LocalBackend
from pollinator.executor.process_job import ProcessJob
from pollinator.executor.worker import LocalExecutor

__all__ = ["AbortSignal", "Backend", "LaunchSpec", "LocalBackend", "LocalExecutor", "ProcessJob", "RunResult"]
