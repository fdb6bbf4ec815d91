"""The fan-out survives a broker restart without a restart of its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bus import BusSettings
from bus.kafka.local import LocalKafka
from services.fanout.service import FanoutService
from tests.integration.fanout_support import (
    agreements_keys,
    check_inboxes,
    expected_inboxes,
    fanout_settings,
    fanout_topics,
    load_example_agreements,
    publish_all,
    read_inboxes,
    varied_alerts,
)

AGREEMENTS = load_example_agreements()


async def _wait_routed(
    service: FanoutService, task: asyncio.Task[None], count: int, timeout_s: float = 120
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while service.stats.alerts < count:
        assert not task.done(), f"the fan-out ended: {task.exception()!r}"
        assert asyncio.get_running_loop().time() < deadline, service.stats
        await asyncio.sleep(0.2)


async def test_fanout_carries_on_after_the_broker_restarts(
    settings: BusSettings, keys_dir: Path, own_broker: LocalKafka
) -> None:
    s = fanout_settings(settings).model_copy(
        update={"bootstrap_servers": own_broker.bootstrap_servers, "request_timeout_ms": 5000,
                "publish_timeout_ms": 10_000, "connect_timeout_ms": 5000}
    )  # fmt: skip
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(s, AGREEMENTS)
    before, after = (
        varied_alerts(300, AGREEMENTS, seed=1),
        varied_alerts(300, AGREEMENTS, seed=2),
    )
    service = FanoutService(s)
    task = asyncio.create_task(service.run())
    await service.wait_ready()
    await publish_all(s, before)
    await _wait_routed(service, task, len(before))

    own_broker.stop()
    await asyncio.sleep(2)  # the service now meets a dead broker
    own_broker.start()

    await publish_all(s, after)
    await _wait_routed(service, task, len(before) + len(after), timeout_s=180)
    # The same service, still running: whether its clients reconnected by themselves or a
    # shard started a new session is the client library's timing, not the point.
    assert not task.done()
    service.stop()
    await asyncio.wait_for(task, 60)

    expected = expected_inboxes(before + after, AGREEMENTS)
    total = sum(len(v) for v in expected.values())
    actual = await read_inboxes(s, sorted(AGREEMENTS.partners), expect=total)
    assert check_inboxes(actual, expected) == total
