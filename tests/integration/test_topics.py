"""Creating topics: they are ready when creation returns, so the first clients meet no retries."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus import BusSettings
from bus.kafka import Admin, make_producer, stop_client
from bus.kafka.local import LocalKafka
from bus.models import ALERT_TYPES
from bus.topics import TopicSpec
from tests.integration.conftest import prefixed


async def test_every_new_partition_is_served_when_ensure_topics_returns(
    settings: BusSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = prefixed(settings)
    names = [settings.topics.ingress("rs", t) for t in ALERT_TYPES]
    async with Admin(settings) as admin:
        created = await admin.ensure_topics([TopicSpec(n, 5, 1) for n in names])
        assert created == names
        assert await admin._served(dict.fromkeys(names, 5)) == set(names)
        assert await admin.ensure_topics([TopicSpec(n, 5, 1) for n in names]) == []

    # A producer started right away writes to every partition without one retry.
    caplog.set_level(logging.WARNING, logger="aiokafka")
    producer = make_producer(settings, client_suffix="test-topics")
    await producer.start()
    try:
        for name in names:
            for partition in range(5):
                await producer.send_and_wait(name, b"v", key=b"k", partition=partition)
    finally:
        await stop_client(producer, settings.request_timeout_ms)
    # Only records about this test's topics: clients other tests left behind log too.
    about_ours = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("aiokafka") and settings.topic_prefix in r.getMessage()
    ]
    assert about_ours == []


async def test_existing_topics_are_served_when_ensure_topics_returns_on_a_restarted_broker(
    settings: BusSettings, own_broker: LocalKafka
) -> None:
    # A broker just restarted on its old data (`make demo` a second time) serves each partition
    # only once it has loaded it: until then clients meet NotLeaderForPartition and retry,
    # noisily.
    s = settings.model_copy(update={"bootstrap_servers": own_broker.bootstrap_servers})
    specs = [TopicSpec(f"restarted.t{i}", 10, 1) for i in range(40)]  # 400 partitions
    async with Admin(s) as admin:
        assert len(await admin.ensure_topics(specs)) == len(specs)
    own_broker.stop()
    own_broker.start()
    async with Admin(s) as admin:
        assert await admin.ensure_topics(specs) == []  # nothing to create: still waited for
        served = await admin._served({spec.name: 10 for spec in specs})
    assert served == {spec.name for spec in specs}


async def test_delete_prefixed_deletes_only_the_topics_under_its_prefix(
    settings: BusSettings,
) -> None:
    throwaway, kept = prefixed(settings), prefixed(settings)
    names = [throwaway.topics.ingress("rs", t) for t in ALERT_TYPES[:2]]
    other = kept.topics.ingress("rs", ALERT_TYPES[0])
    async with Admin(settings) as admin:
        await admin.ensure_topics([TopicSpec(n, 1, 1) for n in [*names, other]])
        assert await admin.delete_prefixed(throwaway.topic_prefix) == sorted(names)
        for _ in range(100):  # the metadata a broker answers with may lag its deletion a moment
            left = await admin.list_topics()
            if not any(n in left for n in names):
                break
            await asyncio.sleep(0.1)
        assert not any(n in left for n in names)
        assert other in left
        with pytest.raises(ValueError, match="needs a prefix"):
            await admin.delete_prefixed("")
