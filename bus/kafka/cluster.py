"""A local multi-node Apache Kafka cluster (KRaft), each node a ``LocalKafka`` of its own.

    cluster = LocalCluster(BusSettings(), nodes=3)
    cluster.start()       # starts every node that is not running (again after one died)
    cluster.status()      # each node with its pid
    cluster.stop()        # every node

Every node is both broker and controller, so the controller quorum is the ``nodes`` voters,
static (``controller.quorum.voters``, kraft.version 0; KIP-853's dynamic quorum is not needed
for a cluster whose membership never changes). Ports are consecutive from ``BUS_KAFKA_PORT``
(``p``): node ``i`` (1-based) of ``n`` takes client port ``p + i - 1`` and controller port
``p + n + i - 1``, so three nodes use 9092-9094 for clients and 9095-9097 for the quorum.
Node ``i`` keeps its data in ``<BUS_KAFKA_DATA_DIR>/node-<i>/``; ``cluster.properties`` beside
them holds the node count and the cluster id all nodes were formatted with.

Topics and the internal ones (``__consumer_offsets``, ``__transaction_state``) are replicated
``min(3, n)`` times, with ``min.insync.replicas`` 2 from three replicas on: with acks=all a write
survives the loss of any one node of three.

With ``BUS_KAFKA_SECURE`` every node has the single secure broker's listeners
(``bus.kafka.secure``): SASL_SSL for clients and between brokers, a PLAIN login on the
controller listener. The nodes share the CA and the broker's and controller's passwords, kept in
the cluster's directory, and each has its own certificate; all of them are formatted with the
same first SCRAM users (KIP-900), and the administrator's ``client.properties`` names every node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bus.access.credentials import parse_properties
from bus.errors import KafkaLocalError
from bus.kafka.local import LocalKafka, _alive, _kafka_cluster_id
from bus.kafka.secure import SecureBroker
from bus.settings import BusSettings
from bus.topics import replication_for

_MARKER = "cluster.properties"


@dataclass(frozen=True)
class NodeStatus:
    """One node of ``bus kafka status``."""

    node_id: int
    running: bool
    pid: int | None
    bootstrap_server: str
    data_dir: Path


@dataclass(frozen=True)
class ClusterStatus:
    """What ``bus kafka status`` reports for a cluster."""

    nodes: tuple[NodeStatus, ...]
    bootstrap_servers: str
    data_dir: Path
    version: str
    secure: bool = False
    #: The administrator's client.properties (``BUS_CLIENT_CONFIG``) of a secure cluster.
    client_config: Path | None = None

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)


def node_ports(base_port: int, nodes: int, node_id: int) -> tuple[int, int]:
    """(client port, controller port) of node ``node_id`` (1-based) among ``nodes``."""
    return base_port + node_id - 1, base_port + nodes + node_id - 1


def cluster_node_count(data_dir: Path) -> int | None:
    """The node count a cluster in ``data_dir`` was formatted for, or None when there is none."""
    props = _read_properties(data_dir / _MARKER)
    return int(props["nodes"]) if "nodes" in props else None


class ClusterNode(LocalKafka):
    """One node of a ``LocalCluster``: broker and controller, one voter of the quorum."""

    def __init__(self, settings: BusSettings, *, node_id: int, nodes: int) -> None:
        port, controller_port = node_ports(settings.kafka_port, nodes, node_id)
        super().__init__(
            settings.model_copy(
                update={
                    "kafka_data_dir": settings.kafka_data_dir / f"node-{node_id}",
                    "kafka_port": port,
                    "kafka_controller_port": controller_port,
                }
            )
        )
        self.node_id = node_id
        self.nodes = nodes
        self._base_port = settings.kafka_port
        self._secure = SecureBroker(
            self.data_dir, settings.credentials_dir, self.bootstrap_servers,
            shared_dir=settings.kafka_data_dir,
        )  # fmt: skip
        self._bootstrap_args: list[str] = []

    def _properties(self) -> dict[str, str]:
        replicas, min_isr = replication_for(self.nodes)
        voters = ",".join(
            f"{i}@127.0.0.1:{node_ports(self._base_port, self.nodes, i)[1]}"
            for i in range(1, self.nodes + 1)
        )
        return super()._properties() | {
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            # A node killed outright is fenced, and leaves every ISR, within seconds rather
            # than the default 9 s, so acks=all writes go on quickly on the other two.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "replica.lag.time.max.ms": "5000",
        }

    @property
    def formatted(self) -> bool:
        return (self._log_dirs / "meta.properties").exists()

    def prepare_security(self) -> None:
        """Refuse data formatted in the other mode; make a secure node's certificate once."""
        self._check_mode()
        if self.secure:
            self._secure.prepare()

    def prepare(self, java: str, cluster_id: str, format_args: list[str]) -> None:
        """Write this node's configuration and format its storage once, into ``cluster_id``,
        with ``format_args`` (the secure cluster's first SCRAM users, the same on every node)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._bootstrap_args = format_args
        self._format_once(java, cluster_id)

    def _format_args(self) -> list[str]:
        return self._bootstrap_args

    def launch(self, java: str) -> tuple[subprocess.Popen[bytes], int]:
        return self._launch(java)

    def wait_ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> None:
        self._wait_ready(proc, log_offset)

    def pid(self) -> int | None:
        """The pid of this node's JVM while it lives."""
        pid = self._read_pid()
        return pid if pid is not None and _alive(pid) else None

    def forget_pid(self) -> None:
        self._pid_file.unlink(missing_ok=True)

    def node_status(self) -> NodeStatus:
        status = self.status()
        return NodeStatus(self.node_id, status.running, status.pid, self.bootstrap_servers,
                          self.data_dir)  # fmt: skip


class LocalCluster:
    """Fetch, format, start, stop and inspect a local KRaft cluster of ``nodes`` nodes."""

    def __init__(self, settings: BusSettings, *, nodes: int = 3) -> None:
        if nodes < 2:
            raise KafkaLocalError(
                f"A cluster needs at least 2 nodes, not {nodes}; for one broker run "
                "`bus kafka start` without --nodes."
            )
        self.data_dir = settings.kafka_data_dir
        self.version = settings.kafka_version
        self.secure = settings.kafka_secure
        self.nodes = [ClusterNode(settings, node_id=i, nodes=nodes) for i in range(1, nodes + 1)]
        self.bootstrap_servers = ",".join(node.bootstrap_servers for node in self.nodes)
        self._secure = SecureBroker(
            self.data_dir, settings.credentials_dir, self.bootstrap_servers,
            shared_dir=self.data_dir,
        )  # fmt: skip

    @property
    def _marker(self) -> Path:
        return self.data_dir / _MARKER

    def start(self) -> ClusterStatus:
        """Start every node that is not running; return once each of them serves clients.

        All stopped nodes start together: no node is ready before a majority of the quorum
        runs. A node that died is started again on its own data, and catches up.
        """
        cluster_id = self._cluster_id()
        down = [node for node in self.nodes if not node.status().running]
        if not down:
            return self.status()
        for node in down:
            node.prepare_security()
            node.check_port_free()
        java = down[0]._java()
        down[0].ensure_jars()
        format_args = self._secure_bootstrap(down)
        for node in down:
            node.prepare(java, cluster_id, format_args)
        launched = [(node, *node.launch(java)) for node in down]
        try:
            for node, proc, log_offset in launched:
                node.wait_ready(proc, log_offset)
        except KafkaLocalError:
            for node, proc, _ in launched:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                node.forget_pid()
            raise
        return self.status()

    def _secure_bootstrap(self, down: list[ClusterNode]) -> list[str]:
        """A secure cluster's format arguments for the nodes in ``down`` that need them.

        The administrator's password is made when the first node is formatted and read back
        afterwards; its client.properties is (re)written to name every node.
        """
        if not self.secure:
            return []
        fresh = not any(node.formatted for node in self.nodes)
        admin = self._secure.admin_config(formatting=fresh)
        if all(node.formatted for node in down):
            return []
        return self._secure.format_args(admin)

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop every node (SIGTERM to all at once, SIGKILL after ``timeout_s``). True if any ran.

        All at once: a node stopping alone waits for a quorum that the others' stopping would
        take away.
        """
        pids = [pid for node in self.nodes if (pid := node.pid()) is not None]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        while any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        for node in self.nodes:
            node.forget_pid()
        return bool(pids)

    def status(self) -> ClusterStatus:
        """Each node with its pid; secure when the nodes were formatted so (whatever asked)."""
        first = self.nodes[0].status()
        return ClusterStatus(
            nodes=tuple(node.node_status() for node in self.nodes),
            bootstrap_servers=self.bootstrap_servers,
            data_dir=self.data_dir,
            version=self.version,
            secure=first.secure,
            client_config=first.client_config,
        )

    def _cluster_id(self) -> str:
        """The id all nodes share: read back, or chosen and written down at the first start."""
        props = _read_properties(self._marker)
        if not props:
            cluster_id = _kafka_cluster_id()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._marker.write_text(f"nodes={len(self.nodes)}\ncluster.id={cluster_id}\n")
            return cluster_id
        if int(props.get("nodes", "0")) != len(self.nodes):
            raise KafkaLocalError(
                f"The cluster in {self.data_dir} was formatted with {props.get('nodes')} nodes, "
                f"and this start asks for {len(self.nodes)}. Start it with --nodes "
                f"{props.get('nodes')}, use another BUS_KAFKA_DATA_DIR, or delete "
                f"{self.data_dir} to start afresh."
            )
        return props["cluster.id"]


def _read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return parse_properties(text, path)
