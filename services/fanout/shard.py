"""One fan-out shard: its ingress partitions, its transactional ids and its audit chain.

Shard ``k`` of ``S`` holds partition ``p`` of every ingress topic where ``p % S == k``. Keying
on the partition number alone, not on the topic, keeps an alert and its follow-ups on one shard
even across alert types: a follow-up is keyed like the alert it follows up, and the same key
lands on the same partition number of every topic with the same partition count.

Each shard writes with transactional ids of its own (``bus-fanout-shard-<k>`` and
``bus-fanout-shard-<k>-2``, two producers taking turns) and its own audit chain (``chain`` k, in
partition k of ``bus.audit``). Two producers, because for a moment after a commit the broker
still writes the transaction's markers, and a producer beginning its next transaction meanwhile
is told to retry (CONCURRENT_TRANSACTIONS): back to back, nearly every transaction would wait
aiokafka's 20 ms back-off. Transactions still follow one another, whichever producer writes.

Starting a session fences whatever instance held the shard before (its open transactions are
aborted, its late writes refused), and only then restores the chain head and the delivery state
from what was committed. A session starts only while the instance's membership of the shards
group still holds the shard, so a zombie woken up late rejoins the group rather than take its
shards back. One frozen in the middle of starting a session may finish it and fence its
successor in turn; the successor, still given the shard by the group, fences it back. Each
restores from what was committed before it routes, so nothing is written twice.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import ProducerFenced

from bus.audit import AuditChain
from bus.errors import KafkaError
from bus.kafka import Admin, bounded, make_consumer, make_producer, stop_client, topic_partitions
from services.fanout.router import Counts
from services.fanout.state import Restorer
from services.fanout.transaction import DeliveryFailed, Output, commit

if TYPE_CHECKING:
    from services.fanout.service import FanoutService

#: Where an ingress record sits: (topic, partition, offset).
Position = tuple[str, int, int]


class ShardWorker:
    """Routes the ingress partitions of one shard while its instance owns the shard."""

    def __init__(self, service: FanoutService, shard: int, shards: int) -> None:
        self.service = service
        self.shard, self.shards = shard, shards
        self.transactional_id = f"{service.settings.topic_prefix}bus-fanout-shard-{shard}"
        #: The ids of the shard's two producers, which take turns (see the module's docstring).
        self.transactional_ids = (self.transactional_id, f"{self.transactional_id}-2")
        self._turn = 0
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._chain = AuditChain(chain=shard)
        self._partitions: dict[str, list[int]] = {}
        # Refused writes, kept across sessions: alerts to route alone, and for how long.
        self._suspects: set[Position] = set()
        self._attempts: dict[Position, dict[str, str]] = {}
        self._tries: dict[Position, int] = {}
        self._refused_in_row = 0
        self._log = service.log.bind(shard=shard)

    def stop(self) -> None:
        self._stopping.set()

    # -- supervision ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Route until stopped or the shard is no longer this instance's; carry on after a
        broker failure, and after being fenced only once the shards group confirms ownership."""
        backoff_s = 0.5
        while not self._stopping.is_set():
            try:
                if not await self.service.owns(self.shard):
                    self._log.info("fanout_shard_not_owned", transactional_id=self.transactional_id)
                    return
                await self._session()
                backoff_s = 0.5
            except Exception as exc:
                if _fenced(exc):
                    # Another instance took the shard (or the broker timed our transaction
                    # out): whatever this session had open was aborted. Ask the group again.
                    self.service.stats.fenced += 1
                    self._log.warning("fanout_shard_fenced", transactional_id=self.transactional_id)
                    continue
                if isinstance(exc, DeliveryFailed):
                    # Not the broker's health: read the batch again soon, suspects alone; a
                    # refusal that keeps coming back (the bus's own topics) is paced.
                    self.service.stats.aborted += 1
                    self.service.stats.restarts += 1
                    self._refused_in_row += 1
                    pause_s = min(0.05 * 2**self._refused_in_row, 10.0)
                    self._log.warning("fanout_transaction_refused", error=str(exc),
                                      retry_in_s=pause_s)  # fmt: skip
                    await self._pause(pause_s)
                    continue
                # Our own wrappers raise KafkaError; aiokafka raises its own errors elsewhere.
                if not (isinstance(exc, KafkaError | OSError) or _from_aiokafka(exc)):
                    raise
                self.service.stats.restarts += 1
                self._log.warning("fanout_session_failed", error_class=type(exc).__name__,
                                  error=str(exc), retry_in_s=backoff_s)  # fmt: skip
                await self._pause(backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _session(self) -> None:
        service, s = self.service, self.service.settings
        # No linger: a transaction hands the producer whole batches (``send_batch``) and then
        # waits for them, so lingering would only add its milliseconds to every alert's latency.
        producers = [
            make_producer(s.model_copy(update={"linger_ms": 0}), transactional_id=tid,
                          client_suffix=f"fanout-shard-{self.shard}")
            for tid in self.transactional_ids
        ]  # fmt: skip
        consumer: AIOKafkaConsumer | None = None
        try:
            # Starting the transactional producers fences any older holder of this shard and
            # aborts its open transactions, so what we restore below is final.
            clock = asyncio.get_running_loop().time
            started = clock()
            for producer in producers:
                await bounded(producer.start(), s.connect_timeout_ms,
                              "Starting the fan-out producer")  # fmt: skip
            await self._restore(started)
            await self._warm_up(producers)
            self._log.info("fanout_restored", transactional_id=self.transactional_id,
                           alerts_known=len(service.routed),
                           audit_next_index=self._chain.next_index,
                           took_s=round(clock() - started, 3))  # fmt: skip
            consumer = make_consumer(s, group_id=service.group_id,
                                     client_suffix=f"fanout-shard-{self.shard}")  # fmt: skip
            await bounded(consumer.start(), s.connect_timeout_ms, "Starting the fan-out consumer")
            assigned = await self._assign(consumer, set())
            service.metrics.follow(consumer)
            service.metrics.chain_head(self.shard, self._chain.next_index)
            self.ready.set()
            service.readiness_changed()
            loop = asyncio.get_running_loop()
            next_refresh = last_progress = loop.time() + service.topic_refresh_s
            while not self._stopping.is_set():
                if loop.time() >= next_refresh:
                    assigned = await self._assign(consumer, assigned)
                    next_refresh = loop.time() + service.topic_refresh_s
                    if loop.time() - last_progress > service.stall_s:
                        await self._check_not_stalled(consumer, assigned)
                        last_progress = loop.time()
                if not assigned:
                    await self._pause(service.poll_timeout_ms / 1000)
                    continue
                batch = await bounded(
                    consumer.getmany(timeout_ms=service.poll_timeout_ms,
                                     max_records=service.max_batch),
                    s.request_timeout_ms + service.poll_timeout_ms, "Reading ingress",
                    timeout_error=KafkaError,
                )  # fmt: skip
                if batch:
                    await self._process(producers, batch)
                    last_progress = loop.time()
        finally:
            self.ready.clear()
            if consumer is not None:
                service.metrics.unfollow(consumer)
            for client in (consumer, *producers):
                if client is not None:
                    problem = await stop_client(client, s.request_timeout_ms)
                    if problem:
                        self._log.warning("client_stop_failed", error=problem)

    async def _restore(self, fenced_at: float) -> None:
        service = self.service
        restorer = Restorer(service.settings, self._log, service.malformed)
        self._chain = await restorer.chain(self.shard)
        await service.restore_routed(since=fenced_at)

    async def _warm_up(self, producers: list[AIOKafkaProducer]) -> None:
        """Learn every output topic's partitions now, in one go, not topic by topic mid-batch."""
        names = self.service.names
        topics = [names.inbox(p) for p in self.service.agreements.partners]
        topics += [names.audit, names.fanout_state, names.dlq]
        found = await bounded(
            asyncio.gather(*(p.partitions_for(t) for t in topics for p in producers)),
            self.service.settings.request_timeout_ms,
            "Reading the partitions of the output topics (a missing partner inbox? run "
            "`bus topics apply`)",
            timeout_error=KafkaError,
        )  # fmt: skip
        self._partitions = {t: sorted(ps) for t, ps in zip(topics, found[:: len(producers)],
                                                             strict=True)}  # fmt: skip

    async def _check_not_stalled(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> None:
        """Raise when records wait on a partition but nothing has arrived for a while.

        aiokafka's consumer reconnects by itself after a broker restart, but has been seen to
        stop fetching for manually assigned partitions; a fresh session fixes that.
        """
        ends = await bounded(
            consumer.end_offsets(sorted(assigned)), self.service.settings.request_timeout_ms,
            "Reading ingress end offsets", timeout_error=KafkaError,
        )  # fmt: skip
        behind = [tp for tp in assigned if await consumer.position(tp) < ends[tp]]
        if behind:
            raise KafkaError(
                f"The ingress consumer has fetched nothing for {self.service.stall_s:.0f} s "
                f"while {len(behind)} partition(s) hold unread records; starting a new session"
            )

    async def _assign(
        self, consumer: AIOKafkaConsumer, current: set[TopicPartition]
    ) -> set[TopicPartition]:
        settings, names = self.service.settings, self.service.names
        layout = await topic_partitions(consumer, settings.request_timeout_ms)
        wanted = {
            TopicPartition(t, p)
            for t, partitions in layout.items() if names.parse_ingress(t) is not None
            for p in partitions if p % self.shards == self.shard
        }  # fmt: skip
        if wanted == current:
            return current
        consumer.assign(sorted(wanted))
        new = wanted - current
        if new:
            async with Admin(settings) as admin:
                committed = await admin.committed_offsets(self.service.group_id)
            fresh = [tp for tp in new if tp not in committed]
            for tp in new - set(fresh):
                consumer.seek(tp, committed[tp])
            if fresh:
                await consumer.seek_to_beginning(*fresh)
        self._log.info("fanout_assigned", partitions=len(wanted), new=len(wanted - current))
        return wanted

    # -- one batch, one or more transactions -----------------------------------------------

    async def _process(
        self, producers: list[AIOKafkaProducer], batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Route a fetched batch: one transaction, and one of its own for each suspect alert."""
        group: list[ConsumerRecord] = []
        for records in batch.values():
            for record in records:
                if _position(record) in self._suspects:
                    await self._transact(producers, group)
                    await self._transact(producers, [record])
                    group = []
                else:
                    group.append(record)
        await self._transact(producers, group)

    async def _transact(
        self, producers: list[AIOKafkaProducer], records: list[ConsumerRecord]
    ) -> None:
        if not records:
            return
        producer = producers[self._turn]
        self._turn = (self._turn + 1) % len(producers)
        service = self.service
        routed = service.routed.overlay()
        chain = self._chain.copy()
        now = datetime.now(UTC)
        outputs: list[Output] = []
        ends: list[int] = []  # where each record's outputs end, to find whose a refusal was
        offsets: dict[TopicPartition, int] = {}
        counts = Counts()
        route = service.router.route
        for record in records:
            routing = route(record, routed, chain, now=now, counts=counts,
                            undeliverable=self._given_up(record))  # fmt: skip
            outputs += routing.outputs
            ends.append(len(outputs))
            offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        s = service.settings
        started = time.perf_counter()
        try:
            await commit(
                producer, outputs, offsets, group_id=service.group_id,
                partitions=self._partitions, timeout_ms=s.publish_timeout_ms,
                abort_timeout_ms=s.request_timeout_ms,
            )  # fmt: skip
        except DeliveryFailed as exc:
            if not _fenced(exc):
                owners = [records[bisect.bisect_right(ends, i)] for i in range(len(outputs))]
                self._blame(exc, outputs, owners, alone=len(records) == 1)
            raise
        # Only now, with the transaction committed, do the delivery state and the chain move on.
        service.routed.merge(routed)
        self._chain = chain
        service.stats.add(counts)
        service.stats.transactions += 1
        service.metrics.committed((r.topic for r in records), counts,
                                  seconds=time.perf_counter() - started)  # fmt: skip
        service.metrics.chain_head(self.shard, chain.next_index)
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
        if self._tries.get(position, 0) < self.service.max_attempts:
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


def _fenced(exc: BaseException | None) -> bool:
    """Whether a newer producer with our transactional id took over: said directly, as the
    cause of another error, or as the reason a transaction's batches were refused."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ProducerFenced):
            return True
        if isinstance(exc, DeliveryFailed) and any(
            isinstance(r.error, ProducerFenced) for r in exc.refusals
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
