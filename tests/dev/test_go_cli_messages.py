"""The Go CLI's commands the docs promise, driven through the messages they send (no Go binary in CI).

`colonies server status` (unsigned getserverinfomsg), `log search` (searchlogsmsg), `cron ls`
(getcronsmsg), `function ls` (getfunctionsmsg) and `blueprint ls` (getblueprintsmsg), each shaped
as internal/cli and pkg/client build them, against the local server over HTTP.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from pollinator.colonies import crypto
from pollinator.colonies.rpc import encode_envelope
from server_harness import Colony_, start_colony


@pytest.fixture(scope="module")
def colony(tmp_path_factory) -> Colony_:
    c = start_colony(tmp_path_factory.mktemp("gocli"))
    yield c
    c.server.stop()


def send(colony: Colony_, msg: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any], Any]:
    """POST one envelope (``key=None``: unsigned, as the Go client sends getserverinfomsg)."""
    envelope = encode_envelope(msg, key or crypto.generate_private_key())
    if key is None:
        envelope["signature"] = ""
    resp = httpx.post(colony.server.url + "/api", json=envelope, timeout=30)
    body = resp.json()
    payload = json.loads(base64.b64decode(body["payload"])) if body["payload"] else None
    return resp.status_code, body, payload


def test_server_status_is_answered_unsigned(colony: Colony_) -> None:
    status, body, info = send(colony, {"msgtype": "getserverinfomsg"}, None)
    assert (status, body["payloadtype"], body["error"]) == (200, "getserverinfomsg", False)
    assert list(info) == ["buildversion", "buildtime", "backends"]
    assert info["backends"] == [{"type": "http", "port": colony.server.port, "host": "127.0.0.1"}]
    # other messages still need a valid signature
    status, _, error = send(colony, {"msgtype": "getcronsmsg", "colonyname": "dev", "count": 100}, None)
    assert (status, error["message"]) == (403, "Invalid signature length")


def _process_with_lines(colony: Colony_, lines: list[str]) -> str:
    user, executor = colony.client(colony.user_key), colony.client(colony.executor_key)
    status, reply = colony.raw({"msgtype": "submitfuncspecmsg", "spec": {
        "conditions": {"colonyname": "dev", "executortype": colony.executor_type}, "funcname": "execute",
        "maxwaittime": -1, "maxexectime": 60, "maxretries": 0}}, colony.user_key)
    assert status == 200
    pid = executor.assign(timeout=-1).processid
    assert pid == reply["processid"]
    for line in lines:
        executor.add_log(pid, line)
    user.close()
    return pid


def search(colony: Colony_, text: str, days: int = 1, count: int = 10, key: str | None = "user") -> tuple[int, Any]:
    msg = {"msgtype": "searchlogsmsg", "colonyname": "dev", "text": text, "days": days, "count": count}
    status, _, payload = send(colony, msg, colony.user_key if key == "user" else key)
    return status, payload


def test_log_search_finds_executor_lines(colony: Colony_) -> None:
    pid = _process_with_lines(colony, ["hello world\n", "Hello again\n", "a_b literal\n", "other\n"])
    status, found = search(colony, "hello")
    assert status == 200
    assert [(f["processid"], f["message"], f["executorname"]) for f in found] == [
        (pid, "hello world\n", colony.executor_name)]  # case-sensitive, like PostgreSQL LIKE
    assert [f["message"] for f in search(colony, "a_b")[1]] == ["a_b literal\n"]
    assert [f["message"] for f in search(colony, "l%o w")[1]] == ["hello world\n"]  # LIKE wildcards
    assert len(search(colony, "e", count=2)[1]) == 2
    assert search(colony, "zz-no-such-text-zz") == (200, None)
    assert search(colony, "hello", days=0) == (200, None)
    assert search(colony, "hello", count=101)[1]["message"] == "Count exceeds max log count (100)"
    assert search(colony, "hello", days=31)[1]["message"] == "Count exceeds max day count (30)"
    status, error = search(colony, "hello", key=crypto.generate_private_key())
    assert (status, error["message"]) == (403, "Access denied, not a member of Colony with name <dev>")


@pytest.mark.parametrize("msg, empty", [
    ({"msgtype": "getcronsmsg", "colonyname": "dev", "count": 100}, []),
    ({"msgtype": "getfunctionsmsg", "executorname": "", "colonyname": "dev"}, None),
    ({"msgtype": "getfunctionsmsg", "executorname": "capture-1", "colonyname": "dev"}, None),
    ({"msgtype": "getblueprintsmsg", "namespace": "dev", "kind": "", "locationname": ""}, None),
], ids=["cron ls", "function ls", "executor functions", "blueprint ls"])
def test_catalog_lists_are_empty_for_members_and_refused_to_others(colony: Colony_, msg, empty) -> None:
    for key in (colony.user_key, colony.executor_key):
        status, body, payload = send(colony, msg, key)
        assert (status, body["payloadtype"], body["error"], payload) == (200, msg["msgtype"], False, empty)
    status, _, error = send(colony, msg, crypto.generate_private_key())
    assert status == 403
    if msg["msgtype"] == "getblueprintsmsg":  # not a member: the colony-owner check's error is reported
        assert error["message"] == "Access denied, not colony owner"
        assert send(colony, msg, colony.colony_key)[2] is None  # the colony owner may list blueprints
    else:
        assert error["message"] == "Access denied, not a member of Colony with name <dev>"
    status, error = colony.raw({**msg, "msgtype": "getprocessmsg"}, colony.user_key, payloadtype=msg["msgtype"])
    what = {"getcronsmsg": "crons", "getfunctionsmsg": "function", "getblueprintsmsg": "blueprints"}[msg["msgtype"]]
    assert (status, error["message"]) == (400, f"Failed to get {what}, msg.MsgType does not match payloadType")
