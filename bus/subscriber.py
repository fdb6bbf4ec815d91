"""Consuming alerts safely: decode, verify, hand to your handler, commit only when durable.

    async def handle(received: ReceivedAlert) -> None:
        print(received.alert.alert_id)

    async with Subscriber(settings, group_id="mk-border-police",
                          topics=["ingress.rs.irregular-crossing"], handler=handle) as sub:
        await sub.run()                      # until sub.stop() or cancellation

A partner inbox also holds notices of the bus: withdrawal notices (an alert it received was
superseded or withdrawn by a follow-up the agreements do not share with it) and hit notices (a
lookup matched its alerts). Reading an inbox needs a ``notice_handler`` too, so that nobody keeps
acting on withdrawn information by accident.

Delivery is at least once: offsets are committed only after every record before them was either
handled or written to ``bus.dlq``. A record that does not decode or verify, or whose handler still
fails after ``BUS_HANDLER_RETRIES`` retries, goes to the dead-letter topic and the subscriber moves
on; it never loops forever on one record and never skips one silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata

from bus.codec import AlertCodec
from bus.dlq import DeadLetter, send_dead_letter
from bus.envelope import ReceivedAlert, ReceivedNotice, RecordError, Stage, open_message
from bus.errors import ConfigError, KafkaError
from bus.kafka import Admin, bounded, make_consumer, make_producer, stop_client
from bus.keys import KeyRing
from bus.logs import get_logger
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings

Handler = Callable[[ReceivedAlert], Awaitable[None]]
NoticeHandler = Callable[[ReceivedNotice], Awaitable[None]]


@dataclass
class SubscriberStats:
    handled: int = 0
    dead_lettered: int = 0
    commits: int = 0


class Subscriber:
    """A consumer-group member that hands verified alerts to ``handler``."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        group_id: str,
        handler: Handler,
        notice_handler: NoticeHandler | None = None,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        keyring: KeyRing | None = None,
        codec: AlertCodec | None = None,
        poll_timeout_ms: int = 500,
    ) -> None:
        if bool(topics) == bool(pattern):
            raise ConfigError("Subscriber needs either topics or a pattern (not both)")
        inboxes = [t for t in topics if settings.topics.parse_inbox(t) is not None]
        if inboxes and notice_handler is None:
            raise ConfigError(
                f"{inboxes[0]} is a partner inbox, which also carries notices: pass "
                "notice_handler= (an async function taking a ReceivedNotice) so that alerts "
                "withdrawn by their origin are acted on"
            )
        self.group_id = group_id
        self._topics = tuple(topics)
        self.stats = SubscriberStats()
        self._settings = settings
        self._handler = handler
        self._notice_handler = notice_handler
        self._keyring = keyring or KeyRing(settings.keys_dir)
        self._codec = codec or AlertCodec(SchemaRegistry.load(settings.schemas_dir))
        self._poll_timeout_ms = poll_timeout_ms
        self._consumer = make_consumer(
            settings, *topics, group_id=group_id, pattern=pattern, client_suffix=group_id
        )
        # Started on the first dead letter only: a partner that may read its inbox but write
        # nowhere (not even bus.dlq) can still subscribe; should a record ever need
        # dead-lettering, AccessDenied stops it without committing that record.
        self._dlq = make_producer(settings, client_suffix=f"{group_id}-dlq")
        self._dlq_started = False
        self._stopping = asyncio.Event()
        self._log = get_logger("subscriber", group_id=group_id)

    async def __aenter__(self) -> Subscriber:
        timeout = self._settings.connect_timeout_ms
        try:
            if self._topics:
                await self._check_topics_exist()
            await bounded(self._consumer.start(), timeout, "Connecting the consumer",
                          timeout_error=KafkaError)  # fmt: skip
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _check_topics_exist(self) -> None:
        # aiokafka would wait for a missing topic until the connect timeout and then say
        # nothing useful; say what is missing and what to do instead.
        async with Admin(self._settings) as admin:
            missing = sorted(set(self._topics) - await admin.list_topics())
        if missing:
            principal = self._settings.principal
            hidden = (
                f", or principal {principal!r} may not see them (no ACL grants it READ: ACLs "
                "follow the sharing agreements, `bus access apply`)"
                if principal
                else ""
            )
            raise ConfigError(
                f"Topic(s) {', '.join(missing)} do not exist on "
                f"{self._settings.bootstrap_servers}{hidden}. Create the bus's topics with "
                "`bus topics apply`, or check the topic names (and BUS_TOPIC_PREFIX)."
            )

    async def _close(self) -> None:
        for client in (self._consumer, self._dlq):
            problem = await stop_client(client, self._settings.request_timeout_ms)
            if problem:
                self._log.warning("client_stop_failed", error=problem)

    def stop(self) -> None:
        """Ask ``run`` to return after the batch in hand is handled and committed."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop()`` is called or the task is cancelled."""
        while not self._stopping.is_set():
            batch = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms)
            if batch:
                await self._process_batch(batch)

    async def _process_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batch.items():
            for record in records:
                await self._process(record)
                offsets[tp] = OffsetAndMetadata(record.offset + 1, "")
        await self._commit(offsets)

    async def _process(self, record: ConsumerRecord) -> None:
        context = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        try:
            received = open_message(
                self._codec,
                self._keyring,
                names=self._settings.topics,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                headers=record.headers,
            )
        except RecordError as exc:
            await self._dead_letter(record, exc.error, exc.stage)
            return
        context = received.log_context()
        attempts = self._settings.handler_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                await self._handle(received)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning(
                    "handler_failed", attempt=attempt, attempts=attempts,
                    error_class=type(exc).__name__, error=str(exc), **context,
                )  # fmt: skip
                if attempt == attempts:
                    await self._dead_letter(record, exc, Stage.HANDLE)
                    return
                await asyncio.sleep(self._settings.handler_retry_backoff_ms * attempt / 1000)
            else:
                self.stats.handled += 1
                return

    async def _handle(self, received: ReceivedAlert | ReceivedNotice) -> None:
        if isinstance(received, ReceivedAlert):
            await self._handler(received)
        elif self._notice_handler is not None:
            await self._notice_handler(received)
        else:
            raise ConfigError(
                f"A {received.record_type} for alert(s) "
                f"{', '.join(map(str, received.notice.alert_ids))} arrived, but this Subscriber "
                "has no notice_handler"
            )

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException, stage: str) -> None:
        if not self._dlq_started:
            await bounded(
                self._dlq.start(), self._settings.connect_timeout_ms,
                "Connecting the dead-letter producer", timeout_error=KafkaError,
            )  # fmt: skip
            self._dlq_started = True
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers or ()),
            error=error,
            stage=stage,
            source=self.group_id,
        )
        await send_dead_letter(
            self._dlq,
            letter,
            timeout_ms=self._settings.publish_timeout_ms,
            topic=self._settings.topics.dlq,
        )
        self.stats.dead_lettered += 1
        self._log.warning(
            "record_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            stage=stage,
            error_class=type(error).__name__,
            error=str(error),
        )

    async def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            await bounded(
                self._consumer.commit(offsets),
                self._settings.request_timeout_ms,
                "Committing consumer offsets",
                timeout_error=KafkaError,
            )
            self.stats.commits += 1
        except KafkaError as exc:
            if isinstance(exc.__cause__, CommitFailedError | IllegalStateError):
                # The group rebalanced: another member re-reads from the last commit, so the
                # records in hand may be handled twice (at least once), never lost.
                self._log.warning("commit_failed_after_rebalance", error=str(exc))
                return
            raise
