"""ColonyFS sync engine: plan/apply, snapshots, pull. See :mod:`pollinator.cfs.engine` for the rules."""

from pollinator.cfs.cancel import CancelToken, SyncCancelled
from pollinator.cfs.engine import CFS
from pollinator.cfs.plan import LabelPlan, PlannedFile, RemoteFile, SyncPlan, SyncReport
from pollinator.cfs.progress import Progress, ProgressCallback

__all__ = ["CFS", "CancelToken", "LabelPlan", "PlannedFile", "Progress", "ProgressCallback", "RemoteFile",
           "SyncCancelled", "SyncPlan", "SyncReport"]
