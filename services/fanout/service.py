"""The fan-out: every ingress alert to the partner inboxes its agreements allow, exactly once.

    async with FanoutService(settings) as fanout:
        await fanout.run()          # until stop(); survives broker restarts on its own

For each batch read from ``ingress.*`` (``read_committed``), one Kafka transaction holds the
partner copies and withdrawal notices (``partner.<id>.inbox``), one audit record per decision
(``bus.audit``), the delivery state (``bus.fanout.state``), dead letters (``bus.dlq``) and the
input offsets. Either all of it commits or none of it does, and it commits only once Kafka has
acknowledged every record of it (``services.fanout.transaction``).

A batch Kafka refuses is aborted and read again in a new session, the suspect alerts each in a
transaction of their own; an alert whose copy a partner's inbox refuses for good (too large, not
authorised, …) is retried ``max_attempts`` times, then routed without that copy: the audit says
``failed`` for that partner and the alert goes to ``bus.dlq`` with the reason.

Fencing: aiokafka lacks KIP-447, so the fan-out does not use consumer-group rebalancing. One
instance owns every ingress partition by fixed assignment and uses one transactional id; a
restarted instance (or a zombie's successor) with the same id fences the old one and aborts its
open transaction, then restores its state from what was committed. Running more instances means
giving each its own ``--instance`` and a disjoint share of partitions (``--instances N``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from bus.admin import FANOUT_GROUP
from bus.agreements import Agreements, load_agreements
from bus.audit import AuditChain
from bus.codec import AlertCodec
from bus.errors import BusError, KafkaError
from bus.kafka import Admin, bounded, make_consumer, make_producer, stop_client, topic_partitions
from bus.keys import HUB_KEY_ID, KeyRing, Signer
from bus.logs import get_logger
from bus.models import Alert
from bus.ops.metrics import FanoutMetrics
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from services.fanout.router import Counts, Router
from services.fanout.state import Restorer, Routed
from services.fanout.transaction import DeliveryFailed, Output, commit

#: Where an ingress record sits: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass
class FanoutStats(Counts):
    transactions: int = 0
    aborted: int = 0
    restarts: int = 0
    #: Records of ``bus.fanout.state`` and ``bus.audit`` skipped at the last start (malformed).
    state_malformed: int = 0


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
        max_attempts: int = 3,
        clock: Callable[[Alert], datetime] | None = None,
    ) -> None:
        """``clock`` says when an alert counts as routed, for its expiry: the wall clock unless
        given. Only a replay of history sets it (the demo routes its 2014 and 2018 samples as of
        the moment each was issued); no setting or command-line option exposes it."""
        if not 0 <= instance < instances:
            raise BusError(f"--instance must be in 0..{instances - 1}, got {instance}")
        self.settings = settings
        self.names = settings.topics
        registry = SchemaRegistry.load(settings.schemas_dir)
        self.agreements = agreements or load_agreements(settings.agreements, schemas=registry)
        self.router = Router(
            agreements=self.agreements, codec=AlertCodec(registry),
            keyring=KeyRing(settings.keys_dir), hub=Signer.load(settings.keys_dir, HUB_KEY_ID),
            names=self.names, clock=clock,
        )  # fmt: skip
        self.instance, self.instances = instance, instances
        self.group_id = f"{settings.topic_prefix}{FANOUT_GROUP}"
        self.transactional_id = f"{settings.topic_prefix}bus-fanout-{instance}"
        self.stats = FanoutStats()
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._topic_refresh_s = topic_refresh_s
        self._stall_s = stall_s
        self._max_attempts = max_attempts
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        # Committed state, rebuilt from Kafka at every (re)start of a session.
        self._routed = Routed()
        self._chain = AuditChain()
        self._partitions: dict[str, list[int]] = {}
        # Refused writes, kept across sessions: alerts to route alone, and for how long.
        self._suspects: set[Position] = set()
        self._attempts: dict[Position, dict[str, str]] = {}
        self._tries: dict[Position, int] = {}
        self._refused_in_row = 0
        self.metrics = FanoutMetrics(self.names, ready=self._ready.is_set,
                                     partners=self.agreements.partners,
                                     audit_head=lambda: self._chain.next_index)  # fmt: skip
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
            except DeliveryFailed as exc:
                # Not the broker's health: read the batch again soon, suspects alone; a refusal
                # that keeps coming back (one of the bus's own topics) is paced like a failure.
                self.stats.aborted += 1
                self.stats.restarts += 1
                self._refused_in_row += 1
                pause_s = min(0.05 * 2**self._refused_in_row, 10.0)
                self._log.warning("fanout_transaction_refused", error=str(exc), retry_in_s=pause_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause_s)
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
                           alerts_known=len(self._routed),
                           audit_next_index=self._chain.next_index,
                           state_malformed=self.stats.state_malformed,
                           took_s=round(clock() - started, 3))  # fmt: skip
            consumer = make_consumer(s, group_id=self.group_id, client_suffix="fanout")
            await bounded(consumer.start(), s.connect_timeout_ms, "Starting the fan-out consumer")
            assigned = await self._assign(consumer, set())
            self.metrics.follow(consumer)
            self._ready.set()
            self._log.info("fanout_ready", partitions=len(assigned), alerts_known=len(self._routed))
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
        restorer = Restorer(self.settings, self._log)
        self._routed = await restorer.routed()
        self._chain = await restorer.chain()
        self.stats.state_malformed = len(restorer.malformed)

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

    # -- one batch, one or more transactions -----------------------------------------------

    async def _process(
        self, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Route a fetched batch: one transaction, and one of its own for each suspect alert."""
        group: list[ConsumerRecord] = []
        for records in batch.values():
            for record in records:
                if _position(record) in self._suspects:
                    await self._transact(producer, group)
                    await self._transact(producer, [record])
                    group = []
                else:
                    group.append(record)
        await self._transact(producer, group)

    async def _transact(self, producer: AIOKafkaProducer, records: list[ConsumerRecord]) -> None:
        if not records:
            return
        routed = self._routed.overlay()
        chain = self._chain.copy()
        now = datetime.now(UTC)
        outputs: list[Output] = []
        ends: list[int] = []  # where each record's outputs end, to find whose a refusal was
        offsets: dict[TopicPartition, int] = {}
        counts = Counts()
        for record in records:
            routing = self.router.route(
                record, routed, chain, now=now, undeliverable=self._given_up(record)
            )
            outputs += routing.outputs
            ends.append(len(outputs))
            counts.add(routing.counts)
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        started = time.perf_counter()
        try:
            await commit(
                producer, outputs, offsets, group_id=self.group_id, partitions=self._partitions,
                timeout_ms=self.settings.publish_timeout_ms,
                abort_timeout_ms=self.settings.request_timeout_ms,
            )  # fmt: skip
        except DeliveryFailed as exc:
            owners = [records[bisect.bisect_right(ends, i)] for i in range(len(outputs))]
            self._blame(exc, outputs, owners, alone=len(records) == 1)
            raise
        # Only now, with the transaction committed, does the in-memory state move on.
        self._routed.merge(routed)
        self._chain = chain
        self.stats.add(counts)
        self.stats.transactions += 1
        self.metrics.committed((r.topic for r in records), counts,
                               seconds=time.perf_counter() - started)  # fmt: skip
        self._refused_in_row = 0
        for record in records:
            position = _position(record)
            self._suspects.discard(position)
            self._attempts.pop(position, None)
            self._tries.pop(position, None)

    def _blame(
        self, exc: DeliveryFailed, outputs: list[Output], owners: list[ConsumerRecord], alone: bool
    ) -> None:
        """Note which alerts a refused transaction held; count attempts of an alert alone."""
        for refusal in exc.refusals:
            for i in refusal.outputs:
                position = _position(owners[i])
                self._suspects.add(position)
                partner = outputs[i].partner
                if alone and partner is not None and refusal.permanent:
                    self._attempts.setdefault(position, {})[partner] = (
                        f"partner.{partner}.inbox refused the copy for good "
                        f"({type(refusal.error).__name__}: {refusal.error})"
                    )
                elif not refusal.permanent or partner is None:
                    self._log.error(
                        "fanout_write_refused", topic=refusal.topic,
                        error_class=type(refusal.error).__name__, error=str(refusal.error),
                        ingress_topic=position[0], ingress_partition=position[1],
                        ingress_offset=position[2],
                    )  # fmt: skip
        if alone and exc.refusals:
            position = _position(owners[exc.refusals[0].outputs[0]])
            self._tries[position] = self._tries.get(position, 0) + 1

    def _given_up(self, record: ConsumerRecord) -> dict[str, str] | None:
        """The partners whose copy of this alert is given up on, after ``max_attempts``."""
        position = _position(record)
        if self._tries.get(position, 0) < self._max_attempts:
            return None
        failed = self._attempts.get(position)
        if failed:
            self._log.error(
                "fanout_copy_undeliverable", partners=sorted(failed),
                attempts=self._tries[position], topic=position[0], partition=position[1],
                offset=position[2],
            )  # fmt: skip
        return failed


def _position(record: ConsumerRecord) -> Position:
    return (record.topic, record.partition, record.offset)


def _from_aiokafka(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("aiokafka")
