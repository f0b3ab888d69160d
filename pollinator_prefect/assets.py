"""A Pollinator task's results as a Prefect asset materialization, pinned by its ColonyFS snapshot.

``@pollinator_task(assets=[colonyfs_asset("/pollinator/prep/result", colony="dev")])``
makes the task a Prefect materializing task (``prefect.assets``); on success
the materialization's metadata is :meth:`pollinator.run.JobResult.pin_record`
(snapshot id, the run's label, ``input`` — the value that mounts exactly
these files — and the files with sizes and checksums). Upstream assets are
Prefect's own ``asset_deps=`` task option, passed through.

Where the installed Prefect has no ``prefect.assets`` (before 3.4), asking
for assets logs one warning and the task runs as a plain task: the results
and their snapshot are the same, only the asset graph is missing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pollinator.pins import asset_uri
from pollinator.run import JobResult

if TYPE_CHECKING:
    from prefect.assets import Asset

log = logging.getLogger(__name__)
MATERIALIZED_BY = "pollinator"
MAX_FILES = 100  # files listed in an event's metadata (files_total says how many there are)


def supported() -> bool:
    try:
        import prefect.assets  # noqa: F401
        from prefect.tasks import MaterializingTask  # noqa: F401
    except ImportError:
        return False
    return True


def colonyfs_asset(label: str, *, colony: str, **properties: Any) -> "Asset":
    """The Prefect asset of a ColonyFS label (key ``colonyfs://<colony>/<label>``)."""
    from prefect.assets import Asset, AssetProperties

    return Asset(key=asset_uri(colony, label), properties=AssetProperties(**properties) if properties else None)


def make_task(body: Callable[..., Any], assets: Sequence[Any], task_options: dict[str, Any]) -> Any:
    """A materializing task of ``assets`` (or a plain one where Prefect has no assets)."""
    from prefect import task as prefect_task

    if not assets:
        return prefect_task(**task_options)(body)
    if not supported():
        log.warning("this Prefect has no prefect.assets: %s runs without asset materializations",
                    getattr(body, "__name__", "the task"))
        return prefect_task(**task_options)(body)
    from prefect.tasks import MaterializingTask

    return MaterializingTask(fn=body, assets=list(assets), materialized_by=MATERIALIZED_BY, **task_options)


def record_materialization(assets: Sequence[Any], result: JobResult) -> None:
    """Put the pinned result into each asset's materialization metadata (inside the task run)."""
    if not assets or not result.result_snapshot_id or not supported():
        return
    from prefect.assets import add_asset_metadata

    record = result.pin_record(max_files=MAX_FILES)
    for asset in assets:
        add_asset_metadata(asset, record)
