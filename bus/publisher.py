"""Publishing alerts: validate, encode, sign, produce to ``ingress.<origin>.<alert-type>``.

    async with Publisher(settings, origin="rs") as pub:
        result = await pub.publish(alert)          # returns once Kafka acknowledged it
        print(result.topic, result.partition, result.offset)

The producer is idempotent with ``acks=all``. Every broker call is bounded: when Kafka is down a
publish raises ``PublishTimeout`` after ``BUS_PUBLISH_TIMEOUT_MS`` instead of hanging. The timeout
bounds the whole call's waiting on Kafka (handing over, then the acknowledgement), not each
wait of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from bus.batching import PartitionBatches
from bus.codec import AlertCodec
from bus.envelope import alert_headers, signed_headers
from bus.errors import BusError, KafkaError
from bus.kafka import WaitBudget, bounded, make_producer, stop_client
from bus.keys import Signer
from bus.logs import get_logger
from bus.models import Alert
from bus.publishing import PreparingPool, Ready, make_ready
from bus.publishing.ready import parse_alert, prepare_alert
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from bus.topics import check_country

__all__ = ["PreparedAlert", "PublishResult", "Publisher", "parse_alert"]


@dataclass(frozen=True)
class PublishResult:
    """Where Kafka stored a published alert."""

    alert_id: uuid.UUID
    topic: str
    partition: int
    offset: int


class PreparedAlert(NamedTuple):
    """An alert validated, encoded and signed by a publisher, ready to send."""

    alert: Alert
    value: bytes
    signature: bytes


#: ``publish_many`` hands alerts to the preparing workers from this many on; fewer are
#: prepared in the publishing process (a chunk's round trip is not worth it).
PARALLEL_FROM = 1000


class Publisher:
    """Publishes one country's alerts to its ingress topics.

    With ``BUS_PUBLISH_WORKERS=N`` (N > 0) the publisher starts N worker processes when it
    starts, and a ``publish_many`` of ``PARALLEL_FROM`` alerts or more is prepared by them and by
    this process together (``bus.publishing``). The workers load the signing key from
    ``BUS_KEYS_DIR`` themselves, so they are used only when ``signer`` and ``codec`` are not
    given; the results are the same either way.
    """

    def __init__(
        self,
        settings: BusSettings,
        *,
        origin: str,
        signer: Signer | None = None,
        codec: AlertCodec | None = None,
    ) -> None:
        self.origin = check_country(origin)
        self._settings = settings
        self._signer = signer or Signer.load(settings.keys_dir, origin)
        self._codec = codec or AlertCodec(SchemaRegistry.load(settings.schemas_dir))
        self._producer = make_producer(settings, client_suffix=f"publisher-{origin}")
        self._log = get_logger("publisher", origin=origin)
        self._started = False
        self._topics: dict[str, str] = {}  # alert type -> this origin's ingress topic
        self._pool: PreparingPool | None = None
        if settings.publish_workers:
            if signer is None and codec is None:
                self._pool = PreparingPool(
                    settings,
                    origin=self.origin,
                    workers=settings.publish_workers,
                    public_key=self._signer.public_key,
                )
            else:
                self._log.info(
                    "publish_workers_unused",
                    reason="a signer or codec was given; workers load theirs from the settings",
                )

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the preparing workers (none unless ``BUS_PUBLISH_WORKERS``)."""
        return self._pool.pids if self._pool else []

    async def __aenter__(self) -> Publisher:
        try:
            await bounded(
                self._producer.start(), self._settings.connect_timeout_ms, "Connecting to Kafka"
            )
            if self._pool is not None:
                await self._pool.start()
        except BaseException:
            await self._close(flush=False)
            raise
        self._started = True
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self._close(flush=exc_type is None)

    async def _close(self, *, flush: bool) -> None:
        self._started = False
        if self._pool is not None:
            await self._pool.close()
        # stop() flushes pending batches; bounded so that a dead broker cannot hold us forever.
        problem = await stop_client(self._producer, self._settings.publish_timeout_ms)
        if problem:
            self._log.warning("producer_stop_failed", error=problem)

    def prepare(self, alert: Alert | Mapping[str, Any]) -> PreparedAlert:
        """Validate, check the origin, encode and sign: (alert, value, signature).

        Raises ``ValidationError`` or ``OriginMismatch``; pure and thread-safe, so a caller with
        many alerts may prepare them off the event loop.
        """
        return PreparedAlert(*prepare_alert(alert, self._codec, self._signer, self.origin))

    def _ready(self, alert: Alert | Mapping[str, Any]) -> Ready:
        return make_ready(alert, self._codec, self._signer, self.origin)

    def _check_started(self) -> None:
        if not self._started:
            raise BusError("Publisher is not started: use `async with Publisher(...) as pub:`")

    def _topic(self, alert_type: str) -> str:
        topic = self._topics.get(alert_type)
        if topic is None:
            topic = self._settings.topics.ingress(self.origin, alert_type)
            self._topics[alert_type] = topic
        return topic

    async def _enqueue(self, prepared: PreparedAlert, budget: WaitBudget) -> tuple[uuid.UUID, Any]:
        """Hand a prepared alert to the producer; return the delivery future."""
        self._check_started()
        alert, value, signature = prepared
        topic = self._topic(alert.alert_type)
        delivery = await budget(
            self._producer.send(
                topic,
                value=value,
                key=alert.record_key,
                headers=alert_headers(alert, signature, self._signer.key_id),
            ),
            f"Publishing alert {alert.alert_id} to {topic}",
        )
        return alert.alert_id, delivery

    async def publish(self, alert: Alert | Mapping[str, Any]) -> PublishResult:
        """Publish one alert and return once Kafka acknowledged it.

        Raises ``PublishTimeout`` once the call has waited ``BUS_PUBLISH_TIMEOUT_MS`` for Kafka.
        """
        budget = WaitBudget(self._settings.publish_timeout_ms)
        alert_id, delivery = await self._enqueue(self.prepare(alert), budget)
        md = await budget(delivery, f"Waiting for Kafka to acknowledge alert {alert_id}")
        result = PublishResult(alert_id, md.topic, md.partition, md.offset)
        self._log.info(
            "alert_published",
            alert_id=str(alert_id),
            topic=result.topic,
            partition=result.partition,
            offset=result.offset,
        )
        return result

    async def publish_many(
        self, alerts: Iterable[Alert | Mapping[str, Any]]
    ) -> list[PublishResult]:
        """Publish alerts in batches; return once Kafka acknowledged every one, in order.

        All alerts are validated, encoded and signed before the first is sent, so one that
        cannot be publishes nothing; the error is the first such alert's, as if they were
        prepared one by one. Raises ``PublishTimeout`` once the call has waited
        ``BUS_PUBLISH_TIMEOUT_MS`` for Kafka in all (preparing the alerts does not count).

        With preparing workers, ``alerts`` is read whole before any is prepared (unless it is a
        list or a tuple), so an error raised by a generator itself comes before any alert's.
        """
        self._check_started()
        layout = _Layout(self)
        if self._pool is not None:
            alerts = alerts if isinstance(alerts, list | tuple) else list(alerts)  # see above
            if len(alerts) >= PARALLEL_FROM:
                async for chunk in self._pool.prepare(alerts, self._ready):
                    await layout.add(chunk)
                return await layout.publish()
        await layout.add(self._ready(alert) for alert in alerts)
        return await layout.publish()

    async def publish_prepared(self, prepared: Sequence[PreparedAlert]) -> list[PublishResult]:
        """Publish alerts that ``prepare`` returned, in batches, as ``publish_many`` does.

        For callers that prepare each alert on its own (off the event loop, or to set one that
        does not encode aside).
        """
        self._check_started()
        layout = _Layout(self)
        await layout.add(Ready.of(alert, value, signature) for alert, value, signature in prepared)
        return await layout.publish()

    def _check_size(self, alert_id: str, key: bytes, value: bytes, headers: list[Any]) -> None:
        """Refuse, before anything is sent, a record larger than the producer may send.

        ``send`` checks this for each record; a batch is checked by nobody before the broker.
        """
        limit: int = self._producer._max_request_size
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > limit:
            raise KafkaError(
                f"Alert {alert_id} is {size} bytes as a Kafka record; the producer sends "
                f"at most {limit} bytes in a request. Nothing of this call was sent: publish "
                "the alert without its bulkiest content, or the others without it"
            )

    async def _send_batches(self, topic: str, partition: int, batches: list[Any]) -> list[Any]:
        """Hand one partition's batches to the producer in order; return their futures.

        Unbounded here: the caller bounds all partitions' handing over together.
        """
        return [
            await self._producer.send_batch(batch, topic, partition=partition) for batch in batches
        ]

    async def _partitions(self, topic: str, budget: WaitBudget) -> list[int]:
        """The partitions of ``topic`` from the producer's metadata (fetched if not known)."""
        found = await budget(
            self._producer.partitions_for(topic), f"Reading the partitions of {topic}"
        )
        return sorted(found)


class _Layout:
    """One call's alerts laid out in producer batches, then sent and acknowledged.

    Each alert goes into the open batch of its partition (chosen from the key as ``send`` would;
    a new batch when that one is full), and only its bytes are kept, so a large call leaves the
    garbage collector little to walk. Batches go out with ``send_batch``, a record costing an
    append instead of a ``send``; each alert's offset is its batch's base offset plus its place
    in the batch. Nothing is sent before ``publish``. Enqueueing waits while the producer's
    buffer is full; that wait, learning partitions and the acknowledgements share one
    ``BUS_PUBLISH_TIMEOUT_MS`` (a ``WaitBudget``).
    """

    def __init__(self, publisher: Publisher) -> None:
        self._pub = publisher
        self._budget = WaitBudget(publisher._settings.publish_timeout_ms)
        self._batches = PartitionBatches(publisher._producer.create_batch)
        self._key_id = publisher._signer.key_id.encode()
        self._origin = publisher.origin.encode()
        self._alert_ids: list[str] = []
        self._kinds: dict[str, tuple[str, bytes]] = {}  # alert type -> its topic, its header value

    async def add(self, ready: Iterable[Ready]) -> None:
        """Lay out these alerts, in order, after those laid out before."""
        pub, batches, alert_ids = self._pub, self._batches, self._alert_ids
        limit: int = pub._producer._max_request_size
        origin, key_id, kinds = self._origin, self._key_id, self._kinds
        for alert_type, alert_id, key, value, signature, key_hash in ready:
            kind = kinds.get(alert_type)
            if kind is None:
                kind = kinds[alert_type] = await self._learn(alert_type)
            topic, type_value = kind
            headers = signed_headers(type_value, origin, alert_id.encode(), signature, key_id)
            if len(value) + len(key) + 1024 >= limit:  # the record's framing is far below 1 KiB
                pub._check_size(alert_id, key, value, headers)
            batches.add(topic, key, value, headers, key_hash=key_hash)
            alert_ids.append(alert_id)

    async def _learn(self, alert_type: str) -> tuple[str, bytes]:
        """The topic of ``alert_type`` (its partitions learnt) and its type header's value."""
        topic = self._pub._topic(alert_type)
        if not self._batches.knows(topic):
            self._batches.add_topic(topic, await self._pub._partitions(topic, self._budget))
        return topic, alert_type.encode()

    async def publish(self) -> list[PublishResult]:
        """Send every batch, wait until Kafka acknowledged them all, and say where each went."""
        count = len(self._alert_ids)
        if not count:
            return []
        pub, budget = self._pub, self._budget
        pub._check_started()
        laid_out = self._batches.by_partition()
        deliveries = await budget(
            asyncio.gather(*(pub._send_batches(t, p, b) for (t, p), b in laid_out.items())),
            f"Handing {count} alert(s) to the producer",
        )
        acknowledged = await budget(
            asyncio.gather(*(d for partition in deliveries for d in partition)),
            f"Waiting for Kafka to acknowledge {count} alert(s)",
        )
        base_offsets: dict[tuple[str, int], list[int]] = {tp: [] for tp in laid_out}
        for md in acknowledged:
            base_offsets[(md.topic, md.partition)].append(md.offset)
        with _collector_paused():  # see there
            offsets = self._batches.offsets(base_offsets)
            return [
                PublishResult(uuid.UUID(alert_id), placed.topic, placed.partition, offset)
                for alert_id, placed, offset in zip(
                    self._alert_ids, self._batches.placements, offsets, strict=True
                )
            ]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off Python's cycle collector while a call's results are made.

    A call of many alerts makes two objects per alert that all live on (a ``PublishResult`` and
    its ``UUID``), which sets off a full collection walking every object of the process, the
    caller's alerts too: measured with 50,000 alerts, two thirds of the time the results
    took went to that walk. These objects hold no cycles; the collector runs again right after.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
