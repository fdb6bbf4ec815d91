"""The dead-letter topic ``bus.dlq``: a rejected record, unchanged, with why and where it failed.

The value, key and original headers are kept byte for byte; these headers are added:
``bus-dlq-topic``, ``bus-dlq-partition``, ``bus-dlq-offset`` (where the record was read),
``bus-dlq-error-class``, ``bus-dlq-error-message``, ``bus-dlq-stage`` (decode, verify, handle,
policy, …), ``bus-dlq-source`` (the consumer group or service) and ``bus-dlq-failed-at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from bus.kafka import bounded

H_DLQ_TOPIC = "bus-dlq-topic"
H_DLQ_PARTITION = "bus-dlq-partition"
H_DLQ_OFFSET = "bus-dlq-offset"
H_DLQ_ERROR_CLASS = "bus-dlq-error-class"
H_DLQ_ERROR_MESSAGE = "bus-dlq-error-message"
H_DLQ_STAGE = "bus-dlq-stage"
H_DLQ_SOURCE = "bus-dlq-source"
H_DLQ_FAILED_AT = "bus-dlq-failed-at"

_MAX_MESSAGE_BYTES = 4096


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record and the reason."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    error: BaseException
    stage: str
    source: str

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        message = str(self.error).encode("utf-8", "replace")[:_MAX_MESSAGE_BYTES]
        original = [(k, v) for k, v in self.headers if not k.startswith("bus-dlq-")]
        return [
            *original,
            (H_DLQ_TOPIC, self.topic.encode()),
            (H_DLQ_PARTITION, str(self.partition).encode()),
            (H_DLQ_OFFSET, str(self.offset).encode()),
            (H_DLQ_ERROR_CLASS, type(self.error).__name__.encode()),
            (H_DLQ_ERROR_MESSAGE, message),
            (H_DLQ_STAGE, self.stage.encode()),
            (H_DLQ_SOURCE, self.source.encode()),
            (H_DLQ_FAILED_AT, datetime.now(UTC).isoformat().encode()),
        ]


async def send_dead_letter(
    producer: AIOKafkaProducer, letter: DeadLetter, *, topic: str, timeout_ms: int
) -> None:
    """Write ``letter`` to the dead-letter topic and wait until Kafka acknowledged it."""
    delivery = await bounded(
        producer.send(topic, value=letter.value, key=letter.key, headers=letter.kafka_headers()),
        timeout_ms,
        f"Dead-lettering {letter.topic}[{letter.partition}]@{letter.offset}",
    )
    await bounded(delivery, timeout_ms, "Waiting for the dead-letter acknowledgement")
