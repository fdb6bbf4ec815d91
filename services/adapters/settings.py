"""Adapter configuration from ``BUS_ADAPTER_*`` variables and the identity key ``BUS_IDENTITY_KEY``.

    BUS_IDENTITY_KEY=<at least 32 characters, the same for every adapter of the bus>
    BUS_ADAPTER_HTTP_TOKENS='{"rs": "<token of Serbia's system>"}'
    BUS_ADAPTER_BATCH_SIZE=200

The identity key and the tokens are secrets: they are held as ``SecretStr`` and never logged.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A key for demos and tests only. Tokens made with it are not secret: anyone can recompute them.
DEV_IDENTITY_KEY = "balkan-alert-bus-development-identity-key--not-secret"

MIN_IDENTITY_KEY_CHARS = 32


class AdapterSettings(BaseSettings):
    """Everything an adapter operator can set, each from ``BUS_ADAPTER_<NAME>``.

    >>> AdapterSettings(batch_size=50).batch_size
    50
    """

    model_config = SettingsConfigDict(
        env_prefix="BUS_ADAPTER_", frozen=True, extra="ignore", populate_by_name=True
    )

    #: HMAC key of ``identity_token``: shared by every adapter so tokens match across countries.
    identity_key: SecretStr | None = Field(default=None, validation_alias="BUS_IDENTITY_KEY")
    #: Bearer token per country for the HTTP endpoint, as JSON: ``{"rs": "…", "mk": "…"}``.
    http_tokens: dict[str, SecretStr] = Field(default_factory=dict)

    #: Records published per acknowledged batch; also the most that a crash can send twice.
    batch_size: int = Field(default=200, gt=0, le=10_000)
    #: Publishing pace, to spread a backlog of files over time; 0 means as fast as Kafka takes.
    max_records_per_second: float = Field(default=0, ge=0)

    #: How often the drop folder is looked at.
    poll_interval_ms: int = Field(default=1000, gt=0)
    #: A file is read once its size and time stamp stayed the same this long (writers that do
    #: not write to a temporary name and rename).
    settle_ms: int = Field(default=1000, ge=0)
    #: Pause after a failed file (e.g. Kafka down) before it is tried again.
    retry_backoff_ms: int = Field(default=5000, ge=0)

    # Limits against hostile or broken input.
    max_file_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_field_chars: int = Field(default=4096, gt=0)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_records_per_request: int = Field(default=1000, gt=0)
    #: An alert that encodes to more is set aside: Kafka's default ``message.max.bytes`` is
    #: 1 MiB, and a record the broker refuses would otherwise hold its file back for ever.
    max_alert_bytes: int = Field(default=1_000_000, gt=0)
