"""Topic administration over aiokafka's admin client, every call bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from aiokafka.errors import KafkaError as _AioKafkaError
from aiokafka.protocol.offset import OffsetRequest

from bus.errors import KafkaError
from bus.kafka.clients import bounded
from bus.kafka.diagnose import explain_connection_failure
from bus.kafka.security import client_security
from bus.settings import BusSettings
from bus.topics import TopicSpec

_TOPIC_ALREADY_EXISTS = 36
#: DescribeConfigs' source of a value nobody set (KIP-226).
_DEFAULT_CONFIG = 5
_REPLICATION = ("default.replication.factor", "min.insync.replicas")


@dataclass(frozen=True)
class ClusterReplication:
    """The brokers up, and the replication the cluster is configured for (None: not stated)."""

    brokers_up: tuple[int, ...]
    default_replication_factor: int | None
    min_insync_replicas: int | None


class Admin:
    """Topic administration, as an async context manager.

    async with Admin(settings) as admin:
        created = await admin.ensure_topics(specs)
    """

    def __init__(self, settings: BusSettings) -> None:
        self._settings = settings
        self._client = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=f"{settings.client_id}-admin",
            request_timeout_ms=settings.request_timeout_ms,
            **client_security(settings),
        )

    async def __aenter__(self) -> Admin:
        try:
            await bounded(
                self._client.start(), self._settings.connect_timeout_ms,
                "Connecting the admin client", timeout_error=KafkaError,
            )  # fmt: skip
        except KafkaError as exc:
            if not isinstance(exc.__cause__, KafkaConnectionError):
                raise
            explained = await explain_connection_failure(self._settings)
            if explained is None:
                raise
            raise explained from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Closing against a dead broker may fail: there is nothing left to release then.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._client.close(), self._settings.request_timeout_ms / 1000)

    async def list_topics(self) -> set[str]:
        topics = await bounded(
            self._client.list_topics(), self._settings.request_timeout_ms, "Listing topics",
            timeout_error=KafkaError,
        )  # fmt: skip
        return set(topics)

    async def delete_prefixed(self, prefix: str) -> list[str]:
        """Delete every topic whose name starts with ``prefix``; return the names deleted.

        For throwaway topics (a benchmark's, under a prefix of its own), never the bus's: an
        empty prefix is refused.
        """
        if not prefix:
            raise ValueError("delete_prefixed needs a prefix: an empty one names every topic")
        doomed = sorted(t for t in await self.list_topics() if t.startswith(prefix))
        for i in range(0, len(doomed), 50):  # small batches, as when creating
            await bounded(
                self._client.delete_topics(doomed[i : i + 50], self._settings.request_timeout_ms),
                self._settings.request_timeout_ms + 5000, "Deleting topics",
                timeout_error=KafkaError,
            )  # fmt: skip
        return doomed

    async def _brokers_up(self) -> list[int]:
        """The ids of the brokers serving now: the metadata leaves out a fenced broker."""
        cluster = await bounded(
            self._client.describe_cluster(), self._settings.request_timeout_ms,
            "Describing the cluster", timeout_error=KafkaError,
        )  # fmt: skip
        return sorted(b["node_id"] for b in cluster["brokers"])

    async def replication(self) -> ClusterReplication:
        """The brokers up and the replication the cluster is configured for (one live broker's
        ``default.replication.factor`` and ``min.insync.replicas``, None where Kafka's default)."""
        up = await self._brokers_up()
        if not up:
            raise KafkaError("The cluster named no broker in its metadata; is it starting?")
        resource = ConfigResource(
            ConfigResourceType.BROKER, str(up[0]), dict.fromkeys(_REPLICATION)
        )
        [response] = await bounded(
            self._client.describe_configs([resource]), self._settings.request_timeout_ms,
            f"Reading the replication settings of broker {up[0]}", timeout_error=KafkaError,
        )  # fmt: skip
        [described] = response.to_object()["resources"]
        if described["error_code"]:
            raise KafkaError(
                f"Reading the replication settings of broker {up[0]} failed: error "
                f"{described['error_code']} {described['error_message'] or ''}".rstrip()
            )
        configured = {
            e["config_names"]: int(e["config_value"])
            for e in described["config_entries"]
            if e.get("config_source", _DEFAULT_CONFIG) != _DEFAULT_CONFIG
            and not e.get("is_default", False)
        }
        return ClusterReplication(
            brokers_up=tuple(up),
            default_replication_factor=configured.get("default.replication.factor"),
            min_insync_replicas=configured.get("min.insync.replicas"),
        )

    async def wait_for_brokers(self, needed: int, topics: list[str]) -> None:
        """Wait until ``needed`` brokers are up to hold ``topics``' replicas, at most
        ``BUS_CONNECT_TIMEOUT_MS``; then refuse, rather than create them under-replicated."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.connect_timeout_ms / 1000
        while len(up := await self._brokers_up()) < needed:
            if loop.time() >= deadline:
                raise KafkaError(
                    f"{len(topics)} topic(s) to create (the first {topics[0]}) need {needed} "
                    f"replicas, but only {len(up)} broker(s) are up (ids "
                    f"{', '.join(map(str, up)) or 'none'}) after waiting "
                    f"{self._settings.connect_timeout_ms} ms; created now they would be "
                    "under-replicated. Start the missing broker(s) (for the local cluster `bus "
                    "kafka start --nodes N` restarts a dead node) and run `bus topics apply` "
                    "again, or set BUS_TOPIC_REPLICATION_FACTOR to create them with fewer "
                    "replicas on purpose"
                )
            await asyncio.sleep(0.5)

    async def brokers(self) -> tuple[list[str], int | None]:
        """The cluster's brokers as ``host:port`` (by node id) and its controller's id."""
        cluster = await bounded(
            self._client.describe_cluster(), self._settings.request_timeout_ms,
            "Describing the cluster", timeout_error=KafkaError,
        )  # fmt: skip
        found = sorted(cluster["brokers"], key=lambda b: b["node_id"])
        controller = cluster.get("controller_id")
        return [f"{b['host']}:{b['port']}" for b in found], controller

    async def group_state(self, group_id: str) -> tuple[str, int]:
        """A consumer group's state (``Stable``, ``Empty``, ``Dead``…) and number of members."""
        responses = await bounded(
            self._client.describe_consumer_groups([group_id]), self._settings.request_timeout_ms,
            f"Describing group {group_id}", timeout_error=KafkaError,
        )  # fmt: skip
        for response in responses:
            for group in response.to_object()["groups"]:
                if group["group"] == group_id:
                    return str(group["state"]), len(group["members"])
        return "Dead", 0

    async def committed_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        """The committed offset of every partition of ``group_id`` (one request)."""
        offsets = await bounded(
            self._client.list_consumer_group_offsets(group_id),
            self._settings.request_timeout_ms, f"Reading the offsets of group {group_id}",
            timeout_error=KafkaError,
        )  # fmt: skip
        return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet; return the names created.

        Returns once every partition of every topic in ``specs`` has a leader serving it: a
        client that produces to a topic before that gets "not found in cluster metadata" and
        ``NotLeaderForPartitionError`` and retries, noisily. Topics that existed are waited for
        too: a broker just restarted on its old data serves each partition only once it has
        loaded it. Creates nothing while fewer brokers are up than a topic's replicas
        (``wait_for_brokers``): Kafka would refuse the topic, or worse, a caller would pick fewer
        replicas from what it sees.
        """
        specs = list(specs)
        existing = await self.list_topics()
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await self.wait_for_brokers(
                max(s.replication_factor for s in missing), [s.name for s in missing]
            )
        created: list[str] = []
        # Small batches keep each CreateTopics request well inside the request timeout.
        for i in range(0, len(missing), 50):
            batch = missing[i : i + 50]
            new = [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                for s in batch
            ]
            response = await bounded(
                self._client.create_topics(new, timeout_ms=self._settings.request_timeout_ms),
                self._settings.request_timeout_ms + 5000, "Creating topics",
                timeout_error=KafkaError,
            )  # fmt: skip
            for name, code, *rest in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    message = rest[0] if rest else ""
                    raise KafkaError(f"Creating topic {name} failed: error {code} {message}")
            created += [s.name for s in batch]
        # An existing topic keeps the partitions it has, whatever the spec now says.
        counts = {s.name: 0 if s.name in existing else s.partitions for s in specs}
        await self.wait_for_leaders(counts)
        return created

    async def wait_for_leaders(self, partitions: dict[str, int]) -> None:
        """Wait until every partition of each topic (name: partition count) has a working leader.

        A leader named in the metadata may not serve its partition yet (the broker applies the
        change a moment later, answering ``NotLeaderForPartition`` until then), so a partition
        counts only once its leader answered a ListOffsets request for it. Bounded by
        ``BUS_REQUEST_TIMEOUT_MS`` without progress: a busy broker bringing up many new topics
        one after another is waited for, one that serves none of them for that long is not;
        raises ``KafkaError`` naming a topic still not ready then.
        """
        pending = dict(partitions)
        loop = asyncio.get_running_loop()
        timeout_s = self._settings.request_timeout_ms / 1000
        deadline = loop.time() + timeout_s
        while pending:
            served = await self._served(pending)
            for topic in served:
                del pending[topic]
            if not pending:
                return
            if served:
                deadline = loop.time() + timeout_s
            elif loop.time() >= deadline:
                raise KafkaError(
                    f"Topic {min(pending)}: not every one of its partitions has a leader serving "
                    f"it after {self._settings.request_timeout_ms} ms without progress "
                    f"({len(pending)} topic(s) waiting); check the broker's log (`bus kafka "
                    "status`), then run `bus topics apply` again"
                )
            await asyncio.sleep(0.05)  # a leader takes over within milliseconds

    async def wait_for_group_coordinator(self, group_id: str) -> None:
        """Wait until the broker names a coordinator for ``group_id``.

        On a new cluster the first such question makes the broker create its offsets topic;
        until that has leaders, consumer groups get ``GroupCoordinatorNotAvailable`` and retry.
        Bounded by ``BUS_REQUEST_TIMEOUT_MS``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.request_timeout_ms / 1000
        while True:
            try:
                await bounded(
                    self._client.find_coordinator(group_id), self._settings.request_timeout_ms,
                    f"Finding the coordinator of group {group_id}", timeout_error=KafkaError,
                )  # fmt: skip
                return
            except KafkaError as exc:
                retriable = isinstance(exc.__cause__, _AioKafkaError) and exc.__cause__.retriable
                if not retriable or loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    async def _served(self, partitions: dict[str, int]) -> set[str]:
        """The topics among ``partitions`` whose every partition's leader serves it now."""
        described = await bounded(
            self._client.describe_topics(sorted(partitions)), self._settings.request_timeout_ms,
            "Reading the topics' leaders", timeout_error=KafkaError,
        )  # fmt: skip
        led: set[str] = set()
        by_leader: dict[int, dict[str, list[tuple[int, int]]]] = {}
        for topic in described:
            name, found = topic["topic"], topic["partitions"]
            if topic["error_code"] or len(found) < partitions.get(name, 0):
                continue
            if any(p["error_code"] or p["leader"] < 0 for p in found):
                continue
            led.add(name)
            for p in found:  # -1: the latest offset, which only the serving leader knows
                by_leader.setdefault(p["leader"], {}).setdefault(name, []).append(
                    (p["partition"], -1)
                )
        refused: set[str] = set()
        for leader, topics in by_leader.items():
            response = await bounded(
                self._client._send_request_to_node(
                    leader, OffsetRequest(-1, 0, list(topics.items()))
                ),
                self._settings.request_timeout_ms, "Asking the topics' leaders",
                timeout_error=KafkaError,
            )  # fmt: skip
            for name, answers in response.topics:
                if any(error_code for _, error_code, *_ in answers):
                    refused.add(name)
        return led - refused
