"""ColonyFS metadata: files (revisions, labels) and snapshots. The server never touches S3."""

from __future__ import annotations

from typing import Any, Optional

from pollinator.colonies import crypto
from pollinator.dev.context import EMPTY, Ctx, Handler, handler
from pollinator.dev.security import require_membership
from pollinator.dev.wire import RPCError, get_bool, get_dict, get_int, get_str, go_time, now_ns

_S3_STR = ("server", "accesskey", "secretkey", "region", "encryptionkey", "encryptionalg", "object", "bucket")


def render_file(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "added": go_time(f["added"])}


def render_snapshot(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "added": go_time(s["added"])}


def _reference(raw: Optional[dict[str, Any]]) -> dict[str, Any]:
    raw = raw or {}
    s3 = get_dict(raw, "s3object") or {}
    obj: dict[str, Any] = {}
    for key in ("server", "port", "tls", *_S3_STR[1:]):
        if key == "port":
            obj[key] = get_int(s3, key)
        elif key == "tls":
            obj[key] = get_bool(s3, key)
        else:
            obj[key] = get_str(s3, key)
    get_str(raw, "protocol")
    return {"protocol": "s3", "s3object": obj}  # the Go server always reads the protocol back as "s3"


@handler("add log", mismatch_action="add file")
def add_file(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    raw = get_dict(msg, "file")
    if raw is None:
        raise RPCError(400, "Failed to add file, msg.File is nil")
    colony, file_id = get_str(raw, "colonyname"), crypto.random_id()
    f = {"fileid": file_id, "colonyname": colony, "label": get_str(raw, "label"),
         "name": get_str(raw, "name"), "size": get_int(raw, "size"), "checksum": get_str(raw, "checksum"),
         "checksumalg": get_str(raw, "checksumalg"), "ref": _reference(get_dict(raw, "ref"))}
    get_int(raw, "sequencenr")
    require_membership(ctx.store, rid, colony)
    ctx.store.add_file(f)
    added = ctx.store.file_by_id(colony, file_id)
    return render_file(added) if added else None


@handler("add log", mismatch_action="get file")
def get_file(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, file_id = get_str(msg, "colonyname"), get_str(msg, "fileid")
    label, name, latest = get_str(msg, "label"), get_str(msg, "name"), get_bool(msg, "latest")
    require_membership(ctx.store, rid, colony)
    if file_id:
        found = ctx.store.file_by_id(colony, file_id)
        if found is None:
            raise RPCError(400, "Failed to get file")
        files = [found]
    elif label and name:
        files = ctx.store.files_by_name(colony, label, name, latest)
    else:
        raise RPCError(500, "malformatted get file msg")
    if not files:
        raise RPCError(404, "Failed to get file")
    return [render_file(f) for f in files]


@handler("get files")
def get_files(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, label = get_str(msg, "colonyname"), get_str(msg, "label")
    require_membership(ctx.store, rid, colony)
    return ctx.store.latest_file_summaries(colony, label)


def labels_matching(ctx: Ctx, colony: str, name: str, exact: bool) -> Optional[list[dict[str, Any]]]:
    """getfilelabelsmsg semantics: prefix match, or (exact) the label plus its ``label/...`` sub-labels."""
    counts = ctx.store.label_counts(colony)
    if not name:
        picked = list(counts)
    elif not exact:
        picked = [label for label in counts if label.startswith(name)]
    else:
        if name not in counts:
            return None
        picked = [label for label in counts if label == name or label.startswith(name + "/")]
    return [{"name": label, "files": counts[label]} for label in picked] or None


@handler("get files")
def get_file_labels(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, name, exact = get_str(msg, "colonyname"), get_str(msg, "name"), get_bool(msg, "exact")
    require_membership(ctx.store, rid, colony)
    return labels_matching(ctx, colony, name, exact)


@handler("remove file")
def remove_file(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, file_id = get_str(msg, "colonyname"), get_str(msg, "fileid")
    label, name = get_str(msg, "label"), get_str(msg, "name")
    require_membership(ctx.store, rid, colony)
    if file_id:
        ctx.store.remove_file_by_id(colony, file_id)
    elif label and name:
        ctx.store.remove_file_by_name(colony, label, name)
    else:
        raise RPCError(400, "malformatted remove file msg")
    return EMPTY


# -- snapshots ---------------------------------------------------------------------------
@handler("create snapshot")
def create_snapshot(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony, label, name = get_str(msg, "colonyname"), get_str(msg, "label"), get_str(msg, "name")
    require_membership(ctx.store, rid, colony)
    if ctx.store.snapshot_by_name(colony, name) is not None:
        raise RPCError(500, f"Snapshot with name <{name}> in Colony <{colony}> already exists")
    label = label[:-1] if label.endswith("/") else label
    file_ids = [f["fileid"] for entry in labels_matching(ctx, colony, label, True) or []
                for f in ctx.store.latest_files_in_label(colony, entry["name"])]
    snapshot = {"snapshotid": crypto.random_id(), "colonyname": colony, "label": label, "name": name,
                "fileids": file_ids or None, "added": now_ns()}
    ctx.store.add_snapshot(snapshot)
    return render_snapshot(snapshot)  # like Go: the in-memory value, ns precision


def _snapshot_of(ctx: Ctx, colony: str, snapshot_id: str, name: str) -> dict[str, Any]:
    if snapshot_id:
        found = ctx.store.snapshot_by_id(colony, snapshot_id)
        if found is None:
            raise RPCError(500, f"Snapshot not found with Id <{snapshot_id}> in Colony <{colony}> does not exists")
        return found
    if name:
        found = ctx.store.snapshot_by_name(colony, name)
        if found is None:
            raise RPCError(500, f"Snapshot not found with name <{name}> in Colony <{colony}> does not exists")
        return found
    raise RPCError(500, "Failed to get snapshot, malformatted msg")


@handler("get snapshot")
def get_snapshot(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_str(msg, "colonyname")
    snapshot_id, name = get_str(msg, "snapshotid"), get_str(msg, "name")
    require_membership(ctx.store, rid, colony)
    return render_snapshot(_snapshot_of(ctx, colony, snapshot_id, name))


@handler("get snapshots")
def get_snapshots(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_str(msg, "colonyname")
    require_membership(ctx.store, rid, colony)
    return [render_snapshot(s) for s in ctx.store.snapshots(colony)] or None


@handler("remove snapshot")
def remove_snapshot(ctx: Ctx, rid: str, msg: dict[str, Any]) -> Any:
    colony = get_str(msg, "colonyname")
    snapshot_id, name = get_str(msg, "snapshotid"), get_str(msg, "name")
    require_membership(ctx.store, rid, colony)
    if not snapshot_id and not name:
        raise RPCError(500, "Failed to remove snapsnot, malformatted msg")  # sic
    ctx.store.remove_snapshot(colony, snapshot_id=snapshot_id, name=name)
    return EMPTY


HANDLERS: dict[str, Handler] = {
    "addfilemsg": add_file,
    "getfilemsg": get_file,
    "getfilesmsg": get_files,
    "getfilelabelsmsg": get_file_labels,
    "removefilemsg": remove_file,
    "createsnapshotmsg": create_snapshot,
    "getsnapshotmsg": get_snapshot,
    "getsnapshotsmsg": get_snapshots,
    "removesnapshotmsg": remove_snapshot,
}
