"""ColonyFS results as Airflow Assets: ``colonyfs://<colony>/<label>``.

A task whose ``outlets=`` hold the asset of its result label emits, on
success, an asset event whose ``extra`` pins the exact files of that run
(:func:`pollinator.run.pinned.pin_record`: snapshot id, the run's label,
files with sizes and checksums). A DAG scheduled on the asset mounts exactly
the triggering snapshot by giving the asset itself as an input::

    prep = colonyfs_asset("/pollinator/prep/result", colony="dev")
    PollinatorOperator(task_id="train", inputs={"prep": prep}, ...)   # the triggering run's files

(or ``inputs=inputs_from_asset_events(triggering_asset_events)`` in Python
code). An asset input with no triggering event mounts the label's latest files.

The scheme is registered through the provider info (``asset-uris``), so
Airflow normalizes and validates these URIs with :func:`sanitize_uri`. This
module is imported by every Airflow process that lists providers: nothing
heavy at import time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional
from urllib.parse import SplitResult, urlsplit

from pollinator.pins import COLONYFS_SCHEME as SCHEME, asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Asset


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normalizer for ``colonyfs://<colony>/<label>``: a colony and an absolute label, no ``..``."""
    if not uri.netloc:
        raise ValueError("a colonyfs:// asset URI names the colony first: colonyfs://<colony>/<label>, "
                         "e.g. colonyfs://dev/pollinator/prep/result")
    if not uri.path or uri.path == "/":
        raise ValueError(f"colonyfs://{uri.netloc} has no label: write colonyfs://{uri.netloc}/pollinator/<name>/result")
    if ".." in uri.path.split("/") or "//" in uri.path:
        raise ValueError(f"colonyfs:// label {uri.path!r} must be a plain absolute label (no '..', no '//')")
    if uri.query:
        raise ValueError("a colonyfs:// asset URI takes no query: pin a snapshot through the asset event, "
                         "not the URI")
    return uri


def colonyfs_asset(label: str, *, colony: str, name: Optional[str] = None, **kwargs: Any) -> "Asset":
    """The Asset of a ColonyFS label (``name`` defaults to the URI, as Airflow's does)."""
    from airflow.sdk import Asset

    uri = asset_uri(colony, label)
    return Asset(name=name or uri, uri=uri, **kwargs)


def create_asset(*, colony: str, label: str, extra: Optional[dict[str, Any]] = None) -> "Asset":
    """The provider's asset factory (``asset-uris`` ``factory``)."""
    return colonyfs_asset(label, colony=colony, extra=extra or {})


def label_of(asset: Any) -> Optional[tuple[str, str]]:
    """``(colony, label)`` of a colonyfs asset (an Asset, an asset reference, or a URI); None for others."""
    uri = asset if isinstance(asset, str) else getattr(asset, "uri", None)
    if not isinstance(uri, str):
        return None
    parts = urlsplit(uri)
    if parts.scheme.lower() != SCHEME or not parts.netloc or not parts.path.strip("/"):
        return None
    return parts.netloc, parts.path.rstrip("/")


def input_name(label: str) -> str:
    """A label's default input name: its last part that is not ``result`` or a run's directory."""
    parts = [p for p in label.split("/") if p]
    if "runs" in parts:  # /pollinator/<name>/runs/<run_id>/result: the job's name
        parts = parts[: parts.index("runs")]
    parts = [p for p in parts if p not in ("result", "pollinator")]
    return re.sub(r"\W", "_", parts[-1] if parts else "input")


def pinned_input_of(extra: Mapping[str, Any]) -> Optional[str]:
    """The ``inputs=`` value of one asset event's ``extra`` (None: the event pins nothing)."""
    from pollinator.pins import pinned

    value = extra.get("input") if isinstance(extra, Mapping) else None
    if isinstance(value, str) and value:
        return value
    label, snap = extra.get("label"), extra.get("snapshot_id")
    if isinstance(label, str) and isinstance(snap, str) and label and snap:
        return pinned(label, snap)
    return None


def inputs_from_asset_events(events: Mapping[Any, Iterable[Any]],
                             names: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
    """Triggering asset events -> ``inputs=``: each colonyfs asset's newest event, pinned to its snapshot.

    ``events`` is the context's ``triggering_asset_events``. ``names`` maps
    input names to the assets wanted (default: every colonyfs asset, named
    after its label). An asset that was not among the triggers is refused with
    a ValueError naming it (there is no snapshot to pin).
    """
    latest: dict[str, tuple[Any, Any]] = {}
    for asset, evs in events.items():
        found = label_of(asset)
        if found is None:
            continue
        newest = max(evs, key=lambda e: getattr(e, "timestamp", 0), default=None)
        if newest is not None:
            latest[asset_uri(*found)] = (found, newest)
    if names is None:
        names = {input_name(label): asset_uri(colony, label) for (colony, label), _ev in latest.values()}
    out: dict[str, str] = {}
    for name, asset in names.items():
        found = label_of(asset)
        if found is None:
            raise ValueError(f"input {name!r}: {asset!r} is not a colonyfs:// asset")
        uri = asset_uri(*found)
        if uri not in latest:
            raise ValueError(f"input {name!r}: no triggering event of {uri} (the run was not triggered by it)")
        value = pinned_input_of(getattr(latest[uri][1], "extra", None) or {})
        if value is None:
            raise ValueError(f"input {name!r}: the event of {uri} carries no snapshot (not emitted by Pollinator)")
        out[name] = value
    return out


def resolve_inputs(inputs: Optional[Mapping[str, Any]], events: Optional[Mapping[Any, Iterable[Any]]],
                   colony: str) -> Optional[dict[str, str]]:
    """An operator's ``inputs=`` with colonyfs assets replaced: the triggering snapshot, else the label."""
    if not inputs or not isinstance(inputs, Mapping):
        return inputs  # type: ignore[return-value]
    out: dict[str, str] = {}
    for name, value in inputs.items():
        found = label_of(value) if not isinstance(value, str) or value.startswith(SCHEME + "://") else None
        if found is None:
            out[name] = value
            continue
        asset_colony, label = found
        if asset_colony != colony:
            raise ValueError(f"input {name!r}: asset {asset_uri(*found)} is in colony {asset_colony!r}, this task "
                             f"runs in {colony!r}")
        try:
            out[name] = inputs_from_asset_events(events or {}, {name: value})[name]
        except ValueError:
            out[name] = label  # not triggered by it (a manual run, a cron schedule): the label's latest files
    return out


def inlets_of(inputs: Optional[Mapping[str, Any]], colony: str) -> list["Asset"]:
    """The assets a task reads: one per input label (a pinned input's label)."""
    from pollinator.pins import parse_input

    assets = []
    for value in (inputs or {}).values():
        found = label_of(value) if not isinstance(value, str) or value.startswith(SCHEME + "://") else None
        label = found[1] if found else parse_input(value).label
        assets.append(colonyfs_asset(label, colony=found[0] if found else colony))
    return assets


def outlet_labels(outlets: Iterable[Any]) -> list[tuple[Any, str, str]]:
    """The colonyfs outlets of a task: ``(asset, colony, label)``."""
    found = []
    for asset in outlets or ():
        parsed = label_of(asset)
        if parsed is not None:
            found.append((asset, *parsed))
    return found


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """The provider's OpenLineage converter: namespace ``colonyfs://<colony>``, name the label."""
    from airflow.providers.common.compat.openlineage.facet import Dataset  # only with OpenLineage installed

    colony, label = label_of(asset) or ("", "")
    return Dataset(namespace=f"{SCHEME}://{colony}", name=label)
