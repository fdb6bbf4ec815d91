"""Creating topics: they are ready when creation returns, so the first clients meet no retries."""

from __future__ import annotations

import logging

import pytest

from bus import BusSettings
from bus.kafka import Admin, make_producer, stop_client
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
