"""Every reply captured from a real Colonies server parses and dumps back unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pollinator.colonies import models as m

CAPTURES = Path(__file__).resolve().parent / "data" / "colonies-protocol"  # see its README.md

# msgtype -> model for a dict reply, or for each item of a list reply
REPLY_MODELS: dict[str, type[m.WireModel]] = {
    "addexecutormsg": m.Executor,
    "getexecutormsg": m.Executor,
    "getexecutorsmsg": m.Executor,
    "submitfuncspecmsg": m.Process,
    "getprocessmsg": m.Process,
    "getprocessesmsg": m.Process,
    "assignprocessmsg": m.Process,
    "addfilemsg": m.File,
    "getfilemsg": m.File,
    "getfilesmsg": m.FileSummary,
    "getfilelabelsmsg": m.Label,
    "createsnapshotmsg": m.Snapshot,
    "getsnapshotmsg": m.Snapshot,
    "getsnapshotsmsg": m.Snapshot,
    "getlogsmsg": m.Log,
    "getcolonystatsmsg": m.Statistics,
    "getcolonymsg": m.Colony,
}


def _exchanges() -> list[tuple[str, dict[str, Any]]]:
    """Every request/reply pair in the folder, including the ones nested in probe files."""
    found = []
    for path in sorted(CAPTURES.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            continue
        if "request_msg" in data:
            found.append((path.stem, data))
        else:
            for key, value in data.items():
                if isinstance(value, dict) and "request_msg" in value and "reply" in value:
                    found.append((f"{path.stem}:{key}", value))
    return found


EXCHANGES = _exchanges()


def test_capture_folder_is_there():
    assert len(EXCHANGES) >= 60, "the capture folder (tests/data/colonies-protocol) should hold the real server's exchanges"


def _model_for(exchange: dict[str, Any]) -> type[m.WireModel] | None:
    status = exchange.get("http_status", 200)
    if status >= 400:
        return m.ErrorReply
    return REPLY_MODELS.get(exchange["request_msg"].get("msgtype", ""))


@pytest.mark.parametrize("name,exchange", EXCHANGES, ids=[n for n, _ in EXCHANGES])
def test_reply_round_trips(name, exchange):
    reply = exchange["reply"]
    model = _model_for(exchange)
    if reply is None:  # e.g. getlogsmsg with nothing newer: the server sends null, not []
        assert exchange["request_msg"]["msgtype"] == "getlogsmsg"
        return
    if reply == {}:
        return  # empty object replies (close, cancel, approve...) carry nothing to model
    assert model is not None, f"no model for {exchange['request_msg'].get('msgtype')}"
    items = reply if isinstance(reply, list) else [reply]
    for item in items:
        parsed = model.model_validate(item)
        assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == item
        # and nothing the server sent is lost even when defaults are filled in
        full = parsed.to_wire()
        for key in item:
            assert key in full


def test_request_specs_round_trip():
    for name, exchange in EXCHANGES:
        spec = exchange["request_msg"].get("spec")
        if spec:
            parsed = m.FunctionSpec.model_validate(spec)
            assert parsed.model_dump(mode="json", by_alias=True, exclude_unset=True) == spec


def test_process_states_include_cancelled():
    assert m.ProcessState(4) is m.ProcessState.CANCELLED
    assert m.ProcessState.CANCELLED.is_final and not m.ProcessState.RUNNING.is_final


def test_nanosecond_log_timestamps_keep_precision():
    log = m.Log.model_validate({"timestamp": 1795317195661751252, "message": "x"})
    assert log.timestamp == 1795317195661751252


def test_go_time_parsing():
    assert m.parse_go_time(m.GO_ZERO_TIME) is None
    dt = m.parse_go_time("2026-11-22T03:13:15.614146123Z")
    assert dt is not None and dt.microsecond == 614146 and dt.utcoffset().total_seconds() == 0
    assert m.parse_go_time("2026-11-22T03:13:15.5+02:00").utcoffset().total_seconds() == 7200
    assert m.go_time(dt) == "2026-11-22T03:13:15.614146Z"


def test_s3_secrets_hidden_from_repr():
    obj = m.S3Object(accesskey="AKIAEXAMPLE", secretkey="supersecretvalue")
    assert "supersecretvalue" not in repr(obj)
    assert "AKIAEXAMPLE" not in repr(obj)
