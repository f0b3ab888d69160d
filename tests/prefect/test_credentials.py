"""The ColonyOSCredentials block: Prefect's standards, env round trip, and secrets that stay secret."""

from __future__ import annotations

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from pollinator.config import Settings
from pollinator.errors import ConfigError
from pollinator_prefect import ColonyOSCredentials

from prefect_fakes import ENV, PRVKEY, S3_SECRET


class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self):
        return ColonyOSCredentials


def test_from_env_reads_what_pollinator_dev_env_prints():
    creds = ColonyOSCredentials.from_env(ENV)
    assert (creds.host, creds.port, creds.tls, creds.colony_name) == ("colony.example", 50443, True, "dev")
    assert creds.private_key.get_secret_value() == PRVKEY
    assert (creds.s3_endpoint, creds.s3_bucket, creds.s3_region, creds.s3_access_key, creds.s3_tls) == (
        "s3.example:9000", "pollinator", "eu-north-1", "access", True)
    assert creds.dashboard_url == "https://dash.example"


def test_settings_round_trip_is_lossless():
    settings = Settings.from_env(ENV)
    assert ColonyOSCredentials.from_settings(settings).get_settings() == settings


def test_without_s3_the_settings_have_none():
    env = {k: v for k, v in ENV.items() if not k.startswith("AWS_")}
    settings = ColonyOSCredentials.from_env(env).get_settings()
    assert settings.s3 is None


def test_from_env_errors_are_the_cores():
    with pytest.raises(ConfigError, match="COLONIES_SERVER_HOST"):
        ColonyOSCredentials.from_env({"COLONIES_PRVKEY": PRVKEY, "COLONIES_COLONY_NAME": "dev"})


def test_half_configured_s3_is_a_clear_error():
    with pytest.raises(ValueError, match="s3_bucket, s3_access_key, s3_secret_key missing"):
        ColonyOSCredentials(colony_name="dev", private_key=PRVKEY, s3_endpoint="s3:9000")


@pytest.mark.parametrize("given, missing", [
    ({"s3_secret_key": S3_SECRET}, "s3_endpoint, s3_bucket, s3_access_key missing"),
    ({"s3_access_key": "a", "s3_secret_key": S3_SECRET, "s3_bucket": "b"}, "s3_endpoint missing"),
    ({"s3_endpoint": "s3:9000", "s3_access_key": "a", "s3_bucket": "b"}, "s3_secret_key missing"),
])
def test_a_partial_s3_set_is_refused_naming_the_missing_fields(given, missing):
    """An S3 secret without an endpoint used to mean "no S3" silently."""
    with pytest.raises(ValueError, match=missing) as info:
        ColonyOSCredentials(colony_name="dev", private_key=PRVKEY, **given)
    assert S3_SECRET not in str(info.value)


def test_a_block_made_partial_after_validation_fails_at_use():
    creds = ColonyOSCredentials.from_env(ENV)
    creds.s3_endpoint = ""
    with pytest.raises(ConfigError, match="s3_endpoint missing"):
        creds.get_settings()


def test_secrets_never_in_repr_str_or_dump():
    creds = ColonyOSCredentials.from_env(ENV)
    for text in (repr(creds), str(creds), creds.model_dump_json(), repr(creds.get_settings())):
        assert PRVKEY not in text
        assert S3_SECRET not in text


def test_a_malformed_key_is_refused_without_echoing_it():
    bad = "not-a-key-but-still-secret"
    with pytest.raises(ValidationError) as info:
        ColonyOSCredentials(colony_name="dev", private_key=bad)
    assert bad not in str(info.value)
    assert "64 hex characters" in str(info.value)


def test_save_and_load_through_the_prefect_api():
    creds = ColonyOSCredentials.from_env(ENV)
    creds.save("pollinator-test-creds", overwrite=True)
    loaded = ColonyOSCredentials.load("pollinator-test-creds")
    assert loaded.get_settings() == creds.get_settings()
    assert isinstance(loaded.s3_secret_key, SecretStr)


def test_block_registers_from_the_module(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    prefect = Path(sys.executable).with_name("prefect")
    out = subprocess.run([str(prefect), "block", "register", "-m", "pollinator_prefect"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ColonyOS Credentials" in out.stdout
