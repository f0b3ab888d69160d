"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Kept free of Airflow and Pollinator imports: every Airflow process imports it
at start-up to list providers, so it must be cheap and must never fail.
The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``,
read by Airflow 3.2+ without importing the hook); ``hooks.PollinatorHook``
builds the legacy wtforms widgets for Airflow 3.0/3.1 from the same table.
"""

from __future__ import annotations

from typing import Any

from pollinator_airflow.version import __version__

CONN_TYPE = "colonies"
HOOK_CLASS = "pollinator_airflow.hooks.PollinatorHook"

#: Extra fields of a ``colonies`` connection: name -> (label, JSON schema, description).
#: Names are the keys the local colony writes into ``AIRFLOW_CONN_COLONIES_DEFAULT``.
EXTRA_FIELDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "colony_name": ("Colony name", {"type": ["string", "null"]}, "The colony to submit to (COLONIES_COLONY_NAME)."),
    "tls": ("TLS", {"type": ["boolean", "null"], "default": False}, "Use https for the Colonies server."),
    "s3_endpoint": ("S3 endpoint", {"type": ["string", "null"]}, "host:port of the ColonyFS S3 endpoint."),
    "s3_bucket": ("S3 bucket", {"type": ["string", "null"]}, "The ColonyFS bucket."),
    "s3_region": ("S3 region", {"type": ["string", "null"], "default": "us-east-1"}, "S3 region."),
    "s3_access_key": ("S3 access key", {"type": ["string", "null"]}, "S3 access key id."),
    "s3_secret_key": ("S3 secret key", {"type": ["string", "null"], "format": "password"}, "S3 secret key (masked)."),
    "s3_tls": ("S3 TLS", {"type": ["boolean", "null"], "default": False}, "Use https for the S3 endpoint."),
    "dashboard_url": ("Dashboard URL", {"type": ["string", "null"]},
                      "Base URL of the ColonyOS dashboard, for the 'ColonyOS process' link."),
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login", "extra"],
    "relabeling": {"host": "Colonies server host", "port": "Colonies server port", "password": "Private key"},
    "placeholders": {
        "host": "localhost",
        "port": "50080",
        "password": "64 hex characters: the key this Airflow signs with (masked)",
        "colony_name": "dev",
        "s3_endpoint": "localhost:9000",
        "s3_bucket": "pollinator",
        "dashboard_url": "https://dashboard.example.org",
    },
}


def _conn_fields() -> dict[str, Any]:
    return {name: {"label": label, "schema": schema, "description": desc}
            for name, (label, schema, desc) in EXTRA_FIELDS.items()}


def get_provider_info() -> dict[str, Any]:
    """What Airflow needs to find our hook, operators, trigger, sensor, link and ``@task.pollinator``."""
    integration = "ColonyOS"
    return {
        "package-name": "pollinator",
        "name": "Pollinator (ColonyOS)",
        "description": "Run Airflow steps as ColonyOS jobs on HPC (Slurm) and Kubernetes.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "external-doc-url": "https://colonyos.io",
                          "tags": ["service"]}],
        "operators": [{"integration-name": integration, "python-modules": ["pollinator_airflow.operators"]}],
        "sensors": [{"integration-name": integration, "python-modules": ["pollinator_airflow.sensors"]}],
        "triggers": [{"integration-name": integration, "python-modules": ["pollinator_airflow.triggers"]}],
        "hooks": [{"integration-name": integration, "python-modules": ["pollinator_airflow.hooks"]}],
        "connection-types": [{
            "connection-type": CONN_TYPE,
            "hook-class-name": HOOK_CLASS,
            "hook-name": "ColonyOS (Pollinator)",
            "conn-fields": _conn_fields(),
            "ui-field-behaviour": {
                "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
            },
        }],
        "extra-links": ["pollinator_airflow.links.PollinatorProcessLink"],
        "asset-uris": [{
            "schemes": ["colonyfs"],
            "handler": "pollinator_airflow.assets.sanitize_uri",
            "factory": "pollinator_airflow.assets.create_asset",
            "to_openlineage_converter": "pollinator_airflow.assets.convert_asset_to_openlineage",
        }],
        "task-decorators": [{"name": "pollinator", "class-name": "pollinator_airflow.decorators.pollinator_task"}],
    }
