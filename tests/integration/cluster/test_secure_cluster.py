"""A secure three-node cluster, run as an operator runs it, carries the bus with every login.

`bus kafka start --secure --nodes 3` on six free consecutive ports and a data directory of the
module's own; `bus access apply` and `bus topics apply` as the administrator it prints; then a
country publishes with its own login, the fan-out routes as ``fanout``, and a partner reads its
inbox with nothing but its kit, while a principal without the grant is refused. The second test
stops a node and checks that `bus topics apply` neither creates under-replicated topics nor
gives up while the node comes back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer

from bus import BusSettings, Publisher
from bus.access.acl import derive_access
from bus.access.kit import write_kit
from bus.admin import apply_topics
from bus.agreements import load_agreements
from bus.errors import AccessDenied, KafkaError
from bus.kafka import Admin
from bus.kafka.cluster import LocalCluster
from bus.kafka.security import client_security
from bus.schemas import SchemaRegistry
from services.fanout.service import FanoutService
from tests.conftest import REPO, unique
from tests.factories import make_alert
from tests.integration.cluster.test_cluster import _min_insync_replicas, bus
from tests.integration.fanout_support import agreements_keys, expected_inboxes, varied_alerts
from tests.integration.ports import free_port_run
from tests.integration.secure.conftest import AGREEMENTS, SecureBrokerInfo, SecureEnv, ck_config
from tests.integration.secure.test_acls import denied, poll_error
from tests.integration.secure.test_loop import read_with_kit
from tests.integration.test_fanout import run_until

NODES = 3


@dataclass
class SecureCluster:
    env: dict[str, str]
    #: The administrator's client.properties, as `bus kafka start` printed it.
    admin_config: Path
    start_output: str

    @property
    def settings(self) -> BusSettings:
        return BusSettings(
            kafka_data_dir=Path(self.env["BUS_KAFKA_DATA_DIR"]),
            kafka_port=int(self.env["BUS_KAFKA_PORT"]),
            credentials_dir=Path(self.env["BUS_CREDENTIALS_DIR"]),
            kafka_secure=True,
        )

    def admin(self, prefix: str, **update: object) -> BusSettings:
        """The administrator's settings for the bus under ``prefix``."""
        return BusSettings(
            client_config=self.admin_config, credentials_dir=self.settings.credentials_dir,
            topic_prefix=prefix, schemas_dir=REPO / "schemas", agreements=AGREEMENTS,
            publish_timeout_ms=30_000, **update,  # type: ignore[arg-type]
        )  # fmt: skip


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    base = tmp_path_factory.mktemp("secure-cluster")
    env = {
        **os.environ,
        "BUS_KAFKA_DATA_DIR": str(base / "kafka"),
        "BUS_CREDENTIALS_DIR": str(base / "credentials"),
        "BUS_KAFKA_PORT": str(free_port_run(2 * NODES)),
        "BUS_KAFKA_HEAP_MB": "384",
        "BUS_LOG_LEVEL": "WARNING",
    }
    env.pop("BUS_CLIENT_CONFIG", None)
    started = bus(env, "kafka", "start", "--secure", "--nodes", str(NODES))
    cluster = None
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in started.stdout.splitlines()
            if line.startswith("export ")
        )
        cluster = SecureCluster(
            env | exports, Path(exports["BUS_CLIENT_CONFIG"]), started.stdout + started.stderr
        )
        yield cluster
    finally:
        settings = BusSettings(kafka_data_dir=base / "kafka", kafka_port=int(env["BUS_KAFKA_PORT"]))
        LocalCluster(settings, nodes=NODES).stop()


async def test_a_secure_cluster_carries_the_bus_with_each_principal_its_own_login(
    secure_cluster: SecureCluster, keys_dir: Path, tmp_path: Path
) -> None:
    cluster = secure_cluster
    base = int(cluster.env["BUS_KAFKA_PORT"])
    bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(NODES))
    admin_props = ck_config(cluster.admin_config)
    assert admin_props["bootstrap.servers"] == bootstrap  # every node
    assert admin_props["sasl.password"] not in cluster.start_output

    status = bus(cluster.env, "kafka", "status")
    assert status.returncode == 0, status.stdout
    assert f"cluster of {NODES} nodes, {NODES} running, secure" in status.stdout
    nodes = [line for line in status.stdout.splitlines() if line.startswith("node ")]
    assert [line.split(":")[0] for line in nodes] == ["node 1", "node 2", "node 3"]
    assert all("running (pid " in line for line in nodes), status.stdout

    # The operator's two commands, as the administrator `bus kafka start` printed.
    prefix = f"{unique('c')}."
    env = cluster.env | {"BUS_TOPIC_PREFIX": prefix, "BUS_AGREEMENTS": str(AGREEMENTS)}
    applied = bus(env, "access", "apply")
    assert applied.returncode == 0, applied.stderr
    topics = bus(env, "topics", "apply")
    assert topics.returncode == 0, topics.stderr

    admin = cluster.admin(prefix)
    names = admin.topics
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_security(admin))
    await client.start()
    try:
        checked = [names.ingress("rs", "readmission"), names.inbox("europol"), names.audit]
        for described in await client.describe_topics(checked):
            assert {len(p["replicas"]) for p in described["partitions"]} == {3}, described
        assert await _min_insync_replicas(client, names.ingress("rs", "readmission")) == "2"
        assert await _min_insync_replicas(client, names.audit) == "2"
    finally:
        await client.close()

    agreements = load_agreements(AGREEMENTS, schemas=SchemaRegistry.load(REPO / "schemas"))
    info = SecureBrokerInfo(bootstrap, Path(cluster.env["BUS_KAFKA_DATA_DIR"]),
                            cluster.admin_config, cluster.start_output)  # fmt: skip
    view = SecureEnv(admin.model_copy(update={"keys_dir": keys_dir}), agreements,
                     derive_access(agreements, names), info)  # fmt: skip
    agreements_keys(keys_dir, agreements)

    # Countries publish with their own logins; the fan-out routes with its own.
    alerts = varied_alerts(60, agreements, seed=11, origins=("rs", "mk"))
    for origin in ("rs", "mk"):
        async with Publisher(view.as_principal(origin), origin=origin) as pub:
            await pub.publish_many([a for a in alerts if a.origin == origin])
    await run_until(FanoutService(view.as_principal("fanout"), agreements=agreements), len(alerts))

    # A partner reads exactly its alerts with nothing but its kit.
    expected = expected_inboxes(alerts, agreements)
    partner = max(expected, key=lambda p: len(expected[p]))
    assert len(expected[partner]) > 0
    write_kit(view.admin, view.access, partner, tmp_path / "kit")
    got = await asyncio.to_thread(
        read_with_kit, tmp_path / "kit", names.inbox(partner), len(expected[partner])
    )
    ids = [line["alert_id"] for line in got]
    assert sorted(ids) == sorted(expected[partner])

    # Without the grant: a country writing another's ingress, a partner reading another inbox.
    async with Publisher(view.as_principal("mk"), origin="rs") as pub:
        with pytest.raises(AccessDenied, match=rf"principal '{view.principal('mk')}' WRITE"):
            await pub.publish(make_alert("readmission", "rs"))
    other = next(p for p in expected if p != partner)
    kit = ck_config(tmp_path / "kit" / "client.properties")
    consumer = Consumer({**kit, "group.id": f"{view.principal(partner)}.probe"})
    consumer.subscribe([names.inbox(other)])
    err, records = await asyncio.to_thread(poll_error, consumer)
    consumer.close()
    assert denied(err), err
    assert records == []


async def test_topics_apply_with_a_node_down_waits_for_it_and_never_under_replicates(
    secure_cluster: SecureCluster,
) -> None:
    cluster = secure_cluster
    node = LocalCluster(cluster.settings, nodes=NODES).nodes[2]
    assert node.stop()
    try:
        # Refused after the bounded wait, naming how many brokers are up and how many needed.
        short = cluster.admin(f"{unique('c')}.", connect_timeout_ms=2_000)
        with pytest.raises(KafkaError, match=r"need 3 replicas, but only 2 broker\(s\) are up "
                           r"\(ids 1, 2\) after waiting 2000 ms"):  # fmt: skip
            await apply_topics(short, partners=("europol",))
        async with Admin(short) as admin:
            assert not {t for t in await admin.list_topics() if t.startswith(short.topic_prefix)}

        # With the node coming back meanwhile, the same command waits and creates RF 3.
        patient = cluster.admin(f"{unique('c')}.", connect_timeout_ms=120_000)
        applying = asyncio.create_task(apply_topics(patient, partners=("europol",)))
        await asyncio.sleep(1)
        assert not applying.done()
    finally:
        restarted = await asyncio.to_thread(
            bus, cluster.env, "kafka", "start", "--secure", "--nodes", str(NODES)
        )
    assert restarted.returncode == 0, restarted.stderr
    assert "node 3: started" in restarted.stderr
    created, _ = await asyncio.wait_for(applying, 180)
    assert patient.topics.inbox("europol") in created
    async with Admin(patient) as admin:
        described = await admin._client.describe_topics([patient.topics.inbox("europol")])
    assert {len(p["replicas"]) for p in described[0]["partitions"]} == {3}
