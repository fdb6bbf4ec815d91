"""Committing lookups: answers, hit notices and the lookup audit chain in one Kafka transaction.

The fan-out owns the chain on ``bus.audit``; two writers cannot share one hash chain without a
lock across processes. So lookups keep a chain of their own on ``bus.audit.lookups`` (one
partition), written only by this service in Kafka transactions, one at a time, by two producers
with fixed transactional ids taking turns, so a restarted instance fences the old one and
resumes from the last committed record.
``bus audit verify`` checks both chains.

    async with Responder(settings, hub) as responder:
        await responder.commit(outcomes, answers, offsets=..., group_id=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError as AioKafkaError

from bus.access.acl import INDEX_TRANSACTIONAL_IDS
from bus.audit import AuditChain
from bus.codec import AlertCodec
from bus.envelope import (
    H_KEY_ID,
    H_SIGNATURE,
    H_TYPE,
    Headers,
    notice_headers,
)
from bus.errors import KafkaError
from bus.kafka import ReadWindow, bounded, iter_records, make_producer, stop_client
from bus.keys import HUB_KEY_ID, Signer
from bus.models import HitNotice, LookupAnswer
from bus.settings import BusSettings
from services.index.lookup import LookupOutcome

H_REQUEST_ID = "bus-request-id"
Output = tuple[str, bytes | None, bytes, Headers]


async def read_lookup_audit(settings: BusSettings) -> list[dict[str, Any]]:
    """Every committed record of the lookup audit chain, in order."""
    out: list[dict[str, Any]] = []
    async for batch in iter_records(settings, settings.topics.lookup_audit):
        out += [json.loads(r.value) for r in sorted(batch, key=lambda r: r.offset)]
    return out


async def _chain_head(settings: BusSettings, topic: str) -> dict[str, Any] | None:
    """The newest committed record of the chain on ``topic``, None when it has none.

    The log ends with the last transaction's marker (and may end with aborted records), which a
    ``read_committed`` reader never sees: look further back until a committed record shows up.
    """
    back = 16
    while True:
        newest = None
        window = ReadWindow()
        async for batch in iter_records(settings, topic, from_offset_back=back, window=window):
            newest = json.loads(max(batch, key=lambda r: r.offset).value)
        if newest is not None or window.from_start:
            return newest
        back *= 64


@dataclass
class _Job:
    outcomes: list[LookupOutcome]
    refusals: list[LookupAnswer]
    answer_on_kafka: bool
    offsets: dict[TopicPartition, int]
    group_id: str | None
    done: asyncio.Future[None]


class Responder:
    """One transaction at a time, shared by the lookups waiting (two producers take turns)."""

    def __init__(self, settings: BusSettings, codec: AlertCodec, hub: Signer) -> None:
        self.settings = settings
        self.codec = codec
        self.hub = hub
        self.audit_topic = settings.topics.lookup_audit
        self.chain = AuditChain()
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Two producers, taking turns: after a commit the broker still writes the transaction's
        # markers for a moment, and a producer that begins its next transaction meanwhile is told
        # to retry (CONCURRENT_TRANSACTIONS), which costs aiokafka a 20 ms back-off. Lookups
        # committed back to back (group commit under load) would pay it nearly every time.
        # One transaction at a time still: the chain stays one sequence, whichever producer
        # writes it. No linger: a lookup waits for its transaction; there is nothing to batch.
        self._producers = [
            make_producer(settings.model_copy(update={"linger_ms": 0}), transactional_id=tid,
                          client_suffix="index-lookups")
            for tid in (settings.topic_prefix + t for t in INDEX_TRANSACTIONAL_IDS)
        ]  # fmt: skip
        self._turn = 0

    async def __aenter__(self) -> Responder:
        s = self.settings
        try:
            for producer in self._producers:
                await bounded(producer.start(), s.connect_timeout_ms,
                              "Starting the lookup producer", timeout_error=KafkaError)  # fmt: skip
        except BaseException:
            for producer in self._producers:
                await stop_client(producer, s.request_timeout_ms)
            raise
        # The producers fenced any older instance: what the chain holds now is final.
        self.chain = AuditChain.resume(await _chain_head(s, self.audit_topic))
        self._task = asyncio.create_task(self._committer())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for producer in self._producers:
            await stop_client(producer, self.settings.request_timeout_ms)

    def answer_record(self, answer: LookupAnswer) -> Output:
        value = self.codec.encode_record(answer.record_type, answer.to_avro())
        headers: Headers = [
            (H_TYPE, answer.record_type.encode()),
            (H_SIGNATURE, self.hub.sign(value)),
            (H_KEY_ID, HUB_KEY_ID.encode()),
        ]
        if answer.request_id is not None:
            headers.append((H_REQUEST_ID, str(answer.request_id).encode()))
        topic = self.settings.topics.lookup_answers(answer.requester)
        key = str(answer.request_id).encode() if answer.request_id else None
        return (topic, key, value, headers)  # fmt: skip

    def notice_record(self, notice: HitNotice) -> Output:
        value = self.codec.encode_notice(notice)
        headers = notice_headers(notice, self.hub.sign(value))
        return (self.settings.topics.inbox(notice.owner), str(notice.lookup_id).encode(), value,
                headers)  # fmt: skip

    async def commit(
        self,
        outcomes: Sequence[LookupOutcome],
        refusals: Sequence[LookupAnswer] = (),
        *,
        answer_on_kafka: bool,
        offsets: dict[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        """Hit notices and audit records of ``outcomes`` (and their answers, and ``refusals``,
        when ``answer_on_kafka``), with the consumed ``offsets``, committed to Kafka.

        Group commit: lookups that arrive while a transaction is in flight share the next one,
        so concurrent HTTP lookups wait for one transaction, not for each other's in turn.
        """
        job = _Job(list(outcomes), list(refusals), answer_on_kafka, offsets or {}, group_id,
                   asyncio.get_running_loop().create_future())  # fmt: skip
        self._queue.append(job)
        self._wake.set()
        await job.done

    async def _committer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            jobs, self._queue = self._queue, []
            if not jobs:
                continue
            chain = self.chain.copy()
            outputs: list[Output] = []
            offsets: dict[TopicPartition, int] = {}
            group_id = None
            for job in jobs:
                for outcome in job.outcomes:
                    if job.answer_on_kafka:
                        outputs.append(self.answer_record(outcome.answer))
                    outputs += [self.notice_record(n) for n in outcome.notices]
                    outputs.append((self.audit_topic, None, chain.append_json(outcome.audit), []))
                outputs += [self.answer_record(a) for a in job.refusals]
                offsets.update(job.offsets)
                group_id = job.group_id or group_id
            try:
                await self._transact(outputs, offsets, group_id)
            except asyncio.CancelledError:
                for job in jobs:
                    job.done.cancel()
                raise
            except Exception as exc:
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            self.chain = chain
            for job in jobs:
                if not job.done.done():
                    job.done.set_result(None)

    async def _transact(
        self, outputs: list[Output], offsets: dict[TopicPartition, int], group_id: str | None
    ) -> None:
        s, p = self.settings, self._producers[self._turn]
        self._turn = 1 - self._turn
        await bounded(p.begin_transaction(), s.publish_timeout_ms, "Beginning a lookup transaction",
                      timeout_error=KafkaError)  # fmt: skip
        try:
            try:
                futures = [await p.send(t, value=v, key=k, headers=h) for t, k, v, h in outputs]
            except AioKafkaError as exc:  # e.g. a topic that does not exist
                raise KafkaError(f"Writing a lookup: {type(exc).__name__}: {exc}") from exc
            await bounded(asyncio.gather(*futures), s.publish_timeout_ms,
                          "Writing lookup answers, notices and audit")  # fmt: skip
            if offsets and group_id:
                await bounded(p.send_offsets_to_transaction(offsets, group_id),
                              s.publish_timeout_ms, "Committing request offsets")  # fmt: skip
            await bounded(p.commit_transaction(), s.publish_timeout_ms,
                          "Committing a lookup transaction")  # fmt: skip
        except BaseException:
            # Bounded: a dead broker may never answer; a restarted producer fences what is left.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.abort_transaction(), s.request_timeout_ms / 1000)
            raise
