"""Signatures, ids and envelopes agree with pycolonies and with a real server's capture."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pollinator.colonies import crypto
from pollinator.colonies.rpc import decode_reply, encode_envelope
from pollinator.errors import AccessDenied, BadRequest, ColoniesError, NotFound, ServerError

CAPTURES = Path(__file__).resolve().parent / "data" / "colonies-protocol"  # see its README.md


def test_signature_and_id_are_byte_identical_to_pycolonies():
    pycrypto = pytest.importorskip("crypto")  # pycolonies' top-level module
    ref = pycrypto.Crypto()
    for _ in range(5):
        key = crypto.generate_private_key()
        payload = base64.b64encode(json.dumps({"msgtype": "getcolonymsg", "colonyname": key[:8]}).encode()).decode()
        assert crypto.sign(payload, key) == ref.sign(payload, key)
        assert crypto.id_from_private_key(key) == ref.id(key)


def test_recover_id_of_real_server_capture():
    capture = json.loads((CAPTURES / "rpc_envelope_example.json").read_text())
    env = capture["request_envelope"]
    # the capture rig's user signed it; its id is the initiatorid of the processes it submitted
    submitted = json.loads((CAPTURES / "submitfuncspecmsg.json").read_text())
    assert crypto.recover_id(env["payload"], env["signature"]) == submitted["reply"]["initiatorid"]


def test_envelope_round_trip_and_recovery():
    key = crypto.generate_private_key()
    env = encode_envelope({"msgtype": "getprocessmsg", "processid": "abc"}, key)
    assert env["payloadtype"] == "getprocessmsg"
    assert json.loads(base64.b64decode(env["payload"])) == {"msgtype": "getprocessmsg", "processid": "abc"}
    assert crypto.recover_id(env["payload"], env["signature"]) == crypto.id_from_private_key(key)


@pytest.mark.parametrize("bad", ["00" * 65, "zz", "ab" * 10])
def test_garbage_signatures_are_refused(bad):
    with pytest.raises(ValueError):
        crypto.recover_id("eyJ9", bad)


def test_bad_private_key_is_a_config_error_that_does_not_echo_the_key():
    from pollinator.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        crypto.sign("x", "secret-not-hex-" * 4)
    assert "secret-not-hex" not in str(info.value)
    with pytest.raises(ConfigError):
        crypto.id_from_private_key("0" * 64)  # hex, but not a key


def _reply(payload, error=False, payloadtype="x"):
    return json.dumps({"payloadtype": "error" if error else payloadtype,
                       "payload": base64.b64encode(json.dumps(payload).encode()).decode(),
                       "error": error}).encode()


@pytest.mark.parametrize("status,cls", [(400, BadRequest), (403, AccessDenied), (404, NotFound),
                                        (500, ServerError)])
def test_error_replies_keep_status_and_message(status, cls):
    with pytest.raises(cls) as info:
        decode_reply(status, _reply({"status": status, "message": "Failed to get process"}, True), "getprocessmsg")
    assert info.value.status == status and info.value.message == "Failed to get process"


def test_null_payload_decodes_to_none():
    assert decode_reply(200, _reply(None)) is None


def test_non_envelope_reply_is_a_clear_error():
    with pytest.raises(ColoniesError, match="not a Colonies envelope"):
        decode_reply(502, b"<html>bad gateway</html>")
