"""A real three-node cluster: a node killed mid-stream loses no acknowledged alert.

The operator's commands run as an operator runs them (`bus kafka start --nodes 3`, `status`),
on six free consecutive ports and a data directory of the test's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bus import BusSettings, Publisher
from bus.admin import apply_topics
from bus.envelope import H_ALERT_ID
from bus.kafka import read_to_end
from bus.kafka.cluster import LocalCluster
from bus.keys import generate_keypair
from bus.schemas import SchemaRegistry
from tests.conftest import REPO, unique
from tests.factories import mixed_alerts
from tests.integration.ports import free_port_run

NODES = 3


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "BUS_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        "BUS_KAFKA_PORT": str(free_port_run(2 * NODES)),
        "BUS_KAFKA_HEAP_MB": "384",
        "BUS_LOG_LEVEL": "WARNING",
    }
    env.pop("BUS_KAFKA_SECURE", None)
    yield env
    settings = BusSettings(
        kafka_data_dir=Path(env["BUS_KAFKA_DATA_DIR"]), kafka_port=int(env["BUS_KAFKA_PORT"])
    )
    LocalCluster(settings, nodes=NODES).stop()


def bus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bus", *args], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=180, check=False,
    )  # fmt: skip


async def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _min_insync_replicas(admin: AIOKafkaAdminClient, topic: str) -> str:
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})
    response = (await admin.describe_configs([resource]))[0].to_object()
    entries = response["resources"][0]["config_entries"]
    return next(e["config_value"] for e in entries if e["config_names"] == "min.insync.replicas")


async def test_a_node_killed_mid_stream_loses_no_acknowledged_alert(
    cluster_env: dict[str, str], keys_dir: Path
) -> None:
    started = bus(cluster_env, "kafka", "start", "--nodes", str(NODES))
    assert started.returncode == 0, started.stderr
    bootstrap = started.stdout.strip().splitlines()[-1]
    base = int(cluster_env["BUS_KAFKA_PORT"])
    assert bootstrap == ",".join(f"127.0.0.1:{base + i}" for i in range(NODES))

    generate_keypair(keys_dir, "rs")
    settings = BusSettings(
        bootstrap_servers=bootstrap, keys_dir=keys_dir, schemas_dir=REPO / "schemas",
        topic_prefix=f"{unique('t')}.", countries=("rs",), publish_timeout_ms=60_000,
    )  # fmt: skip
    await apply_topics(settings, partners=())
    topics = [settings.topics.ingress("rs", t) for t in SchemaRegistry.load(REPO / "schemas")
              .alert_types]  # fmt: skip
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for described in await admin.describe_topics([*topics, settings.topics.audit]):
            assert {len(p["replicas"]) for p in described["partitions"]} == {3}, described
        assert await _min_insync_replicas(admin, topics[0]) == "2"
        assert await _min_insync_replicas(admin, settings.topics.dlq) == "2"
    finally:
        await admin.close()

    alerts = mixed_alerts(1500, ("rs",))
    acked: list[str] = []

    async def publish() -> None:
        async with Publisher(settings, origin="rs") as pub:
            for i in range(0, len(alerts), 25):
                results = await pub.publish_many(alerts[i : i + 25])
                acked.extend(str(r.alert_id) for r in results)

    publishing = asyncio.create_task(publish())
    try:
        await _wait_for(lambda: len(acked) >= 300, 60, "300 alerts acknowledged")
        victim = int((Path(cluster_env["BUS_KAFKA_DATA_DIR"]) / "node-2" / "broker.pid")
                     .read_text())  # fmt: skip
        os.kill(victim, signal.SIGKILL)
        at_kill = len(acked)
        await _wait_for(lambda: len(acked) >= at_kill + 300 or publishing.done(), 90,
                        "300 alerts acknowledged with node 2 dead")  # fmt: skip
        while_down = len(acked)
        down = bus(cluster_env, "kafka", "status")
        assert down.returncode == 3
        assert "node 2: stopped" in down.stdout

        # Publishing goes on while node 2 comes back.
        restarted = await asyncio.to_thread(bus, cluster_env, "kafka", "start", "--nodes", "3")
        assert restarted.returncode == 0, restarted.stderr
        assert "node 2: started" in restarted.stderr
        assert restarted.stdout.strip().splitlines()[-1] == bootstrap
        await asyncio.wait_for(publishing, 120)
    finally:
        publishing.cancel()
    assert at_kill < while_down, "the kill must land mid-stream, and publishing go on"
    assert len(acked) == len(alerts)  # acks=all with min ISR 2 went on with one node down

    seen: Counter[str] = Counter()
    for topic in topics:
        for record in await read_to_end(settings, topic):  # read_committed
            seen.update(v.decode() for k, v in record.headers if k == H_ALERT_ID)
    assert set(seen) == set(acked)
    assert set(seen.values()) == {1}, "an acknowledged alert was written twice"

    status = bus(cluster_env, "kafka", "status")
    assert status.returncode == 0, status.stdout
    pids = [line for line in status.stdout.splitlines() if line.startswith("node ")]
    assert len(pids) == NODES
    assert all("running (pid " in line for line in pids), status.stdout
    assert f"node 2: running (pid {victim})" not in status.stdout
