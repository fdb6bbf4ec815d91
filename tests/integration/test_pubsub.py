"""Publish and subscribe against the real broker: every alert once, equal to what was sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from bus import (
    BusSettings,
    OriginMismatch,
    Publisher,
    PublishTimeout,
    ReceivedAlert,
    Subscriber,
    ValidationError,
)
from bus.errors import KafkaError
from bus.kafka.local import LocalKafka
from bus.models import ALERT_TYPES
from tests.conftest import unique
from tests.factories import example_json, make_alert, mixed_alerts
from tests.integration.conftest import _free_port, create_topics, prefixed


async def ingress_topics(settings: BusSettings, origins: tuple[str, ...]) -> list[str]:
    names = [settings.topics.ingress(o, t) for o in origins for t in ALERT_TYPES]
    await create_topics(settings, *names, settings.topics.dlq)
    return names


async def collect_until(
    settings: BusSettings, topics: list[str], count: int, timeout_s: float = 60
) -> list[ReceivedAlert]:
    received: list[ReceivedAlert] = []
    done = asyncio.Event()

    async def handle(r: ReceivedAlert) -> None:
        received.append(r)
        if len(received) >= count:
            done.set()

    async with Subscriber(settings, group_id=unique("g"), topics=topics, handler=handle) as sub:
        task = asyncio.create_task(sub.run())
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        finally:
            sub.stop()
            await task
    return received


async def test_a_thousand_mixed_alerts_each_received_once_and_equal(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings)
    origins = ("rs", "mk", "al")
    topics = await ingress_topics(settings, origins)
    alerts = mixed_alerts(1000, origins)
    for origin in origins:
        async with Publisher(settings, origin=origin) as pub:
            results = await pub.publish_many([a for a in alerts if a.origin == origin])
            assert all(
                r.topic.endswith(f"ingress.{origin}." + r.topic.split(".")[-1]) for r in results
            )

    received = await collect_until(settings, topics, 1000)

    counts = Counter(r.alert.alert_id for r in received)
    assert len(counts) == 1000
    assert max(counts.values()) == 1
    sent = {a.alert_id: a for a in alerts}
    for r in received:
        assert r.alert == sent[r.alert.alert_id]
        assert r.key_id == r.alert.origin
        assert r.topic == settings.topics.ingress(r.alert.origin, r.alert_type)


async def test_publish_returns_where_kafka_stored_it_with_contract_key_and_headers(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings)
    topics = await ingress_topics(settings, ("rs",))
    alert = make_alert("trafficking-arrest", "rs", case_ref="RS-KU-2024-77")
    async with Publisher(settings, origin="rs") as pub:
        result = await pub.publish(alert)
    assert result.topic == settings.topics.ingress("rs", "trafficking-arrest")
    assert result.offset == 0

    [r] = await collect_until(settings, topics, 1)
    assert r.key == b"RS-KU-2024-77"
    assert r.headers["bus-type"] == b"trafficking-arrest"
    assert r.headers["bus-origin"] == b"rs"
    assert r.headers["bus-alert-id"] == str(alert.alert_id).encode()
    assert r.headers["bus-key-id"] == b"rs"
    assert len(r.headers["bus-signature"]) == 64
    assert "bus-redacted" not in r.headers


async def test_publisher_refuses_another_countrys_alert_and_invalid_input(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings)
    await ingress_topics(settings, ("rs",))
    async with Publisher(settings, origin="rs") as pub:
        with pytest.raises(OriginMismatch, match="'mk'"):
            await pub.publish(make_alert("readmission", "mk"))
        bad = example_json("readmission") | {"alert_type": "readmission"}
        bad = {**bad, "header": {**bad["header"], "occurred_at": "yesterday"}}
        with pytest.raises(ValidationError, match=r"header\.occurred_at") as info:
            await pub.publish(bad)
        assert info.value.field == "header.occurred_at"


async def test_publish_times_out_instead_of_hanging_when_kafka_goes_down(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    # A broker of this test's own, so that stopping it harms no other test.
    own = BusSettings(
        kafka_data_dir=tmp_path / "kafka",
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
    )
    broker = LocalKafka(own)
    broker.start()
    try:
        s = settings.model_copy(
            update={"bootstrap_servers": broker.bootstrap_servers, "publish_timeout_ms": 3000}
        )
        await create_topics(s, s.topics.ingress("rs", "readmission"))
        async with Publisher(s, origin="rs") as pub:
            await pub.publish(make_alert("readmission", "rs"))
            broker.stop()
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(PublishTimeout):
                await pub.publish(make_alert("readmission", "rs"))
            assert loop.time() - started < 10
    finally:
        broker.stop()


async def test_connecting_to_no_broker_fails_with_a_clear_error(
    settings: BusSettings, country_keys: Path
) -> None:
    s = settings.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{_free_port()}", "connect_timeout_ms": 3000}
    )
    with pytest.raises(KafkaError, match="Kafka"):
        async with Publisher(s, origin="rs"):
            pass
