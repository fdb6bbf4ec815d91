"""Settings of the index and statistics service, from ``BUS_`` variables like the rest of the bus.

    BUS_DATA_DIR=/var/lib/balkan-alert-bus        # where index.sqlite3 lives
    BUS_LOOKUP_HTTP_TOKENS='{"europol": "<bearer token of Europol's system>"}'
    BUS_STATS_MIN_CELL=3

The HTTP tokens are secrets, held as ``SecretStr`` and never logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.settings import default_cache_dir

#: The topic of the lookup audit chain: one partition, one chain (``bus audit verify`` checks it).
LOOKUP_AUDIT_TOPIC = "bus.audit.lookups"


class IndexSettings(BaseSettings):
    """Everything the index operator can set, each from ``BUS_<NAME>``.

    >>> IndexSettings(stats_min_cell=5).stats_min_cell
    5
    """

    model_config = SettingsConfigDict(env_prefix="BUS_", frozen=True, extra="ignore")

    #: The directory of the embedded database (``index.sqlite3``).
    data_dir: Path = Field(default_factory=lambda: default_cache_dir() / "data")
    #: Cells of a statistic above zero but below this are suppressed in every output.
    stats_min_cell: int = Field(default=3, ge=1)
    #: Bearer token per requester (partner id) for ``POST /v1/lookup``, as JSON.
    lookup_http_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    lookup_http_host: str = "127.0.0.1"
    #: Port of the lookup HTTP API; 0 turns it off.
    lookup_http_port: int = Field(default=8475, ge=0, lt=65536)
    #: Ingress records folded into the database per transaction, at most.
    index_max_batch: int = Field(default=2000, gt=0)
    #: Processes that decode and verify ingress beside the service's own (which writes the
    #: database and answers lookups); 0 does everything in the service's process.
    index_workers: int = Field(default=2, ge=0, le=64)

    @property
    def database(self) -> Path:
        return self.data_dir / "index.sqlite3"


def lookup_requests_topic(prefix: str, requester: str) -> str:
    """Where ``requester`` writes lookup requests; only it may write there (ACL on the prefix)."""
    return f"{prefix}lookup.{requester}.requests"


def lookup_answers_topic(prefix: str, requester: str) -> str:
    """Where the bus answers ``requester``; only it may read there."""
    return f"{prefix}lookup.{requester}.answers"


def lookup_requests_pattern(prefix: str) -> str:
    return "^" + prefix.replace(".", r"\.") + r"lookup\.[a-z0-9][a-z0-9-]*\.requests$"


def requester_of(prefix: str, topic: str) -> str | None:
    head, tail = f"{prefix}lookup.", ".requests"
    if topic.startswith(head) and topic.endswith(tail) and len(topic) > len(head + tail):
        return topic[len(head) : -len(tail)]
    return None
