"""The operator's view against the real broker: each service's ``/metrics`` counts what it did,
``/readyz`` turns ready, and ``bus status`` shows lag before the fan-out reads and none after."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bus import BusSettings
from bus.admin import read_audit
from bus.ops import OpsServer
from bus.policy import decide
from services.adapters.dropfolder import DropFolder
from services.fanout.service import FanoutService
from services.index.client import lookup_over_kafka
from services.index.store import IndexStore
from tests.conftest import REPO
from tests.factories import make_alert
from tests.integration.conftest import prefixed
from tests.integration.fanout_support import (
    AGREEMENTS as AGREEMENTS_FILE,
)
from tests.integration.fanout_support import (
    agreements_keys,
    fanout_settings,
    fanout_topics,
    load_example_agreements,
    publish_all,
    read_inboxes,
)
from tests.integration.index_support import PETROVIC, feed_samples, index_topics
from tests.integration.test_adapters import adapter, adapter_topics, break_rows
from tests.unit.test_adapters_countries import sample_feed

AGREEMENTS = load_example_agreements()
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def by_label(found: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(ls)[label]: v for (n, ls), v in found.items() if n == name}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_of(settings: BusSettings, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "BUS_TOPIC_PREFIX": settings.topic_prefix, "BUS_KEYS_DIR": str(settings.keys_dir),
        "BUS_AGREEMENTS": str(AGREEMENTS_FILE), "BUS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO), "COLUMNS": "200", **extra,
    }  # fmt: skip


async def bus_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``bus ARGS`` without blocking this loop (services of the test answer meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bus", *args, env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def bus_status(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = await bus_cli(env, "status", "--json", *args)
    assert out, err
    return code, {p["name"]: p for p in json.loads(out)["parts"]}


@pytest.fixture
async def fanout_env(settings: BusSettings, keys_dir: Path) -> BusSettings:
    s = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(s, AGREEMENTS)
    return s


async def test_fanout_metrics_count_what_was_delivered_denied_and_dead_lettered(
    fanout_env: BusSettings,
) -> None:
    settings = fanout_env
    alerts = [
        make_alert("irregular-crossing", "rs", tlp="AMBER"),
        make_alert("irregular-crossing", "rs", tlp="RED"),  # above every agreement
        make_alert("foreign-fighter-travel", "rs", tlp="RED", explicit_recipients=[]),
        make_alert("trafficking-arrest", "mk", tlp="GREEN"),
    ]
    await publish_all(settings, alerts)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:  # a record nobody signed, which the fan-out must dead-letter
        await producer.send_and_wait(settings.topics.ingress("rs", "irregular-crossing"), b"junk")
    finally:
        await producer.stop()

    # What the rules say each partner gets, and why each one that gets nothing does not.
    copies: Counter[str] = Counter()
    denials: Counter[str] = Counter()
    for alert in alerts:
        for d in decide(alert, AGREEMENTS, now=datetime.now(UTC)):
            if d.deliver:
                copies[d.partner_id] += 1
            elif not d.notice:
                denials[d.rule] += 1
    assert denials["red-needs-explicit"] > 0
    assert denials["tlp"] > 0
    assert denials["origin"] > 0

    service = FanoutService(settings)
    async with (
        OpsServer(service.metrics, host="127.0.0.1", port=0) as ops,
        httpx.AsyncClient(base_url=ops.url) as http,
    ):
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert (await http.get("/readyz")).status_code == 503  # not routing yet
        task = asyncio.create_task(service.run())
        try:

            async def caught_up() -> bool:
                ready = await http.get("/readyz")
                stats = service.stats
                done = stats.alerts + stats.dead_lettered >= len(alerts) + 1
                return ready.status_code == 200 and done and ready.json()["lag"] == 0

            await until(caught_up, "the fan-out to route everything and report no lag")
            found = samples((await http.get("/metrics")).text)
            readyz = (await http.get("/readyz")).json()
        finally:
            service.stop()
            await asyncio.wait_for(task, 60)

    inboxes = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=copies.total())
    delivered = {p: float(len(records)) for p, records in inboxes.items()}
    assert by_label(found, "bus_copies_delivered_total", "partner") == delivered
    assert delivered == {p: float(copies[p]) for p in AGREEMENTS.partners}
    assert {r: n for r, n in by_label(found, "bus_denials_total", "reason").items() if n} == {
        r: float(n) for r, n in denials.items()
    }
    assert by_label(found, "bus_dead_letters_total", "stage") == {"decode": 1.0}
    assert value(found, "bus_alerts_in_total", origin="rs", alert_type="irregular-crossing") == 3
    assert value(found, "bus_alerts_in_total", origin="mk", alert_type="trafficking-arrest") == 1
    assert (
        value(found, "bus_alerts_in_total", origin="rs", alert_type="foreign-fighter-travel") == 1
    )
    audit = await read_audit(settings)  # one record per alert, holding every decision for it
    assert len(audit) == len(alerts)
    assert sum(len(record["decisions"]) for record in audit) == len(alerts) * len(
        AGREEMENTS.partners
    )
    heads = by_label(found, "bus_audit_head", "chain")  # one chain per shard
    assert heads
    assert all(chain.startswith(settings.topics.audit + "/") for chain in heads)
    assert sum(heads.values()) == len(audit)
    assert value(found, "bus_fanout_transaction_seconds_count") >= 1
    assert value(found, "bus_ready") == 1
    lags = {(dict(ls)["topic"], dict(ls)["partition"]): v
            for (n, ls), v in found.items() if n == "bus_consumer_lag"}  # fmt: skip
    assert (settings.topics.ingress("rs", "irregular-crossing"), "0") in lags
    assert set(lags.values()) == {0.0}
    assert readyz["ready"] is True
    assert readyz["partitions"] == len(lags)


async def test_bus_status_shows_the_fanout_behind_then_caught_up(fanout_env: BusSettings) -> None:
    settings = fanout_env
    alerts = [make_alert("irregular-crossing", "rs", tlp="AMBER") for _ in range(7)]
    await publish_all(settings, alerts)
    port = free_port()
    env = env_of(settings, BUS_STATUS_SERVICES=json.dumps({"fanout": f"127.0.0.1:{port}"}),
                 BUS_DATA_DIR=str(Path(settings.keys_dir).parent / "no-index"))  # fmt: skip

    # Nothing read yet: every published alert is lag, and the fan-out is down.
    code, parts = await bus_status(env)
    assert code == 3
    assert parts["kafka"]["state"] == "ok"
    assert parts["fan-out lag"].get("lag") == len(alerts), parts["fan-out lag"]
    topic = settings.topics.ingress("rs", "irregular-crossing")
    assert sum(parts["fan-out lag"]["lag_by_topic"][topic].values()) == len(alerts)
    assert parts["fanout"]["state"] == "down"
    assert parts["index lag"]["state"] == "unknown"

    service = FanoutService(settings)
    async with OpsServer(service.metrics, host="127.0.0.1", port=port):
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: _routed(service, len(alerts)), "the fan-out to route")

            async def no_lag() -> bool:
                code, parts = await bus_status(env)
                return code == 0 and parts["fan-out lag"]["lag"] == 0

            await until(no_lag, "bus status to show no lag")
            assert parts_ready(await bus_status(env), "fanout")
            code, table, errors = await bus_cli(env, "status")
            assert code == 0, errors
            assert "fan-out" in table
            assert "ready" in table
            assert table.splitlines()[-1] == "healthy"
        finally:
            service.stop()
            await asyncio.wait_for(task, 60)

    # The service gone: its row says so, without a traceback, and the exit code is 3.
    code, table, errors = await bus_cli(env, "status")
    assert code == 3
    assert "Traceback" not in table + errors
    assert table.splitlines()[-1] == "unhealthy: fanout down"


async def _routed(service: FanoutService, count: int) -> bool:
    return service.stats.alerts >= count


def parts_ready(result: tuple[int, dict[str, Any]], name: str) -> bool:
    return result[1][name]["state"] == "ready"


async def test_bus_status_says_kafka_is_down_without_a_traceback(settings: BusSettings) -> None:
    env = env_of(settings, BUS_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
                 BUS_CONNECT_TIMEOUT_MS="2000", BUS_REQUEST_TIMEOUT_MS="2000",
                 BUS_STATUS_SERVICES="{}", BUS_FANOUT_METRICS_PORT=str(free_port()),
                 BUS_INDEX_METRICS_PORT="0", BUS_ADAPTER_METRICS_PORT="0")  # fmt: skip
    code, parts = await bus_status(env)
    assert code == 3
    assert parts["kafka"]["state"] == "down"
    assert parts["fanout"]["state"] == "down"


async def test_index_serves_its_metrics_and_turns_ready_once_caught_up(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    await index_topics(settings, load_example_agreements())
    topics = await feed_samples(settings, tmp_path, "rs", "gr")
    port = free_port()
    data = tmp_path / "index"
    env = env_of(settings, BUS_DATA_DIR=str(data),
                 BUS_STATUS_SERVICES=json.dumps({"index": f"127.0.0.1:{port}"}))  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bus", "index", "run", "--no-http", "--metrics-port", str(port),
        env=env, cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def ready() -> bool:
                assert proc.returncode is None, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready, "the index to catch up and be ready")
            found = samples((await http.get("/metrics")).text)
            records = await _ingress_count(settings, topics)
            assert value(found, "bus_index_records_total") == records > 0
            assert value(found, "bus_index_records_rejected_total") == 0
            entries = IndexStore.entry_count(data / "index.sqlite3")
            assert value(found, "bus_index_entries") == entries > 0
            assert set(by_label(found, "bus_consumer_lag", "topic").values()) == {0.0}
            chain = settings.topic_prefix + "bus.audit.lookups"
            assert value(found, "bus_audit_head", chain=chain) == 0

            answer = await lookup_over_kafka(settings, "europol", [PETROVIC], timeout_s=60)
            assert answer.results[0].hit

            async def counted() -> bool:
                found = samples((await http.get("/metrics")).text)
                return value(found, "bus_index_lookups_total", channel="kafka") == 1

            await until(counted, "the lookup to be counted")
            found = samples((await http.get("/metrics")).text)
            assert value(found, "bus_index_lookup_tokens_total", channel="kafka") == 1
            assert value(found, "bus_index_lookup_hits_total", channel="kafka") == 1
            assert value(found, "bus_audit_head", chain=chain) == 1

        code, parts = await bus_status(env)
        assert code == 0, parts
        assert parts["index lag"].get("lag") == 0, parts["index lag"]
        assert parts["index lag"]["state"] == "ok"
        assert parts["index lag"]["detail"] == "offsets in its database"
        assert parts["index"]["state"] == "ready"
        assert parts["kafka"]["state"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def _ingress_count(settings: BusSettings, topics: list[str]) -> int:
    from tests.integration.test_adapters import read_all

    return len(await read_all(settings, topics))


async def test_adapter_metrics_count_files_and_records_published_and_quarantined(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    await adapter_topics(settings, "rs")
    drop = tmp_path / "drop"
    drop.mkdir()
    data, broken = break_rows(sample_feed("rs").read_text("utf-8"))
    (drop / "mixed.csv").write_bytes(data)
    (drop / "notes.txt").write_text("not a feed")  # the wrong kind of file: quarantined whole

    async with (
        adapter(settings, "rs", batch_size=7) as a,
        OpsServer(a.metrics, host="127.0.0.1", port=0) as ops,
        httpx.AsyncClient(base_url=ops.url) as http,
        DropFolder(a, drop) as folder,
    ):
        assert (await http.get("/readyz")).json() == {"service": "adapter", "ready": True,
                                                      "running": True}  # fmt: skip
        outcomes = {o.name: o for o in await folder.scan_once()}
        found = samples((await http.get("/metrics")).text)
    published, quarantined = outcomes["mixed.csv"].published, len(broken)
    assert published > 0
    assert outcomes["mixed.csv"].quarantined == quarantined
    assert value(found, "bus_adapter_records_total", origin="rs", outcome="published") == published
    assert (
        value(found, "bus_adapter_records_total", origin="rs", outcome="quarantined")
        == quarantined + 1  # and the whole file
    )
    assert value(found, "bus_dead_letters_total", stage="adapter") == quarantined + 1
    assert value(found, "bus_adapter_files_total", origin="rs", outcome="done") == 1
    assert value(found, "bus_adapter_files_total", origin="rs", outcome="quarantined") == 1
    assert value(found, "bus_ready") == 1
