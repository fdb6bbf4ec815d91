"""Configuration from ``BUS_`` environment variables (pydantic-settings), read once at the edge."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.topics import TopicNames

_REPO_ROOT = Path(__file__).resolve().parent.parent

#: Countries that publish by default: the Western Balkans, their neighbours on the route, and
#: the EU partners named in the seeds. Lower-case ISO 3166-1 alpha-2, ``xk`` for Kosovo.
DEFAULT_COUNTRIES = (
    "al", "at", "ba", "bg", "de", "fr", "gr", "hr", "hu", "me", "mk", "rs", "si", "xk",
)  # fmt: skip


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "balkan-alert-bus"


class BusSettings(BaseSettings):
    """Everything an operator can set, each from ``BUS_<NAME>``.

    >>> BusSettings(bootstrap_servers="kafka-1:9092").bootstrap_servers
    'kafka-1:9092'
    """

    model_config = SettingsConfigDict(env_prefix="BUS_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "balkan-alert-bus"
    #: Put before every topic name, e.g. ``staging.`` to share a cluster between environments.
    topic_prefix: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9_-]*\.)?$")

    schemas_dir: Path = _REPO_ROOT / "schemas"
    keys_dir: Path = Path("keys")
    agreements: Path = _REPO_ROOT / "examples" / "agreements.yaml"

    countries: tuple[str, ...] = DEFAULT_COUNTRIES

    # Broker calls: every one of them is bounded.
    request_timeout_ms: int = Field(default=10_000, gt=0)
    publish_timeout_ms: int = Field(default=30_000, gt=0)
    connect_timeout_ms: int = Field(default=15_000, gt=0)
    linger_ms: int = Field(default=5, ge=0)
    max_batch_size_bytes: int = Field(default=256 * 1024, gt=0)

    # Consumers.
    session_timeout_ms: int = Field(default=10_000, gt=0)
    max_poll_records: int = Field(default=500, gt=0)
    handler_retries: int = Field(default=3, ge=0)
    handler_retry_backoff_ms: int = Field(default=200, ge=0)

    # Topics created by ``bus topics apply``.
    topic_partitions: int = Field(default=3, gt=0)
    topic_replication_factor: int = Field(default=1, gt=0)
    ingress_retention_ms: int = Field(default=7 * 24 * 3600 * 1000)
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000)
    audit_retention_ms: int = Field(default=-1)  # the audit log is kept forever

    # The local broker started by ``bus kafka start``.
    kafka_version: str = "4.1.1"
    kafka_cache_dir: Path = Field(default_factory=default_cache_dir)
    kafka_data_dir: Path = Field(default_factory=lambda: default_cache_dir() / "kafka-data")
    kafka_port: int = Field(default=9092, gt=0, lt=65536)
    kafka_controller_port: int = Field(default=9093, gt=0, lt=65536)
    kafka_heap_mb: int = Field(default=768, gt=0)
    kafka_start_timeout_ms: int = Field(default=90_000, gt=0)

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
