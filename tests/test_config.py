"""Settings read the same variables as the Go CLI and pycolonies, and keep secrets secret."""

from __future__ import annotations

import pytest

from pollinator.config import Settings
from pollinator.errors import ConfigError

KEY = "a" * 64
BASE = {
    "COLONIES_SERVER_HOST": "localhost",
    "COLONIES_SERVER_PORT": "50080",
    "COLONIES_COLONY_NAME": "dev",
    "COLONIES_PRVKEY": KEY,
}
S3 = {
    "AWS_S3_ENDPOINT": "localhost:9000",
    "AWS_S3_ACCESSKEY": "access-123",
    "AWS_S3_SECRETKEY": "secret-456",
    "AWS_S3_BUCKET": "pollinator",
}


def test_from_env_reads_go_cli_names():
    s = Settings.from_env({**BASE, **S3, "COLONIES_TLS": "true", "COLONYOS_DASHBOARD_URL": "http://dash"})
    assert (s.host, s.port, s.tls, s.colony_name) == ("localhost", 50080, True, "dev")
    assert s.s3 is not None and s.s3.url == "http://localhost:9000" and s.s3.region == "us-east-1"
    assert s.process_url("p1") == "http://dash/process?processid=p1"


def test_pycolonies_tls_name_is_read_too():
    assert Settings.from_env({**BASE, "COLONIES_SERVER_TLS": "true"}).tls is True


@pytest.mark.parametrize("missing", sorted(set(BASE) - {"COLONIES_SERVER_PORT"}))  # the port defaults to 50080
def test_missing_variable_is_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize("name,value", [("COLONIES_SERVER_PORT", "http"), ("COLONIES_SERVER_PORT", "70000"),
                                        ("COLONIES_TLS", "maybe"), ("COLONIES_PRVKEY", "xyz")])
def test_bad_values_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**BASE, name: value})


def test_missing_s3_variable_is_named_when_s3_needed():
    env = {**BASE, **S3}
    del env["AWS_S3_SECRETKEY"]
    with pytest.raises(ConfigError, match="AWS_S3_SECRETKEY"):
        Settings.from_env(env, need_s3=True)


def test_secrets_never_in_repr_or_dump():
    s = Settings.from_env({**BASE, **S3})
    text = repr(s) + str(s) + str(s.model_dump()) + s.model_dump_json()
    for secret in (KEY, "secret-456", "access-123"):
        assert secret not in text
