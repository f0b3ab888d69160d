"""Pollinator for Prefect 3: run a task's work as a ColonyOS job on HPC (Slurm) or Kubernetes.

``prefect block register -m pollinator_prefect`` registers :class:`ColonyOSCredentials`
(this package is also a ``prefect.collections`` entry point).
"""

from pollinator_prefect.credentials import ColonyOSCredentials
from pollinator_prefect.tasks import pollinator_task

__all__ = ["ColonyOSCredentials", "pollinator_task"]
