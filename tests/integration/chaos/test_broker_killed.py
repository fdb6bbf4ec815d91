"""One broker of three killed with SIGKILL while alerts are published and fanned out, then
restarted mid-stream: nothing lost, nothing duplicated in any inbox, the audit verifies.

The cluster, the topics and the fan-out are started as an operator starts them
(`bus kafka start --nodes 3`, `bus topics apply`, `bus fanout run`); the test publishes from
its own process and records each acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bus import BusSettings
from bus.kafka.cluster import LocalCluster
from tests.conftest import REPO
from tests.integration.chaos.support import (
    ORIGINS,
    Bus,
    Stream,
    assert_delivered_exactly_once,
    inbox_progress,
    progress_or_zero,
    resume_all,
    wait_for,
)
from tests.integration.fanout_support import load_example_agreements
from tests.integration.ports import free_port_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

NODES = 3
AGREEMENTS = load_example_agreements()
PARTNERS = sorted(AGREEMENTS.partners)


@pytest.fixture
def cluster(chaos_bus: Bus) -> Iterator[Bus]:
    chaos_bus.env["BUS_KAFKA_PORT"] = str(free_port_run(2 * NODES))
    data_dir = Path(chaos_bus.env["BUS_KAFKA_DATA_DIR"])
    try:
        yield chaos_bus
    finally:
        chaos_bus.stop_processes()
        pids = [int(p.read_text()) for p in data_dir.glob("node-*/broker.pid")]
        resume_all(pids)
        settings = BusSettings(kafka_data_dir=data_dir,
                               kafka_port=int(chaos_bus.env["BUS_KAFKA_PORT"]))  # fmt: skip
        LocalCluster(settings, nodes=NODES).stop()


async def _leaders(bootstrap: str) -> Counter[int]:
    """How many partitions each node leads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return Counter(p["leader"] for t in described for p in t["partitions"] if p["leader"] >= 0)


async def test_a_broker_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(
    cluster: Bus, keys_dir: Path
) -> None:
    bootstrap = cluster.check("kafka", "start", "--nodes", str(NODES)).strip().splitlines()[-1]
    cluster.env["BUS_BOOTSTRAP_SERVERS"] = bootstrap
    cluster.check("topics", "apply")
    settings = BusSettings(
        bootstrap_servers=bootstrap, keys_dir=keys_dir, schemas_dir=REPO / "schemas",
        agreements=Path(cluster.env["BUS_AGREEMENTS"]), countries=ORIGINS,
        publish_timeout_ms=60_000,
    )  # fmt: skip
    fanout = cluster.fanout()
    stream = Stream(settings, AGREEMENTS, batch=20, pause_s=0.1)
    publishing = asyncio.create_task(stream.run())
    try:
        # Publishing and fanning out, both under way.
        await wait_for(lambda: len(stream.acked) >= 400 or publishing.done(), 120,
                       "400 alerts acknowledged")  # fmt: skip
        await wait_for(lambda: _above(settings, 0), 120, "the fan-out writing inboxes")

        leaders = await _leaders(bootstrap)
        victim_node = leaders.most_common(1)[0][0]
        pid_file = Path(cluster.env["BUS_KAFKA_DATA_DIR"]) / f"node-{victim_node}" / "broker.pid"
        victim = int(pid_file.read_text())
        inboxes_at_kill = await inbox_progress(settings, PARTNERS)
        os.kill(victim, signal.SIGKILL)
        at_kill = len(stream.acked)

        # Both go on with one node of three down (acks=all, min ISR 2).
        await wait_for(lambda: len(stream.acked) >= at_kill + 400 or publishing.done(), 120,
                       f"400 more alerts acknowledged with node {victim_node} dead")  # fmt: skip
        await wait_for(lambda: _above(settings, inboxes_at_kill), 120,
                       f"the fan-out writing inboxes with node {victim_node} dead")  # fmt: skip
        while_down = len(stream.acked)
        status = cluster.run("kafka", "status")
        assert status.returncode == 3
        assert f"node {victim_node}: stopped" in status.stdout

        restarted = await asyncio.to_thread(cluster.check, "kafka", "start", "--nodes", "3")
        assert restarted.strip().splitlines()[-1] == bootstrap
        at_restart = len(stream.acked)
        await wait_for(lambda: len(stream.acked) >= at_restart + 400 or publishing.done(), 120,
                       "400 more alerts acknowledged after the restart")  # fmt: skip
        assert not publishing.done(), "the stream must outlast the restart"
        stream.stop.set()
        await asyncio.wait_for(publishing, 120)
    finally:
        stream.stop.set()
        publishing.cancel()
    assert at_kill < while_down <= at_restart < len(stream.acked)

    total = await assert_delivered_exactly_once(cluster, settings, stream)
    assert total > 0
    assert fanout.poll() is None, cluster.fanout_log()[-3000:]


async def _above(settings: BusSettings, mark: int) -> bool:
    return await progress_or_zero(settings, PARTNERS) > mark
