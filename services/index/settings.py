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
