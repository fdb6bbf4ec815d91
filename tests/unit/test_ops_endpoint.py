"""The operator endpoint without Kafka: readiness as the service says, a taken port refused by
name, and the addresses ``bus status`` checks."""

from __future__ import annotations

import httpx
import pytest

from bus.errors import BusError
from bus.ops import AdapterMetrics, OpsServer, OpsSettings
from bus.ops.server import SPARE_PORTS, ops_endpoint
from bus.ops.settings import parse_address


async def test_readyz_follows_the_service_and_metrics_say_so_too() -> None:
    connected = False
    metrics = AdapterMetrics("rs", ready=lambda: connected)
    async with (
        OpsServer(metrics, host="127.0.0.1", port=0) as ops,
        httpx.AsyncClient(base_url=ops.url) as http,
    ):
        assert (await http.get("/healthz")).json()["status"] == "ok"
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"service": "adapter", "ready": False, "running": False}
        assert "bus_ready 0.0" in (await http.get("/metrics")).text
        connected = True
        assert (await http.get("/readyz")).status_code == 200
        metrics.handled("quarantined", 2)
        text = (await http.get("/metrics")).text
        assert "bus_ready 1.0" in text
        assert 'bus_adapter_records_total{origin="rs",outcome="quarantined"} 2.0' in text
        assert 'bus_dead_letters_total{stage="adapter"} 2.0' in text
        assert "_created" not in text


async def test_a_port_already_taken_stops_the_service_naming_the_setting() -> None:
    metrics = AdapterMetrics("rs", ready=lambda: True)
    async with OpsServer(metrics, host="127.0.0.1", port=0) as first:
        second = OpsServer(metrics, host="127.0.0.1", port=first.port, setting="BUS_X_PORT")
        with pytest.raises(BusError, match=rf"127\.0\.0\.1:{first.port}: .*set BUS_X_PORT"):
            await second.__aenter__()


async def test_a_second_instance_on_the_default_port_takes_the_next_free_one() -> None:
    metrics = AdapterMetrics("rs", ready=lambda: True)
    async with OpsServer(metrics, host="127.0.0.1", port=0) as first:
        # An operator's own port is used as given; the built-in default lets instances share
        # a machine: the next free port of the few that follow it.
        explicit = ops_endpoint(metrics, host="127.0.0.1", port=first.port, setting="BUS_X_PORT")
        with pytest.raises(BusError, match="set BUS_X_PORT"):
            await explicit.__aenter__()
        default = ops_endpoint(metrics, host="127.0.0.1", port=first.port, setting="BUS_X_PORT",
                               default=True)  # fmt: skip
        async with default as second:
            assert isinstance(second, OpsServer)
            assert first.port < second.port <= first.port + SPARE_PORTS
            async with httpx.AsyncClient(base_url=second.url) as http:
                assert (await http.get("/healthz")).json()["status"] == "ok"


def test_bus_status_checks_the_three_services_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("METRICS_HOST", "FANOUT_METRICS_PORT", "INDEX_METRICS_PORT",
                 "ADAPTER_METRICS_PORT", "STATUS_SERVICES"):  # fmt: skip
        monkeypatch.delenv(f"BUS_{name}", raising=False)
    assert OpsSettings().services() == {
        "fanout": "127.0.0.1:8490", "index": "127.0.0.1:8472", "adapter": "127.0.0.1:8480",
    }  # fmt: skip
    off = OpsSettings(metrics_host="0.0.0.0", index_metrics_port=0, adapter_metrics_port=9000)
    assert off.services() == {"fanout": "127.0.0.1:8490", "adapter": "127.0.0.1:9000"}
    named = OpsSettings(status_services={"fanout-1": "10.0.0.5:8491"})
    assert named.services() == {"fanout-1": "10.0.0.5:8491"}
    with pytest.raises(ValueError, match=r"BUS_STATUS_SERVICES\['x'\] must be HOST:PORT"):
        OpsSettings(status_services={"x": "10.0.0.5"})
    assert parse_address("[::1]:8490") == ("::1", 8490)
