"""Remote functions without a colony: source captured at decoration, and the rule for shipping globals."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from pollinator.errors import ProjectError
from pollinator.run.remote import RUNNER_SOURCE, build_call, capture, name_looks_secret, select_globals
from pollinator.run.returns import MAX_RETURN_BYTES, decode

SCALE = 3
NAMES = ["a", "b"]
API_TOKEN = "s3cr3t-token"
GREETING = "hello"
SERVICE_URL = "https://robot:hunter2hunter2@repo.example/simple"
DIGEST_PIN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SETTINGS = {"retries": 2, "password": "x"}
BIG = "x" * (70 * 1024)


def scaled(x):
    return {"value": x * SCALE, "names": NAMES}


def uses_token(x):
    return f"{API_TOKEN}:{x}"


def uses_url():
    return SERVICE_URL


def uses_digest():
    return DIGEST_PIN


def uses_settings():
    return SETTINGS


def uses_big():
    return BIG


def uses_json_module():
    return json.dumps({})


def test_capture_strips_decorators_and_records_what_the_body_reads():
    src = capture(scaled)
    assert src.source.startswith("def scaled(x):")
    assert src.reads == ("NAMES", "SCALE")
    call = build_call(scaled, (2,), source=src)
    assert call["globals"] == {"SCALE": 3, "NAMES": ["a", "b"]}
    assert call["args"] == [2] and call["filename"] == "<pollinator:scaled>"


def test_a_token_like_global_is_refused_naming_it_and_the_way_out():
    with pytest.raises(ProjectError) as info:
        build_call(uses_token, (1,))
    message = str(info.value)
    assert "API_TOKEN" in message and "ship=['API_TOKEN']" in message and "argument" in message
    assert "s3cr3t-token" not in message  # the value is never echoed


@pytest.mark.parametrize("func, name, why", [
    (uses_url, "SERVICE_URL", "value looks like a credential"),
    (uses_digest, "DIGEST_PIN", "name reads like a credential"),
    (uses_settings, "SETTINGS", "names a credential"),
])
def test_credential_looking_values_and_keys_are_refused(func, name, why):
    with pytest.raises(ProjectError, match=why) as info:
        build_call(func)
    assert name in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_value_only_credential_is_refused_whatever_its_name():
    src = capture(uses_digest).model_copy(update={"reads": ("CHECK",)})
    with pytest.raises(ProjectError, match="CHECK .its value looks like a credential"):
        select_globals(src, {"CHECK": DIGEST_PIN})
    with pytest.raises(ProjectError, match="looks like a credential"):
        select_globals(src, {"CHECK": "ghp_" + "a1B2" * 9})
    with pytest.raises(ProjectError, match="looks like a credential"):
        select_globals(src, {"CHECK": ["ok", "-----BEGIN RSA PRIVATE KEY-----\nMII"]})
    with pytest.raises(ProjectError, match="looks like a credential"):
        select_globals(src, {"CHECK": "wJalrXUtnFEMI+K7MDENG+bPxRfiCYzEXAMPLEKEY9"})
    for plain in ("a plain sentence, with words", "/pollinator/preprocess-2024/runs/final-version/result",
                  "my_model_v2_final_checkpoint_2024_12_04", "x" * 5000):
        assert select_globals(src, {"CHECK": plain}) == {"CHECK": plain}


def test_ship_uploads_a_refused_global_on_purpose_and_logs_names_not_values(caplog):
    src = capture(uses_token, ship=["API_TOKEN"])
    with caplog.at_level(logging.INFO, logger="pollinator.run.remote"):
        call = build_call(uses_token, (1,), source=src)
    assert call["globals"] == {"API_TOKEN": "s3cr3t-token"}
    assert "API_TOKEN" in caplog.text and "s3cr3t-token" not in caplog.text


def test_ship_of_a_name_the_body_does_not_read_is_a_typo():
    with pytest.raises(ProjectError, match="ship= names API_KEY, which its body does not read"):
        capture(uses_token, ship=["API_KEY"])


def test_modules_and_big_data_are_refused():
    with pytest.raises(ProjectError, match="json .module is not plain data"):
        build_call(uses_json_module)
    with pytest.raises(ProjectError, match="BIG.*over 65536"):
        build_call(uses_big)


@pytest.mark.parametrize("name, secret", [
    ("API_TOKEN", True), ("apiToken", True), ("aws_secret_access_key", True), ("DB_PASSWORD", True),
    ("githubPat", True), ("PRIVATE_PEM", True), ("SCALE", False), ("NAMES", False), ("KEYBOARD", False),
    ("MONKEY", False), ("tokenizer_name", False),
])
def test_names_that_read_like_credentials(name, secret):
    assert name_looks_secret(name) is secret


def test_source_captured_at_decoration_survives_cloudpickle_by_value(tmp_path):
    """What Prefect's serve()/deploy() do to a flow script's functions: no file behind the code any more."""
    script = tmp_path / "flowfile.py"
    script.write_text(textwrap.dedent('''
        import sys, cloudpickle
        from pollinator.run.remote import capture

        FACTOR = 7

        def multiply(x):
            return x * FACTOR

        with open(sys.argv[1], "wb") as fh:
            cloudpickle.dump((multiply, capture(multiply)), fh)
    '''))
    blob = tmp_path / "fn.pkl"
    subprocess.run([sys.executable, str(script), str(blob)], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    script.unlink()  # the module file is gone, as on a worker that never had it
    import cloudpickle

    with open(blob, "rb") as fh:
        func, source = cloudpickle.load(fh)
    assert func.__code__.co_filename == "<dynamic-code>"
    with pytest.raises(ProjectError, match="source is not available.*decorated.*kind='command'"):
        build_call(func, (6,))
    call = build_call(func, (6,), source=source)
    assert call["globals"] == {"FACTOR": 7}
    # and the runner really computes it
    (tmp_path / "call.json").write_text(json.dumps(call))
    (tmp_path / "runner.py").write_text(RUNNER_SOURCE)
    ret = tmp_path / "out" / ".pollinator" / "return.json"
    subprocess.run([sys.executable, str(tmp_path / "runner.py")], check=True, timeout=120,
                   env={**os.environ, "POLLINATOR_CALL": str(tmp_path / "call.json"), "POLLINATOR_RETURN": str(ret)})
    assert json.loads(ret.read_text()) == 42


def test_the_runner_refuses_a_return_value_over_the_limit(tmp_path):
    def huge():
        return "y" * 2_000_000

    call = build_call(huge)
    (tmp_path / "call.json").write_text(json.dumps(call))
    (tmp_path / "runner.py").write_text(RUNNER_SOURCE)
    out = subprocess.run([sys.executable, str(tmp_path / "runner.py")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "POLLINATOR_CALL": str(tmp_path / "call.json"),
                              "POLLINATOR_RETURN": str(tmp_path / "r.json")})
    assert out.returncode != 0 and f"over the limit of {MAX_RETURN_BYTES}" in out.stderr
    assert not (tmp_path / "r.json").exists()


def test_return_values_decode_with_clear_errors():
    assert decode(b'{"a": [1, 2]}', "x") == {"a": [1, 2]}
    assert decode(b"null", "x") is None
    with pytest.raises(ProjectError, match=r"not valid JSON \(Expecting value at line 1 column 1\).*json.dump"):
        decode(b"ok then", "/p/.pollinator/return.json")
    with pytest.raises(ProjectError, match="over the limit"):
        decode(b"1" * (MAX_RETURN_BYTES + 1), "x")
    with pytest.raises(ProjectError, match="not UTF-8"):
        decode(b"\xff\xfe", "x")
