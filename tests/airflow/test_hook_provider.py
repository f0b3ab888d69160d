"""Connection -> Settings translation, provider metadata, and that secrets stay secret."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from pollinator.errors import ConfigError
from pollinator_airflow.hooks import PollinatorHook, settings_from_connection
from pollinator_airflow.provider import EXTRA_FIELDS, get_provider_info

PRVKEY = "cd" * 32
EXTRA = {"colony_name": "dev", "tls": False, "s3_endpoint": "127.0.0.1:9000", "s3_bucket": "pollinator",
         "s3_region": "us-east-1", "s3_access_key": "pollinator-dev", "s3_secret_key": "very-secret-s3-key",
         "s3_tls": False, "dashboard_url": "http://127.0.0.1:50080"}


def conn(**changes) -> Connection:
    doc = {"conn_type": "colonies", "host": "127.0.0.1", "port": 50080, "password": PRVKEY, "extra": dict(EXTRA)}
    extra_changes = changes.pop("extra", {})
    doc.update(changes)
    doc["extra"].update(extra_changes)
    doc["extra"] = {k: v for k, v in doc["extra"].items() if v is not None}
    return Connection.from_json(json.dumps(doc), conn_id="colonies_default")


def test_local_colony_connection_json_translates():
    s = settings_from_connection(conn())
    assert (s.host, s.port, s.colony_name, s.tls) == ("127.0.0.1", 50080, "dev", False)
    assert s.prvkey.get_secret_value() == PRVKEY
    assert s.s3 is not None and s.s3.bucket == "pollinator" and s.s3.endpoint == "127.0.0.1:9000"
    assert s.process_url("p1") == "http://127.0.0.1:50080/process?processid=p1"


def test_secrets_not_in_reprs():
    s = settings_from_connection(conn())
    for text in (repr(s), str(s), repr(PollinatorHook()), s.model_dump_json()):
        assert PRVKEY not in text and "very-secret-s3-key" not in text


def test_extra_field_names_are_exactly_the_local_colony_ones():
    from pollinator.dev.colony import airflow_connection_json

    env = {"COLONIES_SERVER_HOST": "h", "COLONIES_SERVER_PORT": "1", "COLONIES_PRVKEY": PRVKEY,
           "COLONIES_COLONY_NAME": "dev", "COLONIES_TLS": "false", "AWS_S3_ENDPOINT": "e:1", "AWS_S3_BUCKET": "b",
           "AWS_S3_REGION_KEY": "r", "AWS_S3_ACCESSKEY": "a", "AWS_S3_SECRETKEY": "s", "AWS_S3_TLS": "false",
           "COLONYOS_DASHBOARD_URL": "http://d"}
    doc = json.loads(airflow_connection_json(env))
    assert set(doc["extra"]) == set(EXTRA_FIELDS)
    assert settings_from_connection(Connection.from_json(json.dumps(doc), conn_id="c")).port == 1


@pytest.mark.parametrize("changes, field", [
    ({"password": ""}, "password"),
    ({"password": "nothex" * 8}, "password"),
    ({"host": ""}, "host"),
    ({"extra": {"colony_name": ""}}, "colony_name"),
    ({"extra": {"tls": "maybe"}}, "tls"),
    ({"extra": {"s3_bucket": ""}}, "s3_bucket"),
    ({"extra": {"s3_endpoint": ""}}, "s3_endpoint"),  # an S3 secret without an endpoint is not "no S3"
    ({"extra": {"colonyname": "typo"}}, "colonyname"),
])
def test_bad_field_is_named(changes, field):
    with pytest.raises(ConfigError) as err:
        settings_from_connection(conn(**changes))
    assert repr(field) in str(err.value)
    assert PRVKEY not in str(err.value) and "very-secret-s3-key" not in str(err.value)


def test_s3_is_optional_as_a_whole():
    c = conn(extra={k: None for k in ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key")})
    assert settings_from_connection(c).s3 is None


def test_prefixed_extras_of_older_forms_are_accepted():
    doc = {"conn_type": "colonies", "host": "h", "password": PRVKEY, "extra": {"extra__colonies__colony_name": "x"}}
    assert settings_from_connection(Connection.from_json(json.dumps(doc), conn_id="c")).colony_name == "x"


def test_hook_reads_connection_from_env(monkeypatch):
    doc = {"conn_type": "colonies", "host": "h", "port": 7, "password": PRVKEY, "extra": {"colony_name": "c"}}
    monkeypatch.setenv("AIRFLOW_CONN_COLONIES_DEFAULT", json.dumps(doc))
    assert PollinatorHook().get_settings().port == 7


def test_test_connection_reports_failure_without_secrets(monkeypatch):
    doc = {"conn_type": "colonies", "host": "127.0.0.1", "port": 1, "password": PRVKEY, "extra": {"colony_name": "c"}}
    monkeypatch.setenv("AIRFLOW_CONN_COLONIES_DEFAULT", json.dumps(doc))
    ok, message = PollinatorHook().test_connection()
    assert not ok and "127.0.0.1" in message and PRVKEY not in message


def test_provider_info():
    info = get_provider_info()
    for key in ("package-name", "name", "description", "versions", "operators", "sensors", "triggers", "hooks",
                "connection-types", "extra-links", "task-decorators"):
        assert key in info, key
    ct = info["connection-types"][0]
    assert ct["connection-type"] == "colonies" and ct["hook-class-name"] == "pollinator_airflow.hooks.PollinatorHook"
    assert ct["conn-fields"]["s3_secret_key"]["schema"]["format"] == "password"
    assert info["task-decorators"] == [{"name": "pollinator",
                                        "class-name": "pollinator_airflow.decorators.pollinator_task"}]
    import importlib

    for entry in info["extra-links"]:
        module, _, cls = entry.rpartition(".")
        assert getattr(importlib.import_module(module), cls)
    import jsonschema
    from importlib.resources import files

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)


def test_ui_field_behaviour_matches_schema():
    import jsonschema
    from importlib.resources import files

    behaviour = PollinatorHook.get_ui_field_behaviour()
    schema = json.loads(files("airflow").joinpath("customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(behaviour, schema)
    assert "password" in behaviour["relabeling"]


def test_providers_manager_sees_us():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "pollinator" in pm.providers
    assert "colonies" in pm.hooks
    assert "pollinator" in pm.taskflow_decorators
    assert "pollinator_airflow.links.PollinatorProcessLink" in pm.extra_links_class_names
