"""Prefect asset materializations of pinned results, and a second flow mounting exactly that snapshot."""

from __future__ import annotations

import os
import time

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from pollinator.pins import parse_input
from pollinator.run import JobResult
from pollinator_prefect import pollinator_task
from pollinator_prefect.assets import colonyfs_asset, supported


def _materializations(key: str, snapshot_id: str, timeout: float = 60.0) -> list:
    """The asset's materialization events, once one pins ``snapshot_id`` (the events worker sends them in the
    background)."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(prefix=["prefect.asset.materialization"]),
                                                  resource=EventResourceFilter(id=[key])), limit=50)
        if any(e.payload.get("snapshot_id") == snapshot_id for e in page.events) or time.monotonic() > deadline:
            return page.events
        time.sleep(0.5)


def test_a_result_is_an_asset_materialization_and_a_later_flow_mounts_its_snapshot(in_colony_env, tmp_path):
    assert supported()  # Prefect 3.7 has prefect.assets
    name = "pf-asset-" + os.urandom(3).hex()
    asset = colonyfs_asset(f"/pollinator/{name}/result", colony=in_colony_env["COLONIES_COLONY_NAME"])

    @pollinator_task(kind="command", executor_names=["dev-k8s"], job_name=name, walltime=120, assets=[asset])
    def prepare(word: str) -> str:
        return f"sh -c 'echo {word} > $POLLINATOR_RESULT_DIR/data.txt'"

    @flow
    def produce(word: str) -> JobResult:
        return prepare(word)

    first = produce("first")
    produce("second")  # the label now holds other bytes
    assert first.result_snapshot_id and parse_input(first.pinned_input()).snapshot_id == first.result_snapshot_id

    events = _materializations(asset.key, first.result_snapshot_id)
    assert events, "no materialization event"
    pinned = {e.payload.get("snapshot_id") for e in events if e.event.endswith("succeeded")}
    assert first.result_snapshot_id in pinned
    mine = next(e for e in events if e.payload.get("snapshot_id") == first.result_snapshot_id)
    assert mine.payload["input"] == first.pinned_input()
    assert [f["path"] for f in mine.payload["files"]] == ["data.txt"]

    # another flow, later: mount exactly what the first run produced, from the event's metadata
    @pollinator_task(kind="command", executor_names=["dev-hpc"], job_name=name + "-use", walltime=120,
                     result_dir=tmp_path / "use", inputs={"prep": mine.payload["input"]})
    def consume() -> str:
        return "sh -c 'cp $POLLINATOR_INPUT_PREP/data.txt $POLLINATOR_RESULT_DIR/seen.txt'"

    @flow
    def downstream() -> JobResult:
        return consume()

    downstream()
    assert (tmp_path / "use" / "seen.txt").read_text().strip() == "first"
