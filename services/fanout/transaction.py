"""One fan-out transaction that commits only what Kafka accepted.

aiokafka's producer lets a transaction commit even when one of its batches was refused (a record
too large for the topic, a topic it may not write): the refused batch's future fails, but nothing
stops the commit. So every batch's delivery is awaited here before the input offsets are added
and the transaction committed; any failure aborts it, bounded by a timeout so that a dead broker
cannot hold the service, and says which outputs were refused and why.

    await commit(producer, outputs, offsets, group_id=..., partitions=..., timeout_ms=...)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bus.batching import murmur2
from bus.errors import KafkaError
from bus.kafka import bounded

_PARTITIONER = DefaultPartitioner()


class Output(NamedTuple):
    """One record to write; ``partner`` is set for a partner's copy or notice, ``partition``
    for a record that must go to one partition (an audit chain's), whatever its key. A tuple:
    a dozen are made for every alert."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partner: str | None = None
    partition: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A batch Kafka refused: the topic, the error, and the outputs (by index) it held."""

    topic: str
    error: BaseException
    outputs: tuple[int, ...]

    @property
    def permanent(self) -> bool:
        """Whether retrying cannot help (too large, not authorised, invalid), as Kafka says."""
        return not getattr(self.error, "retriable", False)

    def describe(self) -> str:
        return f"{self.topic} refused the record: {type(self.error).__name__}: {self.error}"


class DeliveryFailed(KafkaError):
    """Kafka refused part of a transaction, which was aborted; ``refusals`` say what and why."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__(
            "Kafka refused part of a fan-out transaction, which was aborted: "
            + "; ".join(r.describe() for r in refusals[:3])
        )


async def commit(
    producer: AIOKafkaProducer,
    outputs: Sequence[Output],
    offsets: dict[TopicPartition, int],
    *,
    group_id: str,
    partitions: dict[str, list[int]],
    timeout_ms: int,
    abort_timeout_ms: int,
) -> None:
    """Write ``outputs`` and ``offsets`` in one transaction.

    Records are grouped into one batch per topic partition, partitioned by key exactly as the
    producer would (murmur2): a fifth of the CPU of one send() per record. Raises
    ``DeliveryFailed`` when a batch was refused, ``KafkaError`` on any other failure; the
    transaction is aborted in both cases.
    """
    await bounded(producer.begin_transaction(), timeout_ms, "Beginning a fan-out transaction",
                  timeout_error=KafkaError)  # fmt: skip
    try:
        await bounded(
            _send_and_commit(producer, outputs, offsets, group_id, partitions), timeout_ms,
            "Committing a fan-out transaction", timeout_error=KafkaError,
        )  # fmt: skip
    except BaseException:
        await _abort(producer, abort_timeout_ms)
        raise


async def _send_and_commit(
    producer: AIOKafkaProducer,
    outputs: Sequence[Output],
    offsets: dict[TopicPartition, int],
    group_id: str,
    partitions: dict[str, list[int]],
) -> None:
    batches: dict[tuple[str, int], tuple[Any, list[int]]] = {}
    sent: list[tuple[str, asyncio.Future[Any], list[int]]] = []
    hashes: dict[bytes, int] = {}  # an alert's copies share its key: hash it once
    for i, output in enumerate(outputs):
        topic, key, value, headers = output.topic, output.key, output.value, output.headers
        known = partitions.get(topic)
        if known is None:
            known = partitions[topic] = sorted(await producer.partitions_for(topic))
        partition = output.partition
        if partition is None:
            if key is None:
                partition = _PARTITIONER(key, known, known)
            else:
                # The producer's own choice (murmur2, as Kafka's Java client), key hashed once.
                digest = hashes.get(key)
                if digest is None:
                    digest = hashes[key] = murmur2(key) & 0x7FFFFFFF
                partition = known[digest % len(known)]
        batch, members = batches.get((topic, partition), (None, []))
        if batch is None:
            batch, members = producer.create_batch(), []
            batches[(topic, partition)] = (batch, members)
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            future = await producer.send_batch(batch, topic, partition=partition)
            sent.append((topic, future, members))
            batch, members = producer.create_batch(), []
            batches[(topic, partition)] = (batch, members)
            batch.append(key=key, value=value, timestamp=None, headers=headers)
        members.append(i)
    for (topic, partition), (batch, members) in batches.items():
        sent.append((topic, await producer.send_batch(batch, topic, partition=partition), members))
    delivered = asyncio.gather(*(f for _, f, _ in sent), return_exceptions=True)
    failed = await _transaction_failed(producer, delivered)
    if failed is not None:
        # A partition the producer may not add to the transaction (no WRITE on the topic): its
        # batches are never sent, so their futures would wait for ever.
        topics = _topics_named(failed)
        raise DeliveryFailed([
            Refusal(topic, failed, tuple(members)) for topic, _, members in sent
            if topic in topics or not topics
        ])  # fmt: skip
    results = await delivered
    refusals = [
        Refusal(topic, result, tuple(members))
        for (topic, _, members), result in zip(sent, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if refusals:
        raise DeliveryFailed(refusals)
    await producer.send_offsets_to_transaction(offsets, group_id)
    await producer.commit_transaction()


async def _transaction_failed(
    producer: AIOKafkaProducer, delivered: asyncio.Future[Any]
) -> BaseException | None:
    """Wait until every batch is answered, or the transaction itself failed; say which.

    aiokafka marks a transaction failed (an abortable error) when the broker refuses to add a
    partition to it, and only its transaction waiter learns of it.
    """
    manager = getattr(producer, "_txn_manager", None)
    waiter = manager.wait_for_transaction_end() if manager is not None else None
    if waiter is None:
        return None
    await asyncio.wait({delivered, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if delivered.done() or not waiter.done() or waiter.cancelled():
        return None
    error = waiter.exception()
    if error is not None:
        # The batches left behind are failed by the abort; nobody awaits them any more.
        delivered.add_done_callback(lambda f: f.cancelled() or f.exception())
    return error  # type: ignore[no-any-return]


def _topics_named(error: BaseException) -> set[str]:
    named = error.args[0] if error.args else None
    return {str(t) for t in named} if isinstance(named, set | frozenset | list | tuple) else set()


async def _abort(producer: AIOKafkaProducer, timeout_ms: int) -> None:
    # Bounded: against a dead broker the abort may never be answered; the caller's session
    # ends and the next one fences whatever is left open.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.abort_transaction(), timeout_ms / 1000)
