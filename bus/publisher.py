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
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pydantic
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from bus.batching import PartitionBatches
from bus.codec import AlertCodec
from bus.envelope import alert_headers
from bus.errors import BusError, KafkaError, OriginMismatch, ValidationError
from bus.kafka import WaitBudget, bounded, make_producer, stop_client
from bus.keys import Signer
from bus.logs import get_logger
from bus.models import ALERT_MODELS, Alert
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from bus.topics import check_country


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


def parse_alert(data: Mapping[str, Any], alert_type: str | None = None) -> Alert:
    """Validate an Avro-shaped dict (as in ``examples/alerts/``) into its alert model.

    The type comes from ``alert_type`` or from the dict's ``alert_type`` key. A problem raises
    ``ValidationError`` naming the field, e.g. ``header.occurred_at``.
    """
    body = dict(data)
    declared = body.pop("alert_type", None)
    kind = alert_type or declared
    if not isinstance(kind, str) or kind not in ALERT_MODELS:
        raise ValidationError(
            f"Alert type {kind!r} is not known; expected one of {', '.join(sorted(ALERT_MODELS))} "
            "(give it as the 'alert_type' key or --type)",
            field="alert_type",
        )
    try:
        return ALERT_MODELS[kind].model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(kind, exc) from exc


def validation_error(alert_type: str, exc: pydantic.ValidationError) -> ValidationError:
    """The first problem, naming the field and the kind of value that came, never the value:
    a name or a date of birth is personal data, and error messages end up in logs."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(alert)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    got = "" if first["type"] == "missing" else f" (got {_kind(first['input'])})"
    return ValidationError(
        f"Invalid {alert_type} alert: field {where}: {first['msg']}{got}{more}", field=where
    )


def _kind(value: Any) -> str:
    if isinstance(value, str | bytes | list | dict):
        return f"{type(value).__name__} of length {len(value)}"
    return "null" if value is None else type(value).__name__


class Publisher:
    """Publishes one country's alerts to its ingress topics."""

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

    async def __aenter__(self) -> Publisher:
        try:
            await bounded(
                self._producer.start(), self._settings.connect_timeout_ms, "Connecting to Kafka"
            )
        except BaseException:
            await self._close(flush=False)
            raise
        self._started = True
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self._close(flush=exc_type is None)

    async def _close(self, *, flush: bool) -> None:
        # stop() flushes pending batches; bounded so that a dead broker cannot hold us forever.
        problem = await stop_client(self._producer, self._settings.publish_timeout_ms)
        if problem:
            self._log.warning("producer_stop_failed", error=problem)
        self._started = False

    def prepare(self, alert: Alert | Mapping[str, Any]) -> PreparedAlert:
        """Validate, check the origin, encode and sign: (alert, value, signature).

        Raises ``ValidationError`` or ``OriginMismatch``; pure and thread-safe, so a caller with
        many alerts may prepare them off the event loop.
        """
        if not isinstance(alert, Alert):
            alert = parse_alert(alert)
        self._check_origin(alert)
        value = self._codec.encode(alert)
        return PreparedAlert(alert, value, self._signer.sign(value))

    def _check_origin(self, alert: Alert) -> None:
        if alert.origin != self.origin:
            raise OriginMismatch(
                f"Alert {alert.alert_id} has header.origin {alert.origin!r}, but this publisher "
                f"publishes as {self.origin!r}; a country publishes only its own alerts"
            )

    def _check_started(self) -> None:
        if not self._started:
            raise BusError("Publisher is not started: use `async with Publisher(...) as pub:`")

    def _topic(self, alert: Alert) -> str:
        topic = self._topics.get(alert.alert_type)
        if topic is None:
            topic = self._settings.topics.ingress(self.origin, alert.alert_type)
            self._topics[alert.alert_type] = topic
        return topic

    async def _enqueue(self, prepared: PreparedAlert, budget: WaitBudget) -> tuple[uuid.UUID, Any]:
        """Hand a prepared alert to the producer; return the delivery future."""
        self._check_started()
        alert, value, signature = prepared
        topic = self._topic(alert)
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
        cannot be publishes nothing. Raises ``PublishTimeout`` once the call has waited
        ``BUS_PUBLISH_TIMEOUT_MS`` for Kafka in all (preparing the alerts does not count).
        """
        return await self._publish_batched(self.prepare(a) for a in alerts)

    async def publish_prepared(self, prepared: Sequence[PreparedAlert]) -> list[PublishResult]:
        """Publish alerts that ``prepare`` returned, in batches, as ``publish_many`` does.

        For callers that prepare each alert on its own (off the event loop, or to set one that
        does not encode aside).
        """
        return await self._publish_batched(prepared)

    async def _publish_batched(self, prepared: Iterable[PreparedAlert]) -> list[PublishResult]:
        """Lay the alerts out in producer batches, then send them and wait for Kafka.

        Each alert goes into the open batch of its partition (chosen from the key as ``send``
        would; a new batch when that one is full), and only its bytes are kept: the models are
        let go as soon as they are encoded, so a large call leaves the garbage collector little
        to walk. Batches go out with ``send_batch``, a record costing an append instead of a
        ``send``; each alert's offset is its batch's base offset plus its place in the batch.
        Nothing is sent before every alert was prepared. Enqueueing waits while the producer's
        buffer is full; that wait, learning partitions and the acknowledgements share one
        ``BUS_PUBLISH_TIMEOUT_MS`` (a ``WaitBudget``).
        """
        self._check_started()
        budget = WaitBudget(self._settings.publish_timeout_ms)
        batches = PartitionBatches(self._producer.create_batch)
        key_id = self._signer.key_id
        alert_ids: list[uuid.UUID] = []
        for alert, value, signature in prepared:
            topic = self._topic(alert)
            if not batches.knows(topic):
                batches.add_topic(topic, await self._partitions(topic, budget))
            key, headers = alert.record_key, alert_headers(alert, signature, key_id)
            self._check_size(alert, key, value, headers)
            batches.add(topic, key, value, headers)
            alert_ids.append(alert.alert_id)
        if not alert_ids:
            return []
        laid_out = batches.by_partition()
        deliveries = await budget(
            asyncio.gather(*(self._send_batches(t, p, b) for (t, p), b in laid_out.items())),
            f"Handing {len(alert_ids)} alert(s) to the producer",
        )
        acknowledged = await budget(
            asyncio.gather(*(d for partition in deliveries for d in partition)),
            f"Waiting for Kafka to acknowledge {len(alert_ids)} alert(s)",
        )
        base_offsets: dict[tuple[str, int], list[int]] = {tp: [] for tp in laid_out}
        for md in acknowledged:
            base_offsets[(md.topic, md.partition)].append(md.offset)
        offsets = batches.offsets(base_offsets)
        return [
            PublishResult(alert_id, placed.topic, placed.partition, offset)
            for alert_id, placed, offset in zip(alert_ids, batches.placements, offsets, strict=True)
        ]

    def _check_size(
        self, alert: Alert, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Refuse, before anything is sent, a record larger than the producer may send.

        ``send`` checks this for each record; a batch is checked by nobody before the broker.
        """
        limit: int = self._producer._max_request_size
        if len(value) + len(key) + 1024 < limit:  # the record's framing is far below 1 KiB
            return
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > limit:
            raise KafkaError(
                f"Alert {alert.alert_id} is {size} bytes as a Kafka record; the producer sends "
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
