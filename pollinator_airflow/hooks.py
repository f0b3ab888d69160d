"""``PollinatorHook``: an Airflow ``colonies`` connection -> ``pollinator.config.Settings``.

Everything else (submitting, following, syncing) lives in ``pollinator.run``;
the hook only knows how Airflow stores a colony's address and keys.

A ``colonies`` connection: ``host``, ``port``, ``password`` = the private key
the client signs with, and extras ``colony_name``, ``tls``, ``s3_endpoint``,
``s3_bucket``, ``s3_region``, ``s3_access_key``, ``s3_secret_key``, ``s3_tls``,
``dashboard_url`` (what ``pollinator dev`` writes as
``AIRFLOW_CONN_COLONIES_DEFAULT``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

from airflow.sdk import BaseHook

from pollinator_airflow.provider import CONN_TYPE, EXTRA_FIELDS, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from pollinator.colonies.models import Process
    from pollinator.config import Settings

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _mask(value: str) -> None:
    """Register a secret with Airflow's log masker (a no-op where no masker is configured)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        return
    mask_secret(value)


def _as_bool(value: Any, field: str, conn_id: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(conn_id, field, f"{value!r} is not a boolean: use true or false")


def _bad(conn_id: str, field: str, why: str) -> Exception:
    from pollinator.errors import ConfigError

    return ConfigError(f"Airflow connection {conn_id!r}: field {field!r} {why}")


def settings_from_connection(conn: "Connection") -> "Settings":
    """Build core settings from a connection; a bad or missing field is named in the error.

    Pure function (no Airflow lookups), so the operator, the trigger and the
    tests share exactly one translation.
    """
    from pydantic import SecretStr, ValidationError

    from pollinator.config import S3Settings, Settings

    conn_id = conn.conn_id or CONN_TYPE
    prefix = f"extra__{CONN_TYPE}__"  # forms of older Airflow versions stored prefixed keys
    extra = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in (conn.extra_dejson or {}).items()}
    unknown = sorted(set(extra) - set(EXTRA_FIELDS))
    if unknown:
        raise _bad(conn_id, unknown[0], f"is not a colonies connection field (known extras: {', '.join(EXTRA_FIELDS)})")

    prvkey = (conn.password or "").strip()
    if not prvkey:
        raise _bad(conn_id, "password", "is empty: it must hold the private key to sign with (64 hex characters)")
    if len(prvkey) != 64 or any(c not in "0123456789abcdefABCDEF" for c in prvkey):
        raise _bad(conn_id, "password", "is not a Colonies private key: it must be 64 hex characters")
    _mask(prvkey)
    host = (conn.host or "").strip()
    if not host:
        raise _bad(conn_id, "host", "is empty: give the Colonies server host name")
    port = conn.port or 50080
    if not 0 < int(port) < 65536:
        raise _bad(conn_id, "port", f"{port} is out of range: use an integer 1-65535")
    colony = str(extra.get("colony_name") or "").strip()
    if not colony:
        raise _bad(conn_id, "colony_name", "is empty: give the colony name (extra field colony_name)")

    s3 = None
    s3_given = {k: extra.get(k) for k in ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key")}
    if any(s3_given.values()):
        for name, value in s3_given.items():
            if not value:
                raise _bad(conn_id, name, "is empty, but the other S3 fields are set: give all of s3_endpoint, "
                                          "s3_bucket, s3_access_key and s3_secret_key, or none")
        secret = str(s3_given["s3_secret_key"])
        _mask(secret)
        try:
            s3 = S3Settings(endpoint=str(s3_given["s3_endpoint"]), bucket=str(s3_given["s3_bucket"]),
                            access_key=SecretStr(str(s3_given["s3_access_key"])), secret_key=SecretStr(secret),
                            region=str(extra.get("s3_region") or "us-east-1"),
                            tls=_as_bool(extra.get("s3_tls"), "s3_tls", conn_id))
        except ValidationError as exc:
            raise _bad(conn_id, "s3_" + str(exc.errors()[0]["loc"][0]), exc.errors()[0]["msg"]) from None
    return Settings(host=host, port=int(port), tls=_as_bool(extra.get("tls"), "tls", conn_id), colony_name=colony,
                    prvkey=SecretStr(prvkey), s3=s3, dashboard_url=str(extra.get("dashboard_url") or "").strip())


class PollinatorHook(BaseHook):
    """Resolve a ``colonies`` connection into the settings every Pollinator call takes."""

    conn_name_attr = "colonies_conn_id"
    default_conn_name = "colonies_default"
    conn_type = CONN_TYPE
    hook_name = "ColonyOS (Pollinator)"

    def __init__(self, colonies_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.colonies_conn_id = colonies_conn_id
        self._settings: Optional["Settings"] = None

    def __repr__(self) -> str:
        return f"PollinatorHook(colonies_conn_id={self.colonies_conn_id!r})"

    # -- connection form (Airflow 3.0/3.1; 3.2+ reads the same table from provider info) --------------
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, PasswordField, StringField

        widgets: dict[str, Any] = {}
        for name, (label, schema, desc) in EXTRA_FIELDS.items():
            if "boolean" in schema["type"]:
                widgets[name] = BooleanField(lazy_gettext(label), description=desc, default=False)
            elif schema.get("format") == "password":
                widgets[name] = PasswordField(lazy_gettext(label), widget=BS3PasswordFieldWidget(), description=desc)
            else:
                widgets[name] = StringField(lazy_gettext(label), widget=BS3TextFieldWidget(), description=desc)
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {key: (list(value) if isinstance(value, list) else dict(value))
                for key, value in UI_FIELD_BEHAVIOUR.items()}

    # -- settings ---------------------------------------------------------------------------------------
    def get_settings(self) -> "Settings":
        """The connection as core settings (cached per hook); ``ConfigError`` names a bad field."""
        if self._settings is None:
            self._settings = settings_from_connection(self.get_connection(self.colonies_conn_id))
        return self._settings

    async def aget_settings(self) -> "Settings":
        """Same, without blocking the triggerer's event loop."""
        if self._settings is None:
            getter = getattr(self, "aget_connection", None)
            if getter is not None:
                conn = await getter(self.colonies_conn_id)
            else:  # pragma: no cover - task SDKs without aget_connection
                conn = await asyncio.to_thread(self.get_connection, self.colonies_conn_id)
            self._settings = settings_from_connection(conn)
        return self._settings

    def get_conn(self) -> "Settings":
        return self.get_settings()

    # -- small reads the operator and sensor need -----------------------------------------------------
    def get_process(self, process_id: str) -> "Process":
        """The process record (state, errors, output) of one process."""
        with self.get_settings().client() as client:
            return client.get_process(process_id)

    def get_state(self, process_id: str) -> str:
        """``SUCCESS``/``FAILED``/``CANCELLED``/``WAITING``/``RUNNING`` of one process."""
        from pollinator.colonies.models import ProcessState

        return ProcessState(self.get_process(process_id).state).name

    def cancel(self, process_id: str) -> None:
        """Cancel a remote process through the run pipeline (idempotent)."""
        from pollinator.run import ProcessHandle

        with ProcessHandle.attach(self.get_settings(), process_id) as handle:
            handle.cancel()

    def process_url(self, process_id: str) -> str:
        return self.get_settings().process_url(process_id)

    def test_connection(self) -> tuple[bool, str]:
        """Make one real signed call (getcolonymsg): proves host, port, TLS, key and colony membership."""
        try:
            settings = self.get_settings()
            with settings.client(retries=0) as client:
                colony = client.get_colony(settings.colony_name)
            name = getattr(colony, "name", "") or settings.colony_name
            return True, f"Connected to colony {name!r} at {settings.host}:{settings.port}"
        except Exception as exc:  # the UI shows the message; secrets never enter it (SecretStr, masker)
            return False, f"{type(exc).__name__}: {exc}"
