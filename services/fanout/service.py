"""The fan-out: every ingress alert to the partner inboxes its agreements allow, exactly once.

    async with FanoutService(settings) as fanout:
        await fanout.run()          # until stop(); survives broker restarts on its own

For each batch read from ``ingress.*`` (``read_committed``), one Kafka transaction holds the
partner copies (``partner.<id>.inbox``), one audit record per decision (``bus.audit``), the
delivery state (``bus.fanout.state``), dead letters for invalid input (``bus.dlq``) and the input
offsets. Either all of it commits or none of it does.

Fencing: aiokafka lacks KIP-447, so the fan-out does not use consumer-group rebalancing. One
instance owns every ingress partition by fixed assignment and uses one transactional id; a
restarted instance (or a zombie's successor) with the same id fences the old one and aborts its
open transaction, then restores its state from what was committed. Running more instances means
giving each its own ``--instance`` and a disjoint share of partitions (``--instances N``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from bus.agreements import Agreements, load_agreements
from bus.audit import AuditChain
from bus.codec import AlertCodec
from bus.dlq import DeadLetter
from bus.envelope import H_SIGNATURE, ReceivedAlert, RecordError, open_record
from bus.errors import BusError, KafkaError
from bus.kafka import (
    Admin,
    bounded,
    make_consumer,
    make_producer,
    read_to_end,
    stop_client,
    topic_partitions,
)
from bus.keys import HUB_KEY_ID, KeyRing, Signer
from bus.logs import get_logger
from bus.models import MessageType
from bus.policy import Decision, decide
from bus.redact import partner_copy
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings

_PARTITIONER = DefaultPartitioner()
Output = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class FanoutStats:
    alerts: int = 0
    duplicates: int = 0
    delivered: int = 0
    denied: int = 0
    dead_lettered: int = 0
    transactions: int = 0
    restarts: int = 0


class FanoutService:
    """Routes ingress alerts to partner inboxes in Kafka transactions."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        agreements: Agreements | None = None,
        instance: int = 0,
        instances: int = 1,
        max_batch: int = 500,
        poll_timeout_ms: int = 50,
        topic_refresh_s: float = 30.0,
        stall_s: float = 15.0,
    ) -> None:
        if not 0 <= instance < instances:
            raise BusError(f"--instance must be in 0..{instances - 1}, got {instance}")
        self.settings = settings
        self.names = settings.topics
        registry = SchemaRegistry.load(settings.schemas_dir)
        self.codec = AlertCodec(registry)
        self.agreements = agreements or load_agreements(settings.agreements, schemas=registry)
        self.keyring = KeyRing(settings.keys_dir)
        self.hub = Signer.load(settings.keys_dir, HUB_KEY_ID)
        self.instance, self.instances = instance, instances
        self.group_id = f"{settings.topic_prefix}bus-fanout"
        self.transactional_id = f"{settings.topic_prefix}bus-fanout-{instance}"
        self.stats = FanoutStats()
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._topic_refresh_s = topic_refresh_s
        self._stall_s = stall_s
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        # Committed state, rebuilt from Kafka at every (re)start of a session.
        self._recipients: dict[str, tuple[str, ...]] = {}
        self._chain = AuditChain()
        self._partitions: dict[str, list[int]] = {}
        self._log = get_logger("fanout", instance=instance)

    async def __aenter__(self) -> FanoutService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until the service has restored its state and is consuming."""
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    # -- supervision ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Route until ``stop()``; on a broker failure, back off, restore and carry on."""
        backoff_s = 0.5
        while not self._stopping.is_set():
            try:
                await self._session()
                backoff_s = 0.5
            except Exception as exc:
                # Our own wrappers raise KafkaError; aiokafka raises its own errors elsewhere.
                if not (isinstance(exc, KafkaError | OSError) or _from_aiokafka(exc)):
                    raise
                self.stats.restarts += 1
                self._log.warning("fanout_session_failed", error_class=type(exc).__name__,
                                  error=str(exc), retry_in_s=backoff_s)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    async def _session(self) -> None:
        s = self.settings
        producer = make_producer(s, transactional_id=self.transactional_id, client_suffix="fanout")
        consumer: AIOKafkaConsumer | None = None
        try:
            # Starting the transactional producer fences any older instance with the same id and
            # aborts its open transaction, so what we restore below is final.
            clock = asyncio.get_running_loop().time
            started = clock()
            await bounded(producer.start(), s.connect_timeout_ms, "Starting the fan-out producer")
            await self._restore()
            await self._warm_up(producer)
            self._log.info("fanout_restored", transactional_id=self.transactional_id,
                           alerts_known=len(self._recipients),
                           audit_next_index=self._chain.next_index,
                           took_s=round(clock() - started, 3))  # fmt: skip
            consumer = make_consumer(s, group_id=self.group_id, client_suffix="fanout")
            await bounded(consumer.start(), s.connect_timeout_ms, "Starting the fan-out consumer")
            assigned = await self._assign(consumer, set())
            self._ready.set()
            self._log.info(
                "fanout_ready", partitions=len(assigned), alerts_known=len(self._recipients)
            )
            loop = asyncio.get_running_loop()
            next_refresh = last_progress = loop.time() + self._topic_refresh_s
            while not self._stopping.is_set():
                if loop.time() >= next_refresh:
                    assigned = await self._assign(consumer, assigned)
                    next_refresh = loop.time() + self._topic_refresh_s
                    if loop.time() - last_progress > self._stall_s:
                        await self._check_not_stalled(consumer, assigned)
                        last_progress = loop.time()
                if not assigned:
                    await asyncio.sleep(self._poll_timeout_ms / 1000)
                    continue
                batch = await bounded(
                    consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=self._max_batch),
                    s.request_timeout_ms + self._poll_timeout_ms, "Reading ingress",
                    timeout_error=KafkaError,
                )  # fmt: skip
                if batch:
                    await self._process(producer, batch)
                    last_progress = loop.time()
        finally:
            self._ready.clear()
            for client in (consumer, producer):
                if client is not None:
                    problem = await stop_client(client, s.request_timeout_ms)
                    if problem:
                        self._log.warning("client_stop_failed", error=problem)

    async def _warm_up(self, producer: AIOKafkaProducer) -> None:
        """Learn every output topic's partitions now, in one go, not topic by topic mid-batch."""
        topics = [self.names.inbox(p) for p in self.agreements.partners]
        topics += [self.names.audit, self.names.fanout_state, self.names.dlq]
        found = await bounded(
            asyncio.gather(*(producer.partitions_for(t) for t in topics)),
            self.settings.request_timeout_ms,
            "Reading the partitions of the output topics (a missing partner inbox? run "
            "`bus topics apply`)",
            timeout_error=KafkaError,
        )  # fmt: skip
        self._partitions = {t: sorted(ps) for t, ps in zip(topics, found, strict=True)}

    async def _check_not_stalled(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> None:
        """Raise when records wait on a partition but nothing has arrived for a while.

        aiokafka's consumer reconnects by itself after a broker restart, but has been seen to
        stop fetching for manually assigned partitions; a fresh session fixes that.
        """
        ends = await bounded(
            consumer.end_offsets(sorted(assigned)), self.settings.request_timeout_ms,
            "Reading ingress end offsets", timeout_error=KafkaError,
        )  # fmt: skip
        behind = [tp for tp in assigned if await consumer.position(tp) < ends[tp]]
        if behind:
            raise KafkaError(
                f"The ingress consumer has fetched nothing for {self._stall_s:.0f} s while "
                f"{len(behind)} partition(s) hold unread records; starting a new session"
            )

    async def _restore(self) -> None:
        state = await read_to_end(self.settings, self.names.fanout_state)
        recipients: dict[str, tuple[str, ...]] = {}
        for record in state:
            if record.key is not None and record.value is not None:
                recipients[record.key.decode()] = tuple(json.loads(record.value)["recipients"])
        self._recipients = recipients
        # The newest audit record sits before at least one transaction marker, and possibly
        # behind aborted records: look further back until a committed record shows up.
        back, last = 16, list[Any]()
        while not last and back <= 2**40:
            last = await read_to_end(self.settings, self.names.audit, from_offset_back=back)
            back *= 64
        self._chain = AuditChain.resume(json.loads(last[-1].value) if last else None)

    async def _assign(
        self, consumer: AIOKafkaConsumer, current: set[TopicPartition]
    ) -> set[TopicPartition]:
        layout = await topic_partitions(consumer, self.settings.request_timeout_ms)
        wanted = {
            TopicPartition(t, p)
            for t, partitions in layout.items() if self.names.parse_ingress(t) is not None
            for p in partitions
            if zlib.crc32(f"{t}:{p}".encode()) % self.instances == self.instance
        }  # fmt: skip
        if wanted == current:
            return current
        consumer.assign(sorted(wanted))
        new = wanted - current
        if new:
            async with Admin(self.settings) as admin:
                committed = await admin.committed_offsets(self.group_id)
            fresh = [tp for tp in new if tp not in committed]
            for tp in new - set(fresh):
                consumer.seek(tp, committed[tp])
            if fresh:
                await consumer.seek_to_beginning(*fresh)
        self._log.info("fanout_assigned", partitions=len(wanted), new=len(wanted - current))
        return wanted

    # -- one batch, one transaction --------------------------------------------------------

    async def _process(
        self, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        chain = self._chain.copy()
        pending: dict[str, tuple[str, ...]] = {}
        outputs: list[Output] = []
        offsets: dict[TopicPartition, int] = {}
        counts = FanoutStats()
        for tp, records in batch.items():
            for record in records:
                outputs += self._route(record, pending, chain, counts)
                offsets[tp] = record.offset + 1
        await bounded(self._commit(producer, outputs, offsets), self.settings.publish_timeout_ms,
                      "Committing a fan-out transaction", timeout_error=KafkaError)  # fmt: skip
        # Only now, with the transaction committed, does the in-memory state move on.
        self._recipients.update(pending)
        self._chain = chain
        for name in ("alerts", "duplicates", "delivered", "denied", "dead_lettered"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(counts, name))
        self.stats.transactions += 1

    async def _commit(
        self, producer: AIOKafkaProducer, outputs: list[Output], offsets: dict[TopicPartition, int]
    ) -> None:
        # Records are grouped into one batch per topic partition, partitioned by key exactly as
        # the producer would (murmur2): a fifth of the CPU of one send() per record.
        async with producer.transaction():
            batches: dict[tuple[str, int], Any] = {}
            for topic, key, value, headers in outputs:
                partitions = self._partitions.get(topic)
                if partitions is None:
                    found = await producer.partitions_for(topic)
                    partitions = self._partitions[topic] = sorted(found)
                partition = _PARTITIONER(key, partitions, partitions)
                batch = batches.get((topic, partition))
                if batch is None:
                    batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    await producer.send_batch(batch, topic, partition=partition)
                    batch = batches[(topic, partition)] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            for (topic, partition), batch in batches.items():
                await producer.send_batch(batch, topic, partition=partition)
            await producer.send_offsets_to_transaction(offsets, self.group_id)

    def _route(
        self,
        record: ConsumerRecord,
        pending: dict[str, tuple[str, ...]],
        chain: AuditChain,
        counts: FanoutStats,
    ) -> list[Output]:
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        try:
            received = open_record(
                self.codec, self.keyring, names=self.names, topic=record.topic,
                partition=record.partition, offset=record.offset, key=record.key,
                value=record.value, headers=record.headers,
            )  # fmt: skip
        except RecordError as exc:
            counts.dead_lettered += 1
            self._log.warning("ingress_rejected", stage=exc.stage, error=str(exc.error), **source)
            return [self._dead_letter(record, exc)]
        alert = received.alert
        alert_id = str(alert.alert_id)
        base = {
            "alert_id": alert_id, "origin": alert.origin, "alert_type": received.alert_type,
            "msg_type": alert.header.msg_type.value, "tlp": alert.header.tlp.value,
            "occurred_at": alert.header.occurred_at.isoformat(), "source": source,
        }  # fmt: skip
        if alert_id in pending or alert_id in self._recipients:
            counts.duplicates += 1
            reason = "this alert id was routed before; not delivered again"
            return [self._audit(chain, base, partner=None, decision="duplicate", reason=reason)]
        counts.alerts += 1
        referenced: frozenset[str] | None = None
        if alert.header.msg_type in (MessageType.UPDATE, MessageType.CANCEL):
            referenced = frozenset(
                p for ref in alert.header.references
                for p in pending.get(str(ref), self._recipients.get(str(ref), ()))
            )  # fmt: skip
        outputs: list[Output] = []
        copies: dict[tuple[str, ...], tuple[bytes, list[tuple[str, bytes]]]] = {}
        delivered: list[str] = []
        for decision in decide(alert, self.agreements, referenced_recipients=referenced):
            inbox = None
            if decision.deliver:
                value, headers = self._copy(received, decision, copies)
                inbox = self.names.inbox(decision.partner_id)
                outputs.append((inbox, record.key, value, headers))
                delivered.append(decision.partner_id)
                counts.delivered += 1
            else:
                counts.denied += 1
            outputs.append(self._audit(
                chain, base, partner=decision.partner_id,
                decision="delivered" if decision.deliver else "denied",
                reason=decision.reason, agreements=list(decision.agreement_ids),
                redacted=list(decision.redact), inbox=inbox,
            ))  # fmt: skip
        pending[alert_id] = tuple(delivered)
        state = {"recipients": delivered, "origin": alert.origin, "alert_type": received.alert_type}
        outputs.append((self.names.fanout_state, alert_id.encode(), json.dumps(state).encode(), []))
        return outputs

    def _copy(
        self,
        received: ReceivedAlert,
        decision: Decision,
        copies: dict[tuple[str, ...], tuple[bytes, list[tuple[str, bytes]]]],
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The partner's value and headers: the original byte for byte, or a re-signed copy."""
        cached = copies.get(decision.redact)
        if cached is None:
            copy = partner_copy(
                received.alert, received.value, received.headers[H_SIGNATURE], received.key_id,
                decision.redact, codec=self.codec, hub=self.hub,
            )  # fmt: skip
            cached = copies[decision.redact] = (copy.value, copy.headers)
        return cached

    def _audit(
        self, chain: AuditChain, base: dict[str, Any], *, partner: str | None, decision: str,
        reason: str, agreements: Iterable[str] = (), redacted: Iterable[str] = (),
        inbox: str | None = None,
    ) -> Output:  # fmt: skip
        value = chain.append_json({
            **base, "partner": partner, "decision": decision, "reason": reason,
            "agreements": list(agreements), "redacted": list(redacted), "inbox": inbox,
            "decided_at": datetime.now(UTC).isoformat(),
        })  # fmt: skip
        return (self.names.audit, base["alert_id"].encode(), value, [])

    def _dead_letter(self, record: ConsumerRecord, exc: RecordError) -> Output:
        letter = DeadLetter(
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, headers=list(record.headers or ()),
            error=exc.error, stage=exc.stage, source="bus-fanout",
        )  # fmt: skip
        return (self.names.dlq, record.key, record.value, letter.kafka_headers())


def _from_aiokafka(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("aiokafka")
