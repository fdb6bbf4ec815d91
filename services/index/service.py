"""The index service: verified ingress into the database, lookups over Kafka and HTTP.

    async with IndexService(settings, index_settings) as service:
        await service.run()             # until stop()
    await IndexService(settings, index_settings).catch_up()   # fold up to the current end, stop

Ingress (every ``ingress.<cc>.<type>``, ``read_committed``, fixed assignment of all partitions)
is verified as the fan-out verifies it and folded in batches. Decoding and verifying run in
worker processes (``services.index.opening``) while this process reads the next batch and writes
the last one; batches are written in the order read, each batch's entries, facts and next offsets
in one SQLite transaction, and at start the consumer seeks to the offsets the database holds, so
a restart, even after ``kill -9``, neither loses nor repeats a record. Records that fail
verification are skipped (the fan-out dead-letters them) and logged.

Lookup requests (``lookup.<requester>.requests``) are read in a consumer group; each fetched
batch is answered in one Kafka transaction with its offsets (``services.index.responder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bus.access.acl import INDEX_LOOKUPS
from bus.admin import ensure_index_topics
from bus.agreements import Agreements, load_agreements
from bus.codec import AlertCodec
from bus.errors import DecodeError, KafkaError
from bus.kafka import bounded, make_consumer, stop_client, topic_partitions
from bus.keys import HUB_KEY_ID, KeyRing, Signer
from bus.logs import get_logger
from bus.models import LookupAnswer
from bus.models._common import to_epoch_millis
from bus.ops.metrics import IndexMetrics
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from services.index.extract import IndexedAlert
from services.index.lookup import LookupEngine, LookupOutcome, LookupRefused, parse_request
from services.index.opening import IngressOpener, RawRecord
from services.index.responder import Responder
from services.index.settings import IndexSettings
from services.index.store import IndexStore

#: Batches read and being opened while the oldest of them waits to be written, at most.
_BATCHES_OPENING = 2


@dataclass(frozen=True)
class _Batch:
    """A batch read from ingress, opened: what to fold in, and the offsets to record with it."""

    alerts: list[IndexedAlert]
    offsets: dict[tuple[str, int], int]
    records: int


class IndexService:
    """Keeps the joint index and the statistics, and answers lookups."""

    def __init__(
        self,
        settings: BusSettings,
        index_settings: IndexSettings,
        *,
        agreements: Agreements | None = None,
        clock: Callable[[], datetime] | None = None,
        poll_timeout_ms: int = 100,
        topic_refresh_s: float = 5.0,
    ) -> None:
        """``clock`` says when entries count as expired: the wall clock unless given. Only a
        replay of history sets it (the demo's 2014 samples); no setting or option exposes it."""
        self.settings, self.index_settings = settings, index_settings
        self.registry = SchemaRegistry.load(settings.schemas_dir)
        self.codec = AlertCodec(self.registry)
        self.agreements = agreements or load_agreements(settings.agreements, schemas=self.registry)
        self.keyring = KeyRing(settings.keys_dir)
        self.store = IndexStore.open(index_settings.database)
        self.clock = clock or (lambda: datetime.now(UTC))
        # Lookups read through a connection of their own: in WAL mode it sees the last
        # committed batch while the next one is being written.
        self.reader = IndexStore.open(index_settings.database)
        self.engine = LookupEngine(self.reader, self.agreements, expiry_clock=self.clock)
        self.group_id = settings.topic_prefix + INDEX_LOOKUPS
        self.records = self.rejected = self.lookups = self.restarts = 0
        self.fetched = 0  # records read from ingress; ``records`` once they are committed
        #: CPU seconds spent decoding and verifying ingress, in worker processes or this one.
        self.opening_cpu_s = 0.0
        self._poll_timeout_ms = poll_timeout_ms
        self._topic_refresh_s = topic_refresh_s
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._responder: Responder | None = None
        self.metrics = IndexMetrics(
            ready=lambda: self._ready.is_set() and self._responder is not None,
            entries=lambda: IndexStore.entry_count(index_settings.database),
            in_flight=lambda: self.fetched - self.records,
            audit_head=lambda: self._responder.chain.next_index if self._responder else None,
            audit_chain=settings.topics.lookup_audit,
        )
        self._log = get_logger("index")

    async def __aenter__(self) -> IndexService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    @property
    def responder(self) -> Responder:
        if self._responder is None:
            raise LookupRefused("The index is not running yet: no lookups are answered")
        return self._responder

    # -- topics --------------------------------------------------------------------------------

    async def ensure_topics(self) -> None:
        """The lookup topics of every requester, the owners' inboxes and the audit chain, made
        as `bus topics apply` makes them (on a secure bus the administrator has made them)."""
        await ensure_index_topics(self.settings, self.agreements)

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, answer_lookups: bool = True) -> None:
        """Index ingress and answer lookups until ``stop()``. On a broker failure, back off and
        start a new session: the offsets in the database and the lookup producer's fencing
        make the restart exact."""
        backoff_s = 0.5
        while not self._stopping.is_set():
            try:
                await self._session(answer_lookups)
                backoff_s = 0.5
            except Exception as exc:
                if not (isinstance(exc, KafkaError | OSError)
                        or type(exc).__module__.startswith("aiokafka")):  # fmt: skip
                    raise
                self.restarts += 1
                self._log.warning("index_session_failed", error_class=type(exc).__name__,
                                  error=str(exc), retry_in_s=backoff_s)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    async def _session(self, answer_lookups: bool) -> None:
        await self.ensure_topics()
        hub = Signer.load(self.settings.keys_dir, HUB_KEY_ID)
        async with Responder(self.settings, self.codec, hub) as responder:
            self._responder = responder
            tasks = [asyncio.create_task(self._ingest(until_end=False))]
            if answer_lookups:
                tasks.append(asyncio.create_task(self._answer_requests()))
            stopper = asyncio.create_task(self._stopping.wait())
            try:
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopper:
                        task.result()  # a crashed loop stops the service, with its error
            finally:
                for task in (*tasks, stopper):
                    task.cancel()
                await asyncio.gather(*tasks, stopper, return_exceptions=True)
                self._responder = None
                self._ready.clear()

    async def catch_up(self) -> None:
        """Fold ingress up to its end as of now, then return (``bus index rebuild``)."""
        await self._ingest(until_end=True)

    async def _ingest(self, *, until_end: bool) -> None:
        s = self.settings
        consumer = make_consumer(s, group_id=None, client_suffix="index",
                                 max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
        await bounded(consumer.start(), s.connect_timeout_ms, "Starting the index consumer")
        opener = IngressOpener(s, workers=self.index_settings.index_workers)
        # Batches being opened (in the worker processes), oldest first, and the batch being
        # written: reading, opening and writing overlap, and batches commit in reading order.
        opening: deque[asyncio.Task[_Batch]] = deque()
        writing: asyncio.Task[None] | None = None
        try:
            loop = asyncio.get_running_loop()
            assigned = await self._assign(consumer, set())
            self.metrics.follow(consumer)
            ends = await consumer.end_offsets(sorted(assigned)) if until_end else {}
            self._ready.set()
            self._log.info("index_ready", partitions=len(assigned), **self.store.counts())
            next_refresh = loop.time() + self._topic_refresh_s
            while not self._stopping.is_set():
                if until_end and all([await consumer.position(tp) >= ends[tp] for tp in ends]):
                    break
                if not until_end and loop.time() >= next_refresh:
                    assigned = await self._assign(consumer, assigned)
                    next_refresh = loop.time() + self._topic_refresh_s
                if not assigned:
                    await asyncio.sleep(self._poll_timeout_ms / 1000)
                    continue
                batch = await bounded(
                    consumer.getmany(timeout_ms=self._poll_timeout_ms,
                                     max_records=self.index_settings.index_max_batch),
                    s.request_timeout_ms + self._poll_timeout_ms, "Reading ingress",
                )  # fmt: skip
                if batch:
                    self.fetched += sum(len(records) for records in batch.values())
                    opening.append(asyncio.create_task(self._open_batch(opener, batch)))
                # Write the oldest batch once it is open; wait for it when enough are queued.
                while opening and (opening[0].done() or len(opening) > _BATCHES_OPENING):
                    opened = await opening.popleft()
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self._apply(opened))
            while opening:
                opened = await opening.popleft()
                if writing is not None:
                    await writing
                writing = asyncio.create_task(self._apply(opened))
            if writing is not None:
                await writing
        finally:
            for task in opening:
                task.cancel()
            await asyncio.gather(*opening, return_exceptions=True)
            opener.close()
            if writing is not None and not writing.done():
                # The thread finishes its transaction anyway; let it, bounded.
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writing), 30)
            await stop_client(consumer, s.request_timeout_ms)

    async def _assign(
        self, consumer: AIOKafkaConsumer, current: set[TopicPartition]
    ) -> set[TopicPartition]:
        layout = await topic_partitions(consumer, self.settings.request_timeout_ms)
        wanted = {TopicPartition(t, p) for t, ps in layout.items()
                  if self.settings.topics.parse_ingress(t) is not None for p in ps}  # fmt: skip
        if wanted == current:
            return current
        # A new assignment forgets every position: keep those of the partitions being read
        # (ahead of the database by the batches in flight, which still commit).
        kept = {tp: await consumer.position(tp) for tp in current & wanted}
        consumer.assign(sorted(wanted))
        for tp, position in kept.items():
            consumer.seek(tp, position)
        stored = self.store.offsets()
        fresh = []
        for tp in wanted - current:
            if (tp.topic, tp.partition) in stored:
                consumer.seek(tp, stored[(tp.topic, tp.partition)])
            else:
                fresh.append(tp)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        self._log.info("index_assigned", partitions=len(wanted), new=len(wanted - current))
        return wanted

    async def _open_batch(
        self, opener: IngressOpener, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> _Batch:
        records: list[RawRecord] = []
        offsets: dict[tuple[str, int], int] = {}
        for tp, fetched in batch.items():
            records += [(r.topic, r.partition, r.offset, r.key, r.value, r.headers)
                        for r in fetched]  # fmt: skip
            offsets[(tp.topic, tp.partition)] = fetched[-1].offset + 1
        opened = await opener.open(records)
        self.opening_cpu_s += opened.cpu_s
        for rejection in opened.rejections:
            self.rejected += 1
            self.metrics.rejected.inc()
            self._log.warning("index_record_rejected", **rejection._asdict())
        return _Batch(opened.alerts, offsets, len(records))

    async def _apply(self, batch: _Batch) -> None:
        now_ms = to_epoch_millis(self.clock())
        # SQLite work off the event loop, so that lookups keep answering meanwhile.
        changed = await asyncio.to_thread(self.store.apply_batch, batch.alerts, batch.offsets,
                                          now_ms=now_ms)  # fmt: skip
        self.records += batch.records
        self.metrics.records.inc(batch.records)
        self._log.debug("index_batch", records=batch.records, alerts=len(batch.alerts),
                        changed=changed)  # fmt: skip

    # -- lookups -------------------------------------------------------------------------------

    async def lookup(self, requester: str, tokens: list[object], *, channel: str) -> LookupAnswer:
        """Answer one lookup (HTTP, command line): notices and audit committed before it returns."""
        outcome = self.engine.lookup(requester, tokens, lookup_id=uuid.uuid4(), channel=channel,
                                     now=datetime.now(UTC))  # fmt: skip
        await self.responder.commit([outcome], answer_on_kafka=False)
        self.lookups += 1
        self.metrics.looked_up([outcome.audit])
        return outcome.answer

    async def _answer_requests(self) -> None:
        s = self.settings
        consumer = make_consumer(s, group_id=self.group_id, client_suffix="index-requests",
                                 pattern=s.topics.lookup_requests_pattern)  # fmt: skip
        await bounded(consumer.start(), s.connect_timeout_ms, "Starting the lookup consumer")
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=200)
                if batch:
                    await self._answer_batch(batch)
        finally:
            await stop_client(consumer, s.request_timeout_ms)

    async def _answer_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        outcomes: list[LookupOutcome] = []
        refusals: list[LookupAnswer] = []
        offsets: dict[TopicPartition, int] = {}
        now = datetime.now(UTC)
        for tp, records in batch.items():
            requester = self.settings.topics.parse_lookup_requests(tp.topic) or "unknown"
            if requester not in self.agreements.partners:
                # Nobody the agreements know can write there, and nobody may read an answer.
                self._log.error("lookup_unknown_requester", topic=tp.topic, records=len(records),
                                error=f"Unknown requester {requester!r}: not a partner of the "
                                "agreements file; its requests are not answered")  # fmt: skip
                offsets[tp] = records[-1].offset + 1
                continue
            for record in records:
                request_id = None
                try:
                    if record.value is None:
                        raise LookupRefused("The request record has no value")
                    try:
                        _, data = self.codec.decode_record(record.value)
                    except DecodeError as exc:
                        raise LookupRefused(f"Not a lookup-request record: {exc}") from None
                    with contextlib.suppress(ValueError, TypeError):
                        request_id = uuid.UUID(str(data.get("request_id")))
                    request = parse_request(self.engine, requester, data)
                    outcomes.append(self.engine.lookup(
                        requester, request.tokens, lookup_id=request.request_id, channel="kafka",
                        now=now,
                    ))  # fmt: skip
                except LookupRefused as exc:
                    self._log.warning("lookup_refused", requester=requester, topic=tp.topic,
                                      partition=tp.partition, offset=record.offset,
                                      error=str(exc))  # fmt: skip
                    refusals.append(self.engine.refusal(requester, request_id, str(exc), now))
            offsets[tp] = records[-1].offset + 1
        await self.responder.commit(outcomes, refusals, answer_on_kafka=True, offsets=offsets,
                                    group_id=self.group_id)  # fmt: skip
        self.lookups += len(outcomes)
        self.metrics.looked_up([o.audit for o in outcomes], refused=len(refusals))
