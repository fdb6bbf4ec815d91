"""Configuration from ``BUS_`` environment variables (pydantic-settings), read once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
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

    # How clients authenticate (README, "Security"). A kit's client.properties
    # (BUS_CLIENT_CONFIG) fills in whatever the BUS_ variables below leave unset.
    client_config: Path | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = None
    #: Passwords of the principals that ``bus access apply`` manages (0700, files 0600).
    credentials_dir: Path = Field(default_factory=lambda: default_cache_dir() / "credentials")

    # Broker calls: every one of them is bounded.
    request_timeout_ms: int = Field(default=10_000, gt=0)
    publish_timeout_ms: int = Field(default=30_000, gt=0)
    connect_timeout_ms: int = Field(default=15_000, gt=0)
    linger_ms: int = Field(default=5, ge=0)
    max_batch_size_bytes: int = Field(default=256 * 1024, gt=0)
    #: Worker processes a publisher starts to prepare (validate, encode, sign) the alerts of a
    #: large ``publish_many`` alongside its own process; 0 prepares them all in that process.
    publish_workers: int = Field(default=0, ge=0, le=64)

    # Consumers.
    session_timeout_ms: int = Field(default=10_000, gt=0)
    max_poll_records: int = Field(default=500, gt=0)
    handler_retries: int = Field(default=3, ge=0)
    handler_retry_backoff_ms: int = Field(default=200, ge=0)

    # Topics created by ``bus topics apply``.
    topic_partitions: int = Field(default=3, gt=0)
    #: Unset: the cluster's configured default.replication.factor (min(3, brokers up) when it
    #: states none), asked of the cluster by ``bus topics apply``. ``min.insync.replicas`` is 2
    #: from three replicas on, else 1, never below the cluster's (``bus.admin.topic_replication``).
    topic_replication_factor: int | None = Field(default=None, gt=0)
    ingress_retention_ms: int = Field(default=7 * 24 * 3600 * 1000)
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000)
    audit_retention_ms: int = Field(default=-1)  # the audit log is kept forever

    # The fan-out.
    #: Where the fan-out keeps who received which alert: one SQLite file per running instance,
    #: rebuilt from ``bus.fanout.state`` at each start and deleted at the end. A local disk.
    fanout_state_dir: Path = Field(default_factory=lambda: default_cache_dir() / "fanout-state")

    # The local broker started by ``bus kafka start``.
    kafka_version: str = "4.1.1"
    kafka_cache_dir: Path = Field(default_factory=default_cache_dir)
    kafka_data_dir: Path = Field(default_factory=lambda: default_cache_dir() / "kafka-data")
    kafka_port: int = Field(default=9092, gt=0, lt=65536)
    #: The local broker's controller port: the one after ``kafka_port`` unless set, so that a
    #: second broker on one machine needs only ``BUS_KAFKA_PORT`` of its own.
    kafka_controller_port: int = Field(default=9093, gt=0, lt=65536)
    kafka_heap_mb: int = Field(default=768, gt=0)
    kafka_start_timeout_ms: int = Field(default=90_000, gt=0)
    #: ``bus kafka start --secure``: SASL_SSL (SCRAM-SHA-512) listener, ACLs enforced.
    kafka_secure: bool = False

    @model_validator(mode="before")
    @classmethod
    def _controller_port_follows_the_port(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("kafka_controller_port") is not None:
            return data
        try:
            port = int(data.get("kafka_port", 9092))
        except (TypeError, ValueError):
            return data  # the port's own validation names the problem
        return {**data, "kafka_controller_port": port + 1}

    @model_validator(mode="before")
    @classmethod
    def _client_config_fills_in(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("client_config"):
            return data
        from bus.access.credentials import ClientConfig

        config = ClientConfig.load(Path(data["client_config"]))
        found = {
            "bootstrap_servers": config.bootstrap_servers,
            "security_protocol": config.security_protocol,
            "sasl_mechanism": config.sasl_mechanism,
            "sasl_username": config.username,
            "sasl_password": config.password,
            "ssl_ca_file": config.ca_location,
        }
        return {**{k: v for k, v in found.items() if v is not None}, **data}

    @property
    def principal(self) -> str | None:
        """The SASL user this process connects as, or None without SASL."""
        return self.sasl_username if self.security_protocol.startswith("SASL") else None

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
