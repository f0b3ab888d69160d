"""Log shipping under refusals and outages, and the server's NUL refusal as the real one sends it."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import httpx
import pytest

from executor_fakes import FakeClient
from pollinator.colonies.rpc import decode_reply
from pollinator.errors import BadRequest, Unreachable
from pollinator.executor.log_stream import LogShipper, server_safe
from test_executor_integration import COLONY, LocalTestColony, spec, wait_final, wait_for

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "colonies-protocol" / "more" / "addlogmsg_nul_byte.json"


def test_decode_reply_reads_the_double_error_envelope_of_the_real_server():
    cap = json.loads(CAPTURE.read_text())
    with pytest.raises(BadRequest) as err:
        decode_reply(cap["http_status"], cap["raw_reply_body"].encode(), "addlogmsg")
    assert err.value.status == 400 and "0x00" in err.value.message


def test_server_safe_escapes_nul_and_lone_surrogates():
    assert server_safe("a\x00b") == "a\\x00b"
    assert server_safe("x\udcff") == "x\\udcff"
    assert server_safe("plain ✓") == "plain ✓"


class PickyClient(FakeClient):
    """Refuses (400) any message holding 'poison', and is unreachable for the first ``down`` calls."""

    def __init__(self, down: int = 0):
        super().__init__()
        self.down = down
        self.calls = 0

    def add_log(self, process_id, message):
        self.calls += 1
        if self.calls <= self.down:
            raise Unreachable("cannot reach the Colonies server (test)")
        if "poison" in message:
            raise BadRequest("refused by the test server", status=400)
        return super().add_log(process_id, message)


def test_a_refused_batch_never_silences_the_rest():
    client = PickyClient()
    shipper = LogShipper(client, "p", linger=0.2)
    for line in ["one", "two", "poison", "four"]:
        shipper.put(line)
    shipper.close()
    shipper2_lines = client.lines
    assert shipper2_lines[:2] == ["one", "two"] and shipper2_lines[-1] == "four"
    assert any("a log line was refused by the server" in l for l in shipper2_lines)
    assert not shipper.refused.is_set() and shipper.dropped == 1


def test_outage_is_ridden_out_and_every_line_arrives_once():
    client = PickyClient(down=6)
    shipper = LogShipper(client, "p", max_delay=0.05)
    for i in range(50):
        shipper.put(f"line {i}")
    shipper.close()
    assert client.lines == [f"line {i}" for i in range(50)]


def test_full_buffer_back_pressures_then_counts_and_says_dropped_lines():
    client = PickyClient(down=10**9)
    shipper = LogShipper(client, "p", max_buffered=5, put_wait=0.05, retry_window=0.3, max_delay=0.05, max_lines=2)
    for i in range(20):
        shipper.put(f"line {i}")
    client.down = 0  # the server is back
    shipper.put("after")
    shipper.close()
    assert shipper.dropped > 0
    said = [l for l in client.lines if "were dropped" in l]
    assert said and said[0].startswith(f"[executor] ") and "after" in client.lines


@pytest.fixture(scope="module")
def colony(tmp_path_factory):
    c = LocalTestColony(tmp_path_factory.mktemp("nul-colony"))
    yield c
    c.close()


def test_dev_server_refuses_nul_like_the_real_one(colony, tmp_path):
    """The same status and the same two back-to-back envelopes as more/addlogmsg_nul_byte.json."""
    from pollinator.colonies import crypto
    from pollinator.colonies.rpc import encode_envelope
    from pollinator.executor.registration import register_executor

    with colony.settings.client() as user:
        key = register_executor(user.with_key(colony.colony_key), name="pytest-nul", executor_type="pytest-nul")
        s = spec({"cmd": "true"})
        s.conditions.executortype = "pytest-nul"
        p = user.submit(s)
        ex = user.with_key(key)
        assert ex.assign(timeout=5).processid == p.processid
        env = encode_envelope({"msgtype": "addlogmsg", "processid": p.processid, "message": "a\x00b\n"}, key)
        resp = httpx.post(f"http://127.0.0.1:{colony.port}/api", json=env, timeout=10)
        cap = json.loads(CAPTURE.read_text())
        assert resp.status_code == cap["http_status"] == 400
        assert resp.text == cap["raw_reply_body"]
        ex.add_log(p.processid, "fine\n")  # the process is not harmed: later lines are stored
        assert [e.message for e in user.get_logs(p.processid)] == ["fine\n"]
        ex.close_successful(p.processid, [])
