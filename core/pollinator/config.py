"""Where to find the colony and its storage: one settings object for every entry point.

Read from the environment exactly as the Go CLI and pycolonies name things
(so one ``source``d env file serves all three), or built explicitly by the
Airflow hook and the Prefect block. Secrets are ``SecretStr`` so they never
show up in a repr, a log line or an exception.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pollinator.errors import ConfigError

if TYPE_CHECKING:
    from pollinator.colonies.client import AsyncColoniesClient, ColoniesClient

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: it must hold {what} (run `pollinator dev env` for a local colony)")
    return value


def _port(raw: str, name: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number: use an integer 1-65535") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={port} is out of range: use an integer 1-65535")
    return port


class S3Settings(BaseModel):
    """The S3 bucket where ColonyFS keeps file bytes."""

    model_config = ConfigDict(frozen=True)

    endpoint: str = Field(description="host:port of the S3 endpoint, without scheme (as AWS_S3_ENDPOINT)")
    access_key: SecretStr
    secret_key: SecretStr
    bucket: str
    region: str = "us-east-1"
    tls: bool = False
    skip_verify: bool = False

    @field_validator("endpoint")
    @classmethod
    def _strip_scheme(cls, value: str) -> str:
        value = value.strip()
        for scheme in ("http://", "https://"):
            if value.startswith(scheme):
                value = value[len(scheme):]
        value = value.rstrip("/")
        if not value:
            raise ValueError("endpoint is empty: give host:port of the S3 endpoint")
        if ":" in value and not value.endswith("]"):  # host:port (an IPv6 literal is [..]:port)
            port = value.rsplit(":", 1)[1]
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"endpoint {value!r} has no valid port: give host:port with a port 1-65535")
        return value

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    @property
    def host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0] if ":" in self.endpoint else self.endpoint

    @property
    def port(self) -> int:
        if ":" in self.endpoint:
            return int(self.endpoint.rsplit(":", 1)[1])
        return 443 if self.tls else 80

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "S3Settings":
        env = os.environ if env is None else env
        endpoint = _required(env, "AWS_S3_ENDPOINT", "host:port of the S3 endpoint")
        try:
            cls._strip_scheme(endpoint)  # checked on its own first, so the error names the variable
        except ValueError as exc:
            raise ConfigError(f"AWS_S3_ENDPOINT={endpoint!r} is not usable: {exc}") from None
        return cls(
            endpoint=endpoint,
            access_key=SecretStr(_required(env, "AWS_S3_ACCESSKEY", "the S3 access key")),
            secret_key=SecretStr(_required(env, "AWS_S3_SECRETKEY", "the S3 secret key")),
            bucket=_required(env, "AWS_S3_BUCKET", "the S3 bucket name"),
            region=env.get("AWS_S3_REGION_KEY", "").strip() or "us-east-1",
            tls=_bool(env, "AWS_S3_TLS"),
            skip_verify=_bool(env, "AWS_S3_SKIPVERIFY"),
        )


class Settings(BaseModel):
    """How to reach a colony: server, identity, storage."""

    model_config = ConfigDict(frozen=True)

    host: str = "localhost"
    port: int = 50080
    tls: bool = False
    skip_verify: bool = False
    colony_name: str
    prvkey: SecretStr = Field(description="the private key this client signs with")
    s3: Optional[S3Settings] = None
    dashboard_url: str = ""

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, *, need_s3: bool = False) -> "Settings":
        env = os.environ if env is None else env
        tls = _bool(env, "COLONIES_TLS") if "COLONIES_TLS" in env else _bool(env, "COLONIES_SERVER_TLS")
        s3 = None
        if need_s3 or env.get("AWS_S3_ENDPOINT"):
            s3 = S3Settings.from_env(env)
        prvkey = _required(env, "COLONIES_PRVKEY", "the private key to sign with (64 hex characters)")
        if len(prvkey) != 64 or any(c not in "0123456789abcdefABCDEF" for c in prvkey):
            raise ConfigError("COLONIES_PRVKEY is not a Colonies private key: it must be 64 hex characters")
        return cls(
            host=_required(env, "COLONIES_SERVER_HOST", "the Colonies server host name"),
            port=_port(env.get("COLONIES_SERVER_PORT", "50080"), "COLONIES_SERVER_PORT"),
            tls=tls,
            skip_verify=_bool(env, "COLONIES_SKIP_TLS_VERIFY") or _bool(env, "COLONIES_INSECURE"),
            colony_name=_required(env, "COLONIES_COLONY_NAME", "the colony name"),
            prvkey=SecretStr(prvkey),
            s3=s3,
            dashboard_url=env.get("COLONYOS_DASHBOARD_URL", "").strip(),
        )

    def require_s3(self) -> S3Settings:
        if self.s3 is None:
            raise ConfigError("no S3 storage is configured: set AWS_S3_ENDPOINT, AWS_S3_ACCESSKEY, "
                              "AWS_S3_SECRETKEY and AWS_S3_BUCKET (or the connection/block S3 fields)")
        return self.s3

    def client(self, **kwargs: Any) -> "ColoniesClient":
        """A sync client for this colony (``timeout``, ``retries`` may be given); close it when done."""
        from pollinator.colonies.client import ColoniesClient

        return ColoniesClient(self.host, self.port, self.prvkey.get_secret_value(), self.colony_name,
                              tls=self.tls, verify=not self.skip_verify, **kwargs)

    def async_client(self, **kwargs: Any) -> "AsyncColoniesClient":
        """An asyncio client for this colony; ``await client.aclose()`` when done."""
        from pollinator.colonies.client import AsyncColoniesClient

        return AsyncColoniesClient(self.host, self.port, self.prvkey.get_secret_value(), self.colony_name,
                                   tls=self.tls, verify=not self.skip_verify, **kwargs)

    def process_url(self, process_id: str) -> str:
        """Where a person can watch the process (empty when no dashboard is configured)."""
        if not self.dashboard_url:
            return ""
        return f"{self.dashboard_url.rstrip('/')}/process?processid={process_id}"
