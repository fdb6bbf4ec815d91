"""A lookup over Kafka, as any requester's system makes it: request in, answer out.

    answer = await lookup_over_kafka(settings, "europol", ["it1.…"], timeout_s=30)

The request goes to ``lookup.<requester>.requests``; the answer, signed by ``hub``, is read from
``lookup.<requester>.answers`` (read from its end as it was before the request was written) and
verified before it is believed.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import TopicPartition

from bus.codec import AlertCodec
from bus.envelope import H_KEY_ID, H_SIGNATURE, header_map
from bus.errors import BusError, KafkaError, SignatureError
from bus.kafka import bounded, make_consumer, make_producer, stop_client, topic_partitions
from bus.keys import HUB_KEY_ID, KeyRing
from bus.models import LookupAnswer, LookupRequest
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from services.index.lookup import check_tokens


class LookupFailed(BusError):
    """The index answered with an error, or not at all."""


async def lookup_over_kafka(
    settings: BusSettings, requester: str, tokens: list[str], *, timeout_s: float = 30.0
) -> LookupAnswer:
    checked = check_tokens(requester, tokens)
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    keyring = KeyRing(settings.keys_dir)
    answers = settings.topics.lookup_answers(requester)
    request = LookupRequest(request_id=uuid.uuid4(), requester=requester, tokens=checked)
    consumer = make_consumer(settings, group_id=None, client_suffix="lookup-client")
    producer = make_producer(settings, client_suffix="lookup-client")
    await bounded(consumer.start(), settings.connect_timeout_ms, "Connecting to Kafka",
                  timeout_error=KafkaError)  # fmt: skip
    try:
        layout = await topic_partitions(consumer, settings.request_timeout_ms)
        if answers not in layout:
            raise LookupFailed(
                f"No topic {answers}: no lookup agreement names {requester!r} as a requester "
                "(BUS_AGREEMENTS), or its lookup topics were not made yet (`bus topics apply`)"
            )
        tps = [TopicPartition(answers, p) for p in sorted(layout[answers])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve the end now, before the request is written
        await bounded(producer.start(), settings.connect_timeout_ms, "Connecting to Kafka",
                      timeout_error=KafkaError)  # fmt: skip
        value = codec.encode_record(request.record_type, request.to_avro())
        await bounded(
            producer.send_and_wait(settings.topics.lookup_requests(requester),
                                   value=value, key=str(request.request_id).encode()),
            settings.publish_timeout_ms, "Writing the lookup request",
        )  # fmt: skip
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        answer = _answer(codec, keyring, record.value, record.headers)
                        if answer.request_id == request.request_id:
                            if answer.error:
                                raise LookupFailed(f"The index refused the lookup: {answer.error}")
                            return answer
    except TimeoutError:
        raise LookupFailed(
            f"No answer on {answers} within {timeout_s:.0f} s; is `bus index run` running?"
        ) from None
    finally:
        await stop_client(producer, settings.request_timeout_ms)
        await stop_client(consumer, settings.request_timeout_ms)


def _answer(
    codec: AlertCodec, keyring: KeyRing, value: bytes, headers: list[tuple[str, bytes]]
) -> LookupAnswer:
    h = header_map(headers)
    if h.get(H_KEY_ID) != HUB_KEY_ID.encode() or H_SIGNATURE not in h:
        raise SignatureError("A lookup answer not signed by the hub; refusing to believe it")
    keyring.verify(HUB_KEY_ID, value, h[H_SIGNATURE])
    _, record = codec.decode_record(value)
    return LookupAnswer.from_avro(record)
