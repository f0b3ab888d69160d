"""Prefect assets degrade cleanly: without prefect.assets a task with assets= is a plain task."""

from __future__ import annotations

import logging

from prefect.tasks import MaterializingTask, Task

from pollinator.run import JobResult
from pollinator_prefect import assets, pollinator_task


def test_assets_make_a_materializing_task():
    asset = assets.colonyfs_asset("/pollinator/p/result", colony="dev")
    assert asset.key == "colonyfs://dev/pollinator/p/result"

    @pollinator_task(kind="command", assets=[asset])
    def job() -> str:
        return "true"

    assert isinstance(job, MaterializingTask) and job.materialized_by == "pollinator"


def test_without_prefect_assets_the_task_is_plain_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(assets, "supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="pollinator_prefect.assets"):
        @pollinator_task(kind="command", assets=["colonyfs://dev/pollinator/p/result"])
        def job() -> str:
            return "true"

    assert isinstance(job, Task) and not isinstance(job, MaterializingTask)
    assert "without asset materializations" in caplog.text
    # and recording is a no-op rather than an error
    assets.record_materialization(["colonyfs://dev/x"], JobResult(process_id="p", state="SUCCESS",
                                                                  result_snapshot_id="s", result_label="/x"))
