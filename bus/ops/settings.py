"""Where the services serve their operator endpoints, and what ``bus status`` looks at.

    BUS_METRICS_HOST=0.0.0.0             # every service's /metrics, /healthz and /readyz
    BUS_FANOUT_METRICS_PORT=8490         # fan-out instance i serves on 8490 + i
    BUS_INDEX_METRICS_PORT=8472
    BUS_ADAPTER_METRICS_PORT=8480        # one adapter per port: give a second one its own
    BUS_STATUS_SERVICES='{"fanout": "10.0.0.5:8490", "adapter-rs": "10.0.0.7:8480"}'

A port of 0 turns a service's endpoint off.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FANOUT_METRICS_PORT = 8490
INDEX_METRICS_PORT = 8472
ADAPTER_METRICS_PORT = 8480


class OpsSettings(BaseSettings):
    """The operator endpoints' addresses, each from ``BUS_<NAME>``.

    >>> OpsSettings(fanout_metrics_port=9000).fanout_metrics_port
    9000
    """

    model_config = SettingsConfigDict(env_prefix="BUS_", frozen=True, extra="ignore")

    #: The address every service's operator endpoint listens on (loopback unless opened up).
    metrics_host: str = "127.0.0.1"
    #: ``bus fanout run``; a second instance on one machine needs ``--metrics-port`` of its own.
    fanout_metrics_port: int = Field(default=FANOUT_METRICS_PORT, ge=0, lt=65536)
    #: ``bus index run`` (its lookup API keeps ``BUS_LOOKUP_HTTP_PORT``).
    index_metrics_port: int = Field(default=INDEX_METRICS_PORT, ge=0, lt=65536)
    #: ``bus adapter run`` (not with ``--once``).
    adapter_metrics_port: int = Field(default=ADAPTER_METRICS_PORT, ge=0, lt=65536)
    #: What ``bus status`` asks for health: name → ``host:port``. Empty: the three services
    #: above at their configured ports on ``metrics_host``.
    status_services: dict[str, str] = Field(default_factory=dict)

    @field_validator("status_services")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            parse_address(address, what=f"BUS_STATUS_SERVICES[{name!r}]")
        return value

    def services(self) -> dict[str, str]:
        """The endpoints ``bus status`` checks, by name."""
        if self.status_services:
            return dict(self.status_services)
        host = "127.0.0.1" if self.metrics_host in ("0.0.0.0", "::", "") else self.metrics_host
        ports = {
            "fanout": self.fanout_metrics_port,
            "index": self.index_metrics_port,
            "adapter": self.adapter_metrics_port,
        }
        return {name: f"{host}:{port}" for name, port in ports.items() if port}


def parse_address(text: str, *, what: str = "address") -> tuple[str, int]:
    """``host:port`` → (host, port); a ``ValueError`` names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT such as 127.0.0.1:8490, got {text!r}")
    return host.strip("[]"), int(port)
