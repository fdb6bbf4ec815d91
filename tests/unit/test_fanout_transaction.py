"""The transaction commits only what Kafka acknowledged, and its abort is bounded.

The broker's side is covered by tests/integration/test_fanout_hostile.py (an inbox that refuses
a copy); here a stand-in producer makes the order of calls and a hanging abort deterministic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)

from bus.errors import KafkaError
from services.fanout.transaction import DeliveryFailed, Output, commit


class _Batch:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def append(self, **record: Any) -> object:
        self.records.append(record)
        return object()


class _TxnManager:
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wait_for_transaction_end(self) -> asyncio.Future[None]:
        return self.waiter


class _Producer:
    """Records calls; batches to ``refuse`` fail with their error; abort may hang; batches to
    ``unauthorised`` are never answered and the transaction fails as aiokafka's does."""

    def __init__(
        self, refuse: dict[str, BaseException], *, abort_hangs: bool = False,
        unauthorised: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        self.refuse = refuse
        self.abort_hangs = abort_hangs
        self.unauthorised = unauthorised
        self.calls: list[str] = []
        self._txn_manager = _TxnManager()

    async def begin_transaction(self) -> None:
        self.calls.append("begin")

    def create_batch(self) -> _Batch:
        return _Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.calls.append(f"send {topic}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic in self.refuse:
            future.set_exception(self.refuse[topic])
        elif topic in self.unauthorised:
            self._txn_manager.waiter.set_exception(TopicAuthorizationFailedError({topic}))
        else:
            future.set_result(None)
        return future

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        self.calls.append("offsets")

    async def commit_transaction(self) -> None:
        self.calls.append("commit")

    async def abort_transaction(self) -> None:
        self.calls.append("abort")
        if self.abort_hangs:
            await asyncio.Event().wait()


OUTPUTS = [
    Output("partner.mk.inbox", b"k", b"copy", [], partner="mk"),
    Output("bus.audit", b"k", b"audit", []),
    Output("partner.europol.inbox", b"k", b"copy", [], partner="europol"),
]
OFFSETS = {TopicPartition("ingress.rs.readmission", 0): 8}


async def _commit(producer: _Producer, abort_timeout_ms: int = 1000) -> None:
    await commit(
        producer, OUTPUTS, OFFSETS, group_id="g", partitions={}, timeout_ms=5000,  # type: ignore[arg-type]
        abort_timeout_ms=abort_timeout_ms,
    )  # fmt: skip


async def test_every_batch_is_acknowledged_before_the_offsets_and_the_commit() -> None:
    producer = _Producer({})
    await _commit(producer)
    assert producer.calls[0] == "begin"
    assert producer.calls[-2:] == ["offsets", "commit"]
    assert sorted(producer.calls[1:-2]) == [
        "send bus.audit", "send partner.europol.inbox", "send partner.mk.inbox",
    ]  # fmt: skip


async def test_a_refused_batch_aborts_and_says_which_outputs_and_why() -> None:
    producer = _Producer({"partner.mk.inbox": MessageSizeTooLargeError()})
    with pytest.raises(DeliveryFailed) as caught:
        await _commit(producer)
    assert "commit" not in producer.calls
    assert "offsets" not in producer.calls
    assert producer.calls[-1] == "abort"
    [refusal] = caught.value.refusals
    assert refusal.topic == "partner.mk.inbox"
    assert refusal.outputs == (0,)
    assert refusal.permanent
    assert "MessageSizeTooLargeError" in refusal.describe()


async def test_a_retriable_refusal_is_not_taken_for_a_permanent_one() -> None:
    producer = _Producer({"bus.audit": NotLeaderForPartitionError()})
    with pytest.raises(DeliveryFailed) as caught:
        await _commit(producer)
    assert not caught.value.refusals[0].permanent


async def test_an_abort_that_never_answers_is_given_up_after_its_timeout() -> None:
    producer = _Producer({"partner.mk.inbox": MessageSizeTooLargeError()}, abort_hangs=True)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed):
        await _commit(producer, abort_timeout_ms=300)
    assert time.monotonic() - started < 3


async def test_a_topic_the_producer_may_not_write_fails_the_transaction_at_once() -> None:
    producer = _Producer({}, unauthorised=frozenset({"partner.europol.inbox"}))
    with pytest.raises(DeliveryFailed) as caught:
        await _commit(producer)
    assert "commit" not in producer.calls
    [refusal] = caught.value.refusals
    assert refusal.topic == "partner.europol.inbox"
    assert refusal.outputs == (2,)
    assert refusal.permanent


async def test_delivery_failed_is_a_kafka_error() -> None:
    assert issubclass(DeliveryFailed, KafkaError)
