"""Publish and subscribe against the real broker: every alert once, equal to what was sent."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

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
from bus.kafka import read_to_end
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


async def test_publish_many_reports_where_a_consumer_finds_each_alert(
    settings: BusSettings, country_keys: Path
) -> None:
    # Many keys over two topics of five partitions, and batches small enough that each
    # partition gets several: every reported (topic, partition, offset) holds exactly that alert.
    settings = prefixed(settings).model_copy(update={"max_batch_size_bytes": 16 * 1024})
    kinds = ("trafficking-arrest", "irregular-crossing")
    topics = [settings.topics.ingress("rs", kind) for kind in kinds]
    await create_topics(settings, *topics, partitions=5)
    alerts = [make_alert(kinds[i % 2], "rs", case_ref=f"RS-CASE-{i % 37}") for i in range(600)]
    async with Publisher(settings, origin="rs") as pub:
        results = await pub.publish_many(alerts)

    assert [r.alert_id for r in results] == [a.alert_id for a in alerts]
    stored = {
        (topic, record.partition, record.offset): record
        for topic in topics
        for record in await read_to_end(settings, topic)
    }
    assert len(stored) == len(alerts)  # nothing more was written, nothing twice
    for alert, result in zip(alerts, results, strict=True):
        record = stored[(result.topic, result.partition, result.offset)]
        assert dict(record.headers)["bus-alert-id"] == str(alert.alert_id).encode()
        assert record.key == alert.record_key
        assert result.topic == settings.topics.ingress("rs", alert.alert_type)
        # The partition aiokafka's default partitioner gives the key, as with send().
        assert result.partition == DefaultPartitioner()(alert.record_key, list(range(5)), [])
    assert len({(r.topic, r.partition) for r in results}) == 10  # every partition of both
    per_partition = Counter((r.topic, r.partition) for r in results)
    assert max(per_partition.values()) * 900 > 16 * 1024  # several batches in some partition
    # One case keeps its order: a key's offsets grow in the order its alerts were given.
    by_key: dict[bytes, list[int]] = {}
    for alert, result in zip(alerts, results, strict=True):
        by_key.setdefault(alert.record_key, []).append(result.offset)
    assert all(offsets == sorted(offsets) for offsets in by_key.values())


async def test_publish_many_sends_nothing_when_one_alert_is_too_large_for_kafka(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings)
    topic = settings.topics.ingress("rs", "trafficking-arrest")
    await create_topics(settings, topic)
    small = make_alert("trafficking-arrest", "rs")
    huge = make_alert("trafficking-arrest", "rs").model_copy(update={"summary": "x" * 3_000_000})
    async with Publisher(settings, origin="rs") as pub:
        with pytest.raises(KafkaError, match=rf"{huge.alert_id} is \d+ bytes.*Nothing"):
            await pub.publish_many([small, huge])
        assert await read_to_end(settings, topic) == []
        [result] = await pub.publish_many([small])  # the publisher is still usable
    assert result.offset == 0


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
    settings: BusSettings, country_keys: Path, own_broker: LocalKafka
) -> None:
    s = settings.model_copy(
        update={"bootstrap_servers": own_broker.bootstrap_servers, "publish_timeout_ms": 3000}
    )
    await create_topics(s, s.topics.ingress("rs", "readmission"))
    async with Publisher(s, origin="rs") as pub:
        await pub.publish(make_alert("readmission", "rs"))
        own_broker.stop()
        loop = asyncio.get_running_loop()
        # The timeout bounds the whole call (handing over, then the acknowledgement), not
        # each of its waits: a second of slack for a busy machine, not a second timeout.
        for call in (
            lambda: pub.publish(make_alert("readmission", "rs")),
            lambda: pub.publish_many([make_alert("readmission", "rs") for _ in range(30)]),
        ):
            started = loop.time()
            with pytest.raises(PublishTimeout, match="no answer from Kafka within 3000 ms"):
                await call()
            assert loop.time() - started < 3 + 1


async def test_connecting_to_no_broker_fails_with_a_clear_error(
    settings: BusSettings, country_keys: Path
) -> None:
    s = settings.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{_free_port()}", "connect_timeout_ms": 3000}
    )
    with pytest.raises(KafkaError, match="Kafka"):
        async with Publisher(s, origin="rs"):
            pass


async def test_publishing_with_workers_stores_what_one_process_stores(
    settings: BusSettings, country_keys: Path
) -> None:
    # The same alerts published by a publisher alone and by one with two preparing workers:
    # the same records (key, value, headers, signature) at the same partitions and offsets.
    kinds = ("trafficking-arrest", "irregular-crossing")
    alerts = [make_alert(kinds[i % 2], "rs", case_ref=f"RS-CASE-{i % 53}") for i in range(2500)]
    given: list[Any] = [a if i % 2 else {**a.to_avro(), "alert_type": a.alert_type}
                        for i, a in enumerate(alerts)]  # fmt: skip
    stored: dict[int, dict[tuple[int, int], tuple[Any, ...]]] = {}
    reported: dict[int, list[tuple[str, int, int]]] = {}
    for workers in (0, 2):
        each = prefixed(settings).model_copy(
            update={"max_batch_size_bytes": 32 * 1024, "publish_workers": workers}
        )
        topics = [each.topics.ingress("rs", kind) for kind in kinds]
        await create_topics(each, *topics, partitions=5)
        async with Publisher(each, origin="rs") as pub:
            assert len(pub.worker_pids) == workers
            results = await pub.publish_many(given)
        assert [r.alert_id for r in results] == [a.alert_id for a in alerts]
        reported[workers] = [(r.topic.rpartition(".")[2], r.partition, r.offset) for r in results]
        stored[workers] = {
            (kinds.index(topic.rpartition(".")[2]), r.partition, r.offset): (
                r.key,
                r.value,
                tuple(r.headers),
            )
            for topic in topics
            for r in await read_to_end(each, topic)
        }
    assert len(stored[2]) == len(alerts)
    assert stored[2] == stored[0]
    assert reported[2] == reported[0]


async def test_publishing_with_workers_sends_nothing_when_one_alert_is_invalid(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings).model_copy(update={"publish_workers": 1})
    topics = await ingress_topics(settings, ("rs",))
    alerts: list[Any] = [make_alert(ALERT_TYPES[i % len(ALERT_TYPES)], "rs") for i in range(3000)]
    bad = example_json("readmission") | {"alert_type": "readmission"}
    alerts[2100] = {**bad, "header": {**bad["header"], "occurred_at": "yesterday"}}
    async with Publisher(settings, origin="rs") as pub:
        with pytest.raises(ValidationError, match=r"header\.occurred_at"):
            await pub.publish_many(alerts)
        for topic in topics:
            assert await read_to_end(settings, topic) == []
        del alerts[2100]
        # Still usable, workers and all; any iterable will do (a deque cannot be sliced).
        results = await pub.publish_many(deque(alerts))
    assert len({(r.topic, r.partition, r.offset) for r in results}) == 2999
