"""A local cluster's configuration: one quorum, a port and a directory per node, RF 3, min ISR 2."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bus import BusSettings, KafkaLocalError
from bus.admin import topic_replication
from bus.errors import KafkaError
from bus.kafka.admin import Admin, ClusterReplication
from bus.kafka.cluster import ClusterNode, LocalCluster, cluster_node_count, node_ports
from bus.topics import TopicNames, bus_topic_specs, replication_for


def _settings(tmp_path: Path, **kw: object) -> BusSettings:
    return BusSettings(**{"kafka_data_dir": tmp_path, "kafka_port": 19092, **kw})  # type: ignore[arg-type]


def test_ports_are_consecutive_clients_first_then_controllers() -> None:
    assert [node_ports(9092, 3, i) for i in (1, 2, 3)] == [(9092, 9095), (9093, 9096), (9094, 9097)]


def test_every_node_has_its_own_id_ports_and_directory_and_all_share_one_quorum(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(_settings(tmp_path), nodes=3)
    props = [node._properties() for node in cluster.nodes]

    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    voters = "1@127.0.0.1:19095,2@127.0.0.1:19096,3@127.0.0.1:19097"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["listeners"] for p in props] == [
        f"PLAINTEXT://127.0.0.1:{19092 + i},CONTROLLER://127.0.0.1:{19095 + i}" for i in range(3)
    ]
    assert [p["advertised.listeners"] for p in props] == [
        f"PLAINTEXT://127.0.0.1:{19092 + i}" for i in range(3)
    ]
    assert [p["log.dirs"] for p in props] == [
        str(tmp_path / f"node-{i}" / "logs") for i in (1, 2, 3)
    ]
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"


def test_topics_and_internal_topics_have_three_replicas_and_need_two(tmp_path: Path) -> None:
    props = ClusterNode(_settings(tmp_path), node_id=2, nodes=3)._properties()
    assert props["process.roles"] == "broker,controller"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):  # fmt: skip
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == "2"
    assert props["transaction.state.log.min.isr"] == "2"


def test_a_two_node_cluster_replicates_twice_and_needs_one(tmp_path: Path) -> None:
    props = ClusterNode(_settings(tmp_path), node_id=1, nodes=2)._properties()
    assert props["offsets.topic.replication.factor"] == "2"
    assert props["min.insync.replicas"] == "1"


def _secure_nodes(tmp_path: Path) -> list[ClusterNode]:
    settings = _settings(tmp_path / "kafka", kafka_secure=True,
                         credentials_dir=tmp_path / "credentials")  # fmt: skip
    nodes = LocalCluster(settings, nodes=3).nodes
    for node in nodes:
        node.prepare_security()
    return nodes


def test_every_secure_node_takes_sasl_ssl_logins_on_its_own_ports(tmp_path: Path) -> None:
    props = [node._properties() for node in _secure_nodes(tmp_path)]

    assert [p["listeners"] for p in props] == [
        f"CLIENT://127.0.0.1:{19092 + i},CONTROLLER://127.0.0.1:{19095 + i}" for i in range(3)
    ]
    assert [p["advertised.listeners"] for p in props] == [
        f"CLIENT://127.0.0.1:{19092 + i}" for i in range(3)
    ]
    for p in props:
        assert p["listener.security.protocol.map"] == "CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
        assert p["inter.broker.listener.name"] == "CLIENT"
        assert p["authorizer.class.name"].endswith("StandardAuthorizer")
        assert p["allow.everyone.if.no.acl.found"] == "false"
        assert p["controller.quorum.voters"] == props[0]["controller.quorum.voters"]


def test_secure_nodes_share_their_logins_to_each_other_and_one_ca(tmp_path: Path) -> None:
    props = [node._properties() for node in _secure_nodes(tmp_path)]

    # Each node logs in to the others' brokers and controllers: the same passwords everywhere.
    shared = (
        "listener.name.client.scram-sha-512.sasl.jaas.config",
        "listener.name.controller.plain.sasl.jaas.config",
        "ssl.truststore.location",
    )
    for key in shared:
        assert len({p[key] for p in props}) == 1, key
    assert props[0]["ssl.truststore.location"] == str(tmp_path / "kafka" / "tls" / "ca.pem")
    # …and the controller's password stays the same when a node restarts (a new config).
    again = _secure_nodes(tmp_path)[1]._properties()
    key = "listener.name.controller.plain.sasl.jaas.config"
    assert again[key] == props[1][key]


def test_each_secure_node_has_its_own_certificate_for_its_address_signed_by_the_ca(
    tmp_path: Path,
) -> None:
    nodes = _secure_nodes(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "kafka" / "tls" / "ca.pem").read_bytes())
    leaves = []
    for node in nodes:
        store = Path(node._properties()["ssl.keystore.location"])
        assert store == tmp_path / "kafka" / f"node-{node.node_id}" / "tls" / "broker.pem"
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        leaf, chain_ca = x509.load_pem_x509_certificates(store.read_bytes())
        leaf.verify_directly_issued_by(ca)
        assert chain_ca == ca
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        host = node.bootstrap_servers.rpartition(":")[0]
        assert ipaddress.ip_address(host) in names.get_values_for_type(x509.IPAddress)
        leaves.append(
            leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
    assert len(set(leaves)) == 3, "every node has a key of its own"


def test_a_plain_cluster_refuses_to_start_secure_on_its_data(tmp_path: Path) -> None:
    node = LocalCluster(_settings(tmp_path), nodes=3).nodes[0]
    (node.data_dir / "logs").mkdir(parents=True)
    (node.data_dir / "logs" / "meta.properties").write_text("formatted")
    (node.data_dir / "security").write_text("plain\n")
    secure = LocalCluster(_settings(tmp_path, kafka_secure=True,
                                    credentials_dir=tmp_path / "credentials"), nodes=3)  # fmt: skip
    with pytest.raises(KafkaLocalError, match=r"node-1 was formatted plain.*asks for a secure"):
        secure.nodes[0].prepare_security()


def test_one_node_is_not_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(KafkaLocalError, match="at least 2 nodes"):
        LocalCluster(_settings(tmp_path), nodes=1)


def test_a_cluster_never_started_is_stopped_on_every_node(tmp_path: Path) -> None:
    status = LocalCluster(_settings(tmp_path, kafka_port=1), nodes=3).status()
    assert not status.running
    assert [(n.node_id, n.running, n.pid) for n in status.nodes] == [
        (1, False, None), (2, False, None), (3, False, None),
    ]  # fmt: skip
    assert cluster_node_count(tmp_path) is None


def test_the_cluster_id_is_shared_and_the_node_count_kept(tmp_path: Path) -> None:
    first = LocalCluster(_settings(tmp_path), nodes=3)._cluster_id()
    assert LocalCluster(_settings(tmp_path), nodes=3)._cluster_id() == first
    assert cluster_node_count(tmp_path) == 3
    with pytest.raises(KafkaLocalError, match=r"formatted with 3 nodes.*asks for 5"):
        LocalCluster(_settings(tmp_path), nodes=5)._cluster_id()


@pytest.mark.parametrize(
    ("brokers", "explicit", "expected"),
    [(1, None, (1, 1)), (2, None, (2, 1)), (3, None, (3, 2)), (7, None, (3, 2)),
     (3, 1, (1, 1)), (0, 3, (3, 2))],
)  # fmt: skip
def test_replication_follows_the_cluster_unless_set(
    brokers: int, explicit: int | None, expected: tuple[int, int]
) -> None:
    assert replication_for(brokers, explicit) == expected


def test_every_bus_topic_carries_its_min_insync_replicas() -> None:
    specs = bus_topic_specs(
        TopicNames(), countries=["rs"], alert_types=["readmission"], partners=["europol"],
        requesters=["europol"], partitions=3, replication_factor=3, min_insync_replicas=2,
        ingress_retention_ms=1, dlq_retention_ms=1, audit_retention_ms=-1,
    )  # fmt: skip
    assert {s.replication_factor for s in specs} == {3}
    assert {s.config["min.insync.replicas"] for s in specs} == {"2"}
    # The joint index's topics are made the same way, in the same call.
    by_name = {s.name: s for s in specs}
    assert by_name["lookup.europol.requests"].partitions == 3
    assert by_name["lookup.europol.answers"].partitions == 3
    assert by_name["bus.audit.lookups"].partitions == 1  # one hash chain, one order


def _cluster(up: int, factor: int | None, min_isr: int | None) -> ClusterReplication:
    return ClusterReplication(tuple(range(1, up + 1)), factor, min_isr)


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (_cluster(3, 3, 2), (3, 2)),
        (_cluster(2, 3, 2), (3, 2)),  # one node of three down: still three replicas
        (_cluster(1, 3, None), (3, 2)),
        (_cluster(3, 3, 3), (3, 3)),  # never below the cluster's own minimum
        (_cluster(1, None, None), (1, 1)),  # a single broker that states no factor
        (_cluster(5, None, None), (3, 2)),  # none stated: what the brokers up can give
        (_cluster(2, 2, 1), (2, 1)),
    ],
)
def test_topics_get_the_replication_the_cluster_is_configured_for(
    cluster: ClusterReplication, expected: tuple[int, int]
) -> None:
    assert topic_replication(cluster) == expected


def test_a_minimum_above_the_factor_is_refused_with_the_way_out() -> None:
    with pytest.raises(KafkaError, match=r"min.insync.replicas 2, more than the 1 replica.*"
                       r"BUS_TOPIC_REPLICATION_FACTOR"):  # fmt: skip
        topic_replication(_cluster(1, None, 2))


def _admin_seeing(monkeypatch: pytest.MonkeyPatch, *answers: list[int]) -> Admin:
    """An Admin whose cluster metadata names the brokers of ``answers`` in turn (the last
    one from then on), so that its waiting can be seen without a broker."""
    admin = Admin(BusSettings(connect_timeout_ms=1500))
    seen = iter(answers)

    async def brokers_up() -> list[int]:
        return next(seen, answers[-1])

    monkeypatch.setattr(admin, "_brokers_up", brokers_up)
    return admin


async def test_creating_topics_with_too_few_brokers_up_waits_then_refuses_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _admin_seeing(monkeypatch, [1, 3])
    expected = (
        r"2 topic\(s\) to create \(the first a\) need 3 replicas, but only 2 broker\(s\) "
        r"are up \(ids 1, 3\) after waiting 1500 ms; created now they would be under-replicated"
    )
    with pytest.raises(KafkaError, match=expected):
        await admin.wait_for_brokers(3, ["a", "b"])


async def test_creating_topics_goes_on_once_the_missing_broker_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = _admin_seeing(monkeypatch, [1, 3], [1, 2, 3])
    await admin.wait_for_brokers(3, ["a"])  # returns instead of raising
