"""The broker itself refuses what the agreements do not grant, seen by a client that is not ours.

Every check here uses confluent-kafka (librdkafka) configured from nothing but a principal's
``client.properties``, as a partner agency or a national system would.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bus.access.kit import write_kit
from tests.integration.fanout_support import agreements_keys
from tests.integration.secure.conftest import SecureEnv, ck_config

A, B = "frontex", "europol"  # partners that only receive
X, Y = "mk", "rs"  # countries (and partners)


def poll_error(consumer: Consumer, timeout_s: float = 20) -> tuple[KafkaError | None, list[Any]]:
    """Poll until the first error; return it and any record that arrived before it."""
    records = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() in (KafkaError._PARTITION_EOF, KafkaError.NOT_COORDINATOR):
                continue
            return msg.error(), records
        records.append(msg)
    return None, records


def produce_error(config: dict[str, Any], topic: str) -> KafkaError | None:
    """Produce one record; the delivery error (None when Kafka stored it)."""
    result: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 10_000})
    producer.produce(topic, b"value", on_delivery=lambda err, _msg: result.append(err))
    producer.flush(15)
    assert result, f"no delivery report for {topic}"
    return result[0]


def count_records(admin_config: dict[str, Any], topic: str) -> int:
    consumer = Consumer({**admin_config, "group.id": "admin-count", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def seed(env: SecureEnv, *topics: str) -> dict[str, Any]:
    """One record in each topic, written by the administrator; its librdkafka config."""
    admin = ck_config(env.broker.admin_config)
    producer = Producer(admin)
    for topic in topics:
        producer.produce(topic, f"secret of {topic}".encode())
    assert producer.flush(15) == 0
    return admin


def denied(err: KafkaError | None) -> bool:
    return err is not None and "AUTHORIZATION_FAILED" in err.name()


async def test_a_partner_with_its_kit_reads_its_inbox_and_nothing_else(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env, names = secure_env, secure_env.admin.topics
    private = [names.audit, names.dlq, names.fanout_state]
    ingress = names.ingress(Y, "readmission")
    await env.create_topics(names.inbox(A), names.inbox(B), names.schemas, ingress, *private)
    admin = seed(env, names.inbox(A), names.inbox(B), ingress, *private)
    agreements_keys(keys_dir, env.agreements)
    write_kit(env.admin, env.access, A, tmp_path / "kit")
    kit = ck_config(tmp_path / "kit" / "client.properties")
    assert kit["sasl.username"] == env.principal(A)

    # Its own inbox, with a group of its own: works.
    own = Consumer(
        {**kit, "group.id": f"{env.principal(A)}.inbox", "auto.offset.reset": "earliest"}
    )
    own.subscribe([names.inbox(A)])
    msg = None
    for _ in range(40):
        msg = own.poll(0.5)
        if msg is not None and not msg.error():
            break
    own.close()
    assert msg is not None
    assert msg.value() == f"secret of {names.inbox(A)}".encode()

    # B's inbox is not even in A's metadata, nor are the bus's private topics.
    listed = AdminClient(kit).list_topics(timeout=10).topics
    assert names.inbox(A) in listed
    assert names.schemas in listed
    for topic in (names.inbox(B), ingress, *private):
        assert topic not in listed

    # Reading B's inbox, the audit, the dead letters or the fan-out's state: refused, no record.
    for topic in (names.inbox(B), *private):
        consumer = Consumer({**kit, "group.id": f"{env.principal(A)}.probe"})
        consumer.subscribe([topic])
        err, records = poll_error(consumer)
        consumer.close()
        assert denied(err), (topic, err)
        assert records == []
    # Fetching B's partition directly, without a subscription, yields nothing either.
    consumer = Consumer({**kit, "group.id": f"{env.principal(A)}.probe"})
    consumer.assign([TopicPartition(names.inbox(B), 0, OFFSET_BEGINNING)])
    _, records = poll_error(consumer, timeout_s=3)
    consumer.close()
    assert records == []

    # Joining B's consumer group: refused.
    consumer = Consumer({**kit, "group.id": f"{env.principal(B)}.inbox"})
    consumer.subscribe([names.inbox(A)])
    err, records = poll_error(consumer)
    consumer.close()
    assert err is not None
    assert err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert records == []

    # Producing anywhere, its own inbox included: refused, and nothing lands.
    for topic in (names.inbox(A), names.inbox(B), ingress, names.schemas, *private):
        before = count_records(admin, topic)
        assert denied(produce_error(kit, topic)), topic
        assert count_records(admin, topic) == before


async def test_a_country_writes_its_own_ingress_and_nowhere_else(secure_env: SecureEnv) -> None:
    env, names = secure_env, secure_env.admin.topics
    own, other = names.ingress(X, "irregular-crossing"), names.ingress(Y, "irregular-crossing")
    forbidden = [other, names.inbox(X), names.inbox(B), names.fanout_state, names.audit]
    await env.create_topics(own, *forbidden, names.dlq)
    admin = ck_config(env.broker.admin_config)
    country = ck_config(env.credentials(X), **{"enable.idempotence": True})

    assert produce_error(country, own) is None
    assert count_records(admin, own) == 1
    for topic in forbidden:
        assert denied(produce_error(ck_config(env.credentials(X)), topic)), topic
        assert count_records(admin, topic) == 0
    # It dead-letters what its adapter cannot map, but cannot read the dead letters back.
    assert produce_error(country, names.dlq) is None
    consumer = Consumer({**country, "group.id": f"{env.principal(X)}.dlq"})
    consumer.subscribe([names.dlq])
    err, records = poll_error(consumer)
    consumer.close()
    assert denied(err)
    assert records == []
