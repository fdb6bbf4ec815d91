"""Topic administration over aiokafka's admin client, every call bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from bus.errors import KafkaError
from bus.kafka.clients import bounded
from bus.kafka.diagnose import explain_connection_failure
from bus.kafka.security import client_security
from bus.settings import BusSettings
from bus.topics import TopicSpec

_TOPIC_ALREADY_EXISTS = 36


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

    async def broker_count(self) -> int:
        """How many brokers the cluster has now (its metadata, one request)."""
        cluster = await bounded(
            self._client.describe_cluster(), self._settings.request_timeout_ms,
            "Describing the cluster", timeout_error=KafkaError,
        )  # fmt: skip
        return len(cluster["brokers"])

    async def committed_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        """The committed offset of every partition of ``group_id`` (one request)."""
        offsets = await bounded(
            self._client.list_consumer_group_offsets(group_id),
            self._settings.request_timeout_ms, f"Reading the offsets of group {group_id}",
            timeout_error=KafkaError,
        )  # fmt: skip
        return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet; return the names created."""
        existing = await self.list_topics()
        missing = [s for s in specs if s.name not in existing]
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
        return created
