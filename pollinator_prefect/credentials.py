"""The ``ColonyOSCredentials`` block: where a colony and its bucket are, stored once in Prefect.

Like prefect-aws' ``AwsCredentials`` the block only *holds* connection data;
unlike it there is no client factory zoo: :meth:`get_settings` turns the
block into the core's :class:`pollinator.config.Settings`, which is the one
thing every Pollinator job needs. Reading the environment is delegated to
``Settings.from_env`` so the block, the CLI, the Airflow hook and the Go tools
agree on every variable name (``source <(pollinator dev env)`` fills them).

The private key and the S3 secret key are ``SecretStr``: Prefect stores
them encrypted, and neither a repr, a log line nor a validation error ever
shows them (``hide_input_in_errors``).
"""

from __future__ import annotations

import string
from typing import Mapping, Optional

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from pollinator.config import S3Settings, Settings
from pollinator.errors import ConfigError

_HEX = set(string.hexdigits)
_S3_FIELDS = ("s3_endpoint", "s3_bucket", "s3_access_key", "s3_secret_key")


def _missing_s3(block: "ColonyOSCredentials") -> list[str]:
    """The S3 fields left empty when some are given (none missing when all or none are given)."""
    given = {name: bool(getattr(block, name)) for name in _S3_FIELDS}
    if isinstance(block.s3_secret_key, SecretStr):
        given["s3_secret_key"] = bool(block.s3_secret_key.get_secret_value())
    if not any(given.values()):
        return []
    return [name for name, ok in given.items() if not ok]


class ColonyOSCredentials(Block):
    """Connects Prefect tasks to a ColonyOS colony and the S3 bucket its ColonyFS uses.

    Examples:
        Load stored credentials and hand them to a Pollinator task:
        ```python
        from pollinator_prefect import ColonyOSCredentials, pollinator_task

        colonyos_credentials = ColonyOSCredentials.load("BLOCK_NAME")

        @pollinator_task(executor_names=["dev-hpc"], credentials=colonyos_credentials)
        def train(epochs: int) -> float:
            return 0.1 * epochs
        ```

        Or build the block from the environment `pollinator dev env` prints:
        ```python
        from pollinator_prefect import ColonyOSCredentials

        ColonyOSCredentials.from_env().save("dev-colony")
        ```
    """

    _block_type_name = "ColonyOS Credentials"
    _block_type_slug = "colonyos-credentials"
    _logo_url = "https://github.com/colonyos.png"  # type: ignore[assignment]  # pydantic coerces to HttpUrl
    _documentation_url = "https://github.com/colonyos/pollinator/blob/main/docs/prefect.md"  # type: ignore[assignment]

    # a wrong private key must not be echoed back inside a ValidationError
    model_config = ConfigDict(hide_input_in_errors=True)

    host: str = Field(default="localhost", title="Server host",
                      description="Host name of the Colonies server.")
    port: int = Field(default=50080, ge=1, le=65535, title="Server port",
                      description="TCP port of the Colonies server.")
    tls: bool = Field(default=False, title="TLS", description="Whether the Colonies server speaks HTTPS.")
    skip_verify: bool = Field(default=False, title="Skip TLS verification",
                              description="Accept a self-signed server certificate (test colonies only).")
    colony_name: str = Field(title="Colony name", description="Name of the colony the jobs are submitted to.")
    private_key: SecretStr = Field(
        title="Private key",
        description="The 64-hex-character private key this client signs its requests with.")
    s3_endpoint: str = Field(default="", title="S3 endpoint",
                             description="host:port of the S3 endpoint holding ColonyFS bytes; empty for none.")
    s3_bucket: str = Field(default="", title="S3 bucket", description="Name of the ColonyFS bucket.")
    s3_region: str = Field(default="us-east-1", title="S3 region", description="Region of the S3 bucket.")
    s3_access_key: str = Field(default="", title="S3 access key", description="Access key id for the bucket.")
    s3_secret_key: Optional[SecretStr] = Field(default=None, title="S3 secret key",
                                               description="Secret access key for the bucket.")
    s3_tls: bool = Field(default=False, title="S3 TLS", description="Whether the S3 endpoint speaks HTTPS.")
    s3_skip_verify: bool = Field(default=False, title="S3 skip TLS verification",
                                 description="Accept a self-signed S3 certificate (test endpoints only).")
    dashboard_url: str = Field(default="", title="Dashboard URL",
                               description="Base URL of the ColonyOS dashboard, used to link process pages.")

    @field_validator("private_key")
    @classmethod
    def _check_private_key(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if len(raw) != 64 or not set(raw) <= _HEX:
            raise ValueError("private_key is not a Colonies private key: it must be 64 hex characters")
        return value

    @model_validator(mode="after")
    def _s3_all_or_nothing(self) -> "ColonyOSCredentials":
        """A partial S3 set would silently mean "no S3" (and every sync would fail later): refuse it here."""
        missing = _missing_s3(self)
        if missing:
            raise ValueError(f"the S3 fields are partly filled: {', '.join(missing)} missing. Fill in all of "
                             f"{', '.join(_S3_FIELDS)}, or clear them all for a colony without ColonyFS")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> "ColonyOSCredentials":
        """The block holding exactly what ``settings`` holds (nothing is lost on a round trip)."""
        s3 = settings.s3
        return cls(
            host=settings.host, port=settings.port, tls=settings.tls, skip_verify=settings.skip_verify,
            colony_name=settings.colony_name, private_key=settings.prvkey,
            s3_endpoint=s3.endpoint if s3 else "", s3_bucket=s3.bucket if s3 else "",
            s3_region=s3.region if s3 else "us-east-1",
            s3_access_key=s3.access_key.get_secret_value() if s3 else "",
            s3_secret_key=s3.secret_key if s3 else None,
            s3_tls=s3.tls if s3 else False, s3_skip_verify=s3.skip_verify if s3 else False,
            dashboard_url=settings.dashboard_url)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ColonyOSCredentials":
        """Credentials from ``COLONIES_*`` / ``AWS_S3_*`` (the names ``pollinator dev env`` prints).

        Parsing is ``Settings.from_env``'s, so a missing or malformed variable
        raises the same :class:`~pollinator.errors.ConfigError` the CLI shows.
        """
        return cls.from_settings(Settings.from_env(env))

    def get_settings(self) -> Settings:
        """The core settings every Pollinator job runs with."""
        return Settings(
            host=self.host, port=self.port, tls=self.tls, skip_verify=self.skip_verify,
            colony_name=self.colony_name, prvkey=self.private_key, s3=self._s3(),
            dashboard_url=self.dashboard_url)

    def _s3(self) -> Optional[S3Settings]:
        missing = _missing_s3(self)
        if missing:  # a block changed after validation (validate_assignment is off)
            raise ConfigError(f"ColonyOSCredentials: the S3 fields are partly filled: {', '.join(missing)} "
                              f"missing. Fill in all of {', '.join(_S3_FIELDS)}, or clear them all")
        if not self.s3_endpoint:
            return None
        assert self.s3_secret_key is not None
        return S3Settings(endpoint=self.s3_endpoint, bucket=self.s3_bucket, region=self.s3_region or "us-east-1",
                          access_key=SecretStr(self.s3_access_key), secret_key=self.s3_secret_key,
                          tls=self.s3_tls, skip_verify=self.s3_skip_verify)
