"""The thin layer over aiokafka: client construction from settings, bounded calls, topic admin.

Everything else in the bus talks to Kafka through these functions, so that timeouts, error
wrapping and client settings live in one place. aiokafka can wait forever when the broker is
down (aiokafka issue #1101), so every call here is bounded by a timeout from settings.

Every client carries the credentials of the settings (``bus.kafka.security``), and reports a
refused login or a missing ACL as what it is (``bus.kafka.diagnose``): the producer and the
consumer built here are thin subclasses of aiokafka's that translate those errors where
aiokafka raises them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from aiokafka.errors import KafkaError as _AioKafkaError

from bus.errors import KafkaError, PublishTimeout
from bus.kafka.diagnose import explain_connection_failure, explain_denial, is_denial
from bus.kafka.security import client_security
from bus.settings import BusSettings

T = TypeVar("T")
_TOPIC_ALREADY_EXISTS = 36


async def bounded(
    awaitable: Awaitable[T],
    timeout_ms: int,
    what: str,
    *,
    timeout_error: type[KafkaError] = PublishTimeout,
) -> T:
    """Await ``awaitable`` for at most ``timeout_ms``; wrap client errors in ``KafkaError``."""
    try:
        # asyncio.timeout, unlike wait_for, creates no task: cheap enough for every send.
        async with asyncio.timeout(timeout_ms / 1000):
            return await awaitable
    except TimeoutError as exc:
        raise timeout_error(_no_answer(what, timeout_ms)) from exc
    except _AioKafkaError as exc:
        raise KafkaError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _no_answer(what: str, timeout_ms: int) -> str:
    return (
        f"{what}: no answer from Kafka within {timeout_ms} ms. Is the broker at "
        "BUS_BOOTSTRAP_SERVERS running (`bus kafka status`)?"
    )


class WaitBudget:
    """One timeout shared by the successive waits of one call, so that together they wait at
    most ``timeout_ms``: a publish that sends and then waits for the acknowledgement must not
    take twice its timeout when Kafka does not answer.

        budget = WaitBudget(settings.publish_timeout_ms)
        futures = await budget(send_all(), "Sending 20 alert(s)")
        await budget(asyncio.gather(*futures), "Waiting for Kafka to acknowledge 20 alert(s)")

    Only the time spent waiting counts (not the caller's own work between the waits), and the
    waits must follow one another: await one ``gather`` rather than several waits at once.
    Errors are ``bounded``'s, naming the whole ``timeout_ms``.
    """

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._left_s = timeout_ms / 1000

    async def __call__(self, awaitable: Awaitable[T], what: str) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(self._left_s, 0.0)):
                return await awaitable
        except TimeoutError as exc:
            raise PublishTimeout(_no_answer(what, self.timeout_ms)) from exc
        except _AioKafkaError as exc:
            raise KafkaError(f"{what}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._left_s -= loop.time() - started


@contextlib.contextmanager
def _denials(settings: BusSettings, operation: str, what: str = "") -> Iterator[None]:
    """Re-raise aiokafka's authorization errors as ``AccessDenied`` naming all three parts."""
    try:
        yield
    except _AioKafkaError as exc:
        if is_denial(exc):
            raise explain_denial(exc, settings, operation=operation, what=what) from exc
        raise


async def _start(
    settings: BusSettings, start: Callable[[], Awaitable[None]], operation: str
) -> None:
    try:
        with _denials(settings, operation, "Connecting"):
            await start()
    except KafkaConnectionError as exc:
        explained = await explain_connection_failure(settings)
        if explained is None:
            raise
        raise explained from exc


class BusProducer(AIOKafkaProducer):  # type: ignore[misc]
    """aiokafka's producer, reporting refused logins and missing ACLs in the bus's words."""

    def __init__(self, settings: BusSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs, **client_security(settings))
        self.bus_settings = settings

    async def start(self) -> None:
        await _start(self.bus_settings, super().start, "WRITE")

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        with _denials(self.bus_settings, "WRITE"):
            delivery = await super().send(topic, *args, **kwargs)
        return self._translated(delivery)

    async def send_batch(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return self._translated(await super().send_batch(*args, **kwargs))

    async def partitions_for(self, topic: str) -> Any:
        # Batching producers (publish_many, the fan-out) learn a topic's partitions first: a
        # topic the principal may not write is refused here, before anything is sent.
        with _denials(self.bus_settings, "WRITE"):
            return await super().partitions_for(topic)

    async def send_offsets_to_transaction(self, *args: Any, **kwargs: Any) -> None:
        with _denials(self.bus_settings, "READ"):
            await super().send_offsets_to_transaction(*args, **kwargs)

    def _translated(self, delivery: asyncio.Future[Any]) -> asyncio.Future[Any]:
        # A future, not a task: one callback per record keeps the hot path cheap.
        out: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(fut: asyncio.Future[Any]) -> None:
            if out.done():
                return
            if fut.cancelled():
                out.cancel()
            elif (exc := fut.exception()) is not None:
                if is_denial(exc):
                    exc = explain_denial(exc, self.bus_settings, operation="WRITE")
                out.set_exception(exc)
            else:
                out.set_result(fut.result())

        delivery.add_done_callback(done)
        return out


class BusConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """aiokafka's consumer, reporting refused logins and missing ACLs in the bus's words."""

    def __init__(self, *topics: str, settings: BusSettings, **kwargs: Any) -> None:
        super().__init__(*topics, **kwargs, **client_security(settings))
        self.bus_settings = settings

    async def start(self) -> None:
        await _start(self.bus_settings, super().start, "READ")

    async def getmany(self, *partitions: TopicPartition, **kwargs: Any) -> Any:
        with _denials(self.bus_settings, "READ"):
            return await super().getmany(*partitions, **kwargs)

    async def getone(self, *partitions: TopicPartition) -> Any:
        with _denials(self.bus_settings, "READ"):
            return await super().getone(*partitions)

    async def commit(self, offsets: Any = None) -> None:
        with _denials(self.bus_settings, "READ"):
            await super().commit(offsets)


def make_producer(
    settings: BusSettings, *, transactional_id: str | None = None, client_suffix: str = "producer"
) -> BusProducer:
    """An idempotent ``acks=all`` producer (transactional when ``transactional_id`` is given)."""
    return BusProducer(
        settings,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-{client_suffix}",
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_size_bytes,
        request_timeout_ms=settings.request_timeout_ms,
        max_request_size=2 * 1024 * 1024,
        # aiokafka's default of 100 ms also paces back-to-back transactions (the fan-out's).
        retry_backoff_ms=20,
    )


def make_consumer(
    settings: BusSettings,
    *topics: str,
    group_id: str | None,
    pattern: str | None = None,
    from_beginning: bool = True,
    client_suffix: str = "consumer",
    **overrides: Any,
) -> BusConsumer:
    """A ``read_committed`` consumer with manual commits; subscribe to ``topics`` or ``pattern``."""
    consumer = BusConsumer(
        *topics,
        settings=settings,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-{client_suffix}",
        group_id=group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest" if from_beginning else "latest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
        request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
        max_poll_records=settings.max_poll_records,
        metadata_max_age_ms=5000 if pattern else 300_000,
        **overrides,
    )
    if pattern is not None:
        consumer.subscribe(pattern=pattern)
    return consumer


async def topic_partitions(consumer: AIOKafkaConsumer, timeout_ms: int) -> dict[str, set[int]]:
    """Every topic of the cluster with its partition numbers, from fresh metadata.

    ``consumer.partitions_for_topic`` only knows subscribed topics, so ask the cluster directly.
    """
    cluster = await bounded(
        consumer._client.fetch_all_metadata(), timeout_ms, "Reading cluster metadata",
        timeout_error=KafkaError,
    )  # fmt: skip
    return {t: set(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()}


async def read_to_end(
    settings: BusSettings, topic: str, *, from_offset_back: int | None = None
) -> list[Any]:
    """Every committed record of ``topic`` (all partitions) up to its current end, as a list.

    With ``from_offset_back=n`` only the last ``n`` records of each partition are read. For a
    topic that may be large, use ``iter_records``, which never holds the whole topic.
    """
    records: list[Any] = []
    async for batch in iter_records(settings, topic, from_offset_back=from_offset_back):
        records.extend(batch)
    return records


@dataclass
class ReadWindow:
    """Filled in by ``iter_records``: whether the window it read began at the topic's start."""

    from_start: bool = True


async def iter_records(
    settings: BusSettings,
    topic: str,
    *,
    from_offset_back: int | None = None,
    window: ReadWindow | None = None,
    partitions: Iterable[int] | None = None,
) -> AsyncIterator[list[Any]]:
    """The committed records of ``topic`` up to its end when called, a fetched batch at a time.

    ``partitions`` limits the read to those partitions (one audit chain, say); default all.

    Used to restore state (the fan-out's delivery state, the audit head) and by ``bus audit``:
    the caller folds each batch into what it keeps, so memory follows the state, not the topic.
    """
    consumer = BusConsumer(
        settings=settings,
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-reader",
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms,
        max_partition_fetch_bytes=1024 * 1024,
    )
    try:
        # Inside the try: a consumer that never connected is closed too (aiokafka warns of an
        # unclosed one on the user's terminal otherwise).
        await bounded(consumer.start(), settings.connect_timeout_ms,
                      f"Connecting to read {topic}", timeout_error=KafkaError)  # fmt: skip
        layout = await topic_partitions(consumer, settings.request_timeout_ms)
        only = None if partitions is None else set(partitions)
        tps = [
            TopicPartition(topic, p)
            for p in sorted(layout.get(topic, ()))
            if only is None or p in only
        ]
        if not tps:
            await _check_visible(consumer, settings, topic)
            return
        consumer.assign(tps)
        ends = await bounded(consumer.end_offsets(tps), settings.request_timeout_ms,
                             f"Reading the end of {topic}", timeout_error=KafkaError)  # fmt: skip
        starts = await bounded(consumer.beginning_offsets(tps), settings.request_timeout_ms,
                               f"Reading the start of {topic}",
                               timeout_error=KafkaError)  # fmt: skip
        for tp in tps:
            start = starts[tp]
            if from_offset_back is not None:
                start = max(start, ends[tp] - from_offset_back)
            if window is not None and start > starts[tp]:
                window.from_start = False
            consumer.seek(tp, start)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        while pending:
            batch = await bounded(consumer.getmany(*pending, timeout_ms=1000),
                                  settings.request_timeout_ms, f"Reading {topic}",
                                  timeout_error=KafkaError)  # fmt: skip
            for records in batch.values():
                if records:
                    yield records
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await stop_client(consumer, settings.request_timeout_ms)


async def _check_visible(consumer: AIOKafkaConsumer, settings: BusSettings, topic: str) -> None:
    """Raise ``AccessDenied`` when ``topic`` is missing from the metadata only for lack of an ACL.

    Metadata lists only the topics a principal may see, so an unauthorised topic looks like a
    missing one; asked for by name, the broker says which it is.
    """
    if settings.principal is None:
        return
    client = consumer._client
    await bounded(client._metadata_update(client.cluster, [topic]), settings.request_timeout_ms,
                  f"Reading the metadata of {topic}", timeout_error=KafkaError)  # fmt: skip
    if topic in client.cluster.unauthorized_topics:
        raise explain_denial(TopicAuthorizationFailedError(topic), settings, operation="READ")


async def stop_client(client: Any, timeout_ms: int) -> str | None:
    """Stop an aiokafka client, bounded; return why it did not stop cleanly, or None.

    Stopping a client whose broker went away can time out, raise client errors, or even leak a
    ``CancelledError`` from aiokafka's internal tasks. None of that may kill the caller: only a
    cancellation of the calling task itself is passed on.

    A producer is flushed first, within the timeout; if Kafka takes nothing, it is closed
    without the flush. aiokafka's own ``stop`` would wait for the flush in a task of its own,
    and once cut short leave that task and the producer's sender behind, retrying the batches
    (a session's aborted transaction, fenced later) for the life of the process.
    """
    try:
        if isinstance(client, AIOKafkaProducer) and not client._closed:
            try:
                await asyncio.wait_for(client.flush(), timeout_ms / 1000)
            except TimeoutError:
                await _close_unflushed(client)
                return f"TimeoutError: Kafka took nothing for {timeout_ms} ms; closed unflushed"
        await asyncio.wait_for(client.stop(), timeout_ms / 1000)
    except asyncio.CancelledError:
        if _cancelling():
            raise
        return "CancelledError raised inside the client while stopping"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _close_unflushed(producer: AIOKafkaProducer) -> None:
    """Close a producer's sender and connections, giving up what Kafka has not acknowledged."""
    producer._closed = True  # its own stop() now does nothing: it would wait for the flush
    # Fail the batches it still holds: a transaction's commit under way waits for them, and
    # would otherwise stay pending until its task is destroyed with the producer.
    accumulator = producer._message_accumulator
    held = [b for batches in accumulator._batches.values() for b in batches]
    held += accumulator._pending_batches
    accumulator.fail_all(KafkaConnectionError("the producer was closed unflushed"))
    for batch in held:  # given up on purpose: nobody is to be told of their failure
        if batch.future.done() and not batch.future.cancelled():
            batch.future.exception()
    for closing in (producer._sender.close, producer.client.close):
        try:
            await asyncio.wait_for(closing(), 1.0)
        except asyncio.CancelledError:
            # Awaiting the cancelled sender task raises its CancelledError here; only our own
            # cancellation is passed on.
            if _cancelling():
                raise
        except Exception:  # best effort: the failed stop is reported already
            pass


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
