"""``bus tail``: read a topic without joining a group and print each record as a JSON line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bus.codec import AlertCodec
from bus.envelope import ReceivedAlert, ReceivedNotice, RecordError, open_message
from bus.kafka import bounded, make_consumer, stop_client
from bus.keys import KeyRing
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings


async def tail_topic(
    settings: BusSettings,
    topic: str,
    emit: Callable[[dict[str, Any]], None],
    *,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout_ms: int | None = None,
    verify: bool = True,
) -> int:
    """Emit one dict per record until ``max_records`` or ``idle_timeout_ms``; return the count."""
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    keyring = KeyRing(settings.keys_dir) if verify else None
    consumer = make_consumer(
        settings, topic, group_id=None, from_beginning=from_beginning, client_suffix="tail"
    )
    try:
        await bounded(consumer.start(), settings.connect_timeout_ms, "Connecting the consumer")
    except BaseException:
        await stop_client(consumer, settings.request_timeout_ms)
        raise
    count = 0
    loop = asyncio.get_running_loop()
    last_seen = loop.time()
    try:
        while max_records is None or count < max_records:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                if idle_timeout_ms is not None and loop.time() - last_seen > idle_timeout_ms / 1000:
                    break
                continue
            last_seen = loop.time()
            for records in batch.values():
                for r in records:
                    if max_records is not None and count >= max_records:
                        break
                    line: dict[str, Any] = {
                        "topic": r.topic, "partition": r.partition, "offset": r.offset,
                    }  # fmt: skip
                    try:
                        received = open_message(
                            codec, keyring, names=settings.topics, topic=r.topic,
                            partition=r.partition, offset=r.offset, key=r.key, value=r.value,
                            headers=r.headers,
                        )  # fmt: skip
                    except RecordError as exc:
                        line |= {"error": str(exc.error), "error_class": type(exc.error).__name__,
                                 "stage": exc.stage}  # fmt: skip
                    else:
                        line |= _describe(received, verify)
                    emit(line)
                    count += 1
    finally:
        await stop_client(consumer, settings.request_timeout_ms)
    return count


def _describe(received: ReceivedAlert | ReceivedNotice, verify: bool) -> dict[str, Any]:
    if isinstance(received, ReceivedNotice):
        return {
            "record_type": received.record_type, "key_id": received.key_id, "verified": verify,
            "notice": received.notice.model_dump(mode="json"),
        }  # fmt: skip
    return {
        "alert_type": received.alert_type,
        "key_id": received.key_id,
        "verified": verify,
        "redacted": list(received.redacted),
        "alert": received.alert.model_dump(mode="json"),
    }
