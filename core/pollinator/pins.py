"""One rule for an input: "that label" (latest) or "that snapshot" (exact files), written as one string.

A step's ``inputs=`` maps a name to where its files come from:

* ``/pollinator/prep/result`` — a label: it is snapshotted when the step is
  submitted, so the step reads the label's latest files as of that moment;
* ``/pollinator/prep/runs/<run_id>/result@<snapshot_id>`` — a label pinned to
  one of its snapshots: the step reads exactly the files of that snapshot,
  whatever was written to the label since (another run, a re-run).

A pinned input stays a plain string so it travels unchanged through
project.yaml, ``--input NAME=VALUE``, XCom, Airflow asset events and Prefect
parameters, and a dry-run shows the label and the snapshot id it will mount.
The snapshot id is what the executor downloads; the label is shown and checked
against the snapshot at submit (a snapshot of another label is refused).
:func:`pinned` writes one (``JobResult.pinned_input()`` gives a run's own).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

PIN_SEP = "@"
COLONYFS_SCHEME = "colonyfs"


class InputRef(NamedTuple):
    """An input value read: its label, and the snapshot it is pinned to (None: the label's latest)."""

    label: str
    snapshot_id: Optional[str] = None

    @property
    def is_pinned(self) -> bool:
        return self.snapshot_id is not None

    def __str__(self) -> str:
        return pinned(self.label, self.snapshot_id) if self.snapshot_id else self.label


def parse_input(value: str) -> InputRef:
    """``label`` or ``label@snapshot_id`` (the part after the last ``@``, when it holds no ``/``, is the id).

    Raises ValueError naming the problem; the caller names the input.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a label: give a string like /pollinator/prep/result")
    label, sep, snap = value.rpartition(PIN_SEP)
    if not sep or "/" in snap:
        label, snap = value, ""
    elif not snap:
        raise ValueError(f"{value!r} ends with {PIN_SEP!r}: give the snapshot id after it, or drop the {PIN_SEP!r}")
    if not label.startswith("/") or ".." in label.split("/"):
        raise ValueError(f"label {label!r} must be an absolute ColonyFS label like /pollinator/prep/result")
    if snap and (snap in (".", "..") or not snap.strip() or snap != snap.strip()):
        raise ValueError(f"snapshot id {snap!r} of {value!r} is not a snapshot id")
    return InputRef(label, snap or None)


def pinned(label: str, snapshot_id: str) -> str:
    """The input value that mounts exactly snapshot ``snapshot_id`` of ``label``."""
    ref = f"{label}{PIN_SEP}{snapshot_id}"
    parsed = parse_input(ref)  # one rule: what we write is what we read
    if parsed.snapshot_id != snapshot_id or parsed.label != label:
        raise ValueError(f"snapshot id {snapshot_id!r} cannot be written as a pinned input")
    return ref


def asset_uri(colony: str, label: str) -> str:
    """``colonyfs://<colony>/<label>``: how Airflow Assets, Prefect assets and lineage name a ColonyFS label."""
    if not colony or "/" in colony:
        raise ValueError(f"colony {colony!r} is not a colony name")
    if not label.startswith("/"):
        raise ValueError(f"label {label!r} must be absolute, like /pollinator/prep/result")
    return f"{COLONYFS_SCHEME}://{colony}{label.rstrip('/')}"
