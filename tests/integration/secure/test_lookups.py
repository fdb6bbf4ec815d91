"""Lookups on the secure broker: the index under its own login, requesters with their kits.

The requester's side uses nothing of this project: confluent-kafka configured from its kit's
``client.properties``, Apache Avro with the kit's schemas, the hub's key from the kit.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from bus.access.kit import write_kit
from bus.admin import apply_topics, ensure_index_topics
from bus.errors import KafkaError as BusKafkaError
from bus.kafka import Admin
from bus.models import ALERT_TYPES
from examples.partner_consumer import check_signature, decode, load_keys, load_schemas
from services.adapters.dropfolder import DropFolder
from tests.integration.fanout_support import agreements_keys
from tests.integration.index_support import PETROVIC, running_index
from tests.integration.secure.conftest import SecureEnv, ck_config
from tests.integration.secure.test_acls import count_records, denied, poll_error, produce_error
from tests.integration.test_adapters import adapter
from tests.unit.test_adapters_countries import sample_feed

UNKNOWN = "it1." + "0" * 32


def encode(schemas_dir: Path, record_type: str, datum: dict[str, Any]) -> bytes:
    """Avro single-object encoding of ``datum``, as any Avro library makes it."""
    schema = avro.schema.parse(
        sorted((schemas_dir / record_type).glob("v*.avsc"))[-1].read_text("utf-8")
    )
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(body))
    return b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO") + body.getvalue()


def ask_with_kit(kit: Path, requester: str, tokens: list[str]) -> dict[str, Any]:
    """Write one lookup request with the kit and read its answer back, signature checked."""
    config = ck_config(kit / "client.properties")
    prefix = config["sasl.username"].removesuffix(requester)
    requests, answers = (
        f"{prefix}lookup.{requester}.requests",
        f"{prefix}lookup.{requester}.answers",
    )
    request_id = str(uuid.uuid4())
    consumer = Consumer({**config, "group.id": f"{config['sasl.username']}.lookups",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([answers])
    producer = Producer({**config, "enable.idempotence": True})
    value = encode(kit / "schemas", "lookup-request", {
        "request_id": request_id, "requester": requester, "tokens": tokens,
    })  # fmt: skip
    delivered: list[Any] = []
    producer.produce(requests, value, key=request_id.encode(),
                     on_delivery=lambda err, _msg: delivered.append(err))  # fmt: skip
    producer.flush(20)
    assert delivered == [None]
    schemas, keys = load_schemas(kit / "schemas"), load_keys(kit / "keys")
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            headers = dict(msg.headers() or [])
            problem = check_signature(keys, headers["bus-key-id"].decode(), None, msg.value(),
                                      headers["bus-signature"])  # fmt: skip
            assert problem is None, problem
            name, record = decode(msg.value(), schemas)
            assert name == "lookup-answer/v1"
            if record["request_id"] == request_id:
                return dict(record)
    finally:
        consumer.close()
    raise AssertionError(f"no answer to {request_id} on {answers} within 60 s")


async def test_a_requester_asks_with_its_kit_and_the_index_answers_under_its_own_login(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env, names = secure_env, secure_env.admin.topics
    agreements_keys(keys_dir, env.agreements)
    # The operators make every topic, the lookup topics among them (`bus topics apply`).
    # (Ingress of Serbia only, one partition each: the test's broker is shared and small.)
    operators = env.admin.model_copy(
        update={"countries": ("rs",), "topic_partitions": 1, "request_timeout_ms": 30_000}
    )
    created, _ = await apply_topics(operators)
    env.topics += created
    for topic in (names.lookup_requests("europol"), names.lookup_answers("europol"),
                  names.lookup_audit):  # fmt: skip
        assert topic in created
    assert names.lookup_requests("frontex") not in created  # no lookup agreement names it
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "rs.csv").write_bytes(sample_feed("rs").read_bytes())
    async with adapter(env.as_principal("rs"), "rs") as a, DropFolder(a, drop) as folder:
        [outcome] = await folder.scan_once()
    assert outcome.published > 0

    write_kit(env.admin, env.access, "europol", tmp_path / "kit")
    comment = (tmp_path / "kit" / "client.properties").read_text()
    assert f"to {names.lookup_requests('europol')}" in comment  # the kit says where to ask
    index = env.as_principal("index")
    async with running_index(index, tmp_path / "data", agreements=env.agreements):
        answer = await asyncio.to_thread(
            ask_with_kit, tmp_path / "kit", "europol", [PETROVIC, UNKNOWN]
        )
    assert answer["error"] is None
    hit, miss = answer["results"]
    assert hit["hit"] is True
    assert {h["owner"] for h in hit["hits"]} == {"rs"}
    assert miss == {"token": UNKNOWN, "hit": False, "hits": []}
    # The owner was told, in one of the index's transactions, and the lookup was audited.
    admin = ck_config(env.broker.admin_config)
    assert count_records(admin, names.lookup_audit) >= 1  # a record and its commit marker
    rs = ck_config(env.credentials("rs"))
    notices = Consumer({**rs, "group.id": f"{env.principal('rs')}.inbox",
                        "auto.offset.reset": "earliest",
                        "isolation.level": "read_committed"})  # fmt: skip
    notices.subscribe([names.inbox("rs")])
    got = None
    for _ in range(60):
        msg = notices.poll(0.5)
        if msg is not None and not msg.error():
            got = dict(msg.headers() or [])
            break
    notices.close()
    assert got is not None
    assert got["bus-type"] == b"hit-notice"


async def test_a_partner_without_a_lookup_agreement_can_neither_ask_nor_read_answers(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env, names = secure_env, secure_env.admin.topics
    lookups = [names.lookup_requests("europol"), names.lookup_answers("europol")]
    await env.create_topics(*lookups, names.lookup_audit)
    admin = ck_config(env.broker.admin_config)
    agreements_keys(keys_dir, env.agreements)
    write_kit(env.admin, env.access, "frontex", tmp_path / "kit")
    kit = ck_config(tmp_path / "kit" / "client.properties")
    assert "lookup." not in (tmp_path / "kit" / "client.properties").read_text()

    for topic in (names.lookup_requests("europol"), names.lookup_requests("frontex")):
        assert denied(produce_error(kit, topic)), topic
    assert count_records(admin, names.lookup_requests("europol")) == 0
    for topic in (names.lookup_answers("europol"), names.lookup_audit):
        consumer = Consumer({**kit, "group.id": f"{env.principal('frontex')}.probe"})
        consumer.subscribe([topic])
        err, records = poll_error(consumer)
        consumer.close()
        assert denied(err), (topic, err)
        assert records == []


async def test_a_requester_reads_its_own_answers_only_and_asks_only_as_itself(
    secure_env: SecureEnv,
) -> None:
    env, names = secure_env, secure_env.admin.topics
    mine, theirs = "europol", "jc-tabanovce"
    await env.create_topics(*(f(p) for p in (mine, theirs)
                              for f in (names.lookup_requests, names.lookup_answers)))  # fmt: skip
    admin = ck_config(env.broker.admin_config)
    producer = Producer(admin)
    producer.produce(names.lookup_answers(theirs), b"the answer to jc-tabanovce")
    assert producer.flush(15) == 0
    kit = ck_config(env.credentials(mine))

    assert produce_error(kit, names.lookup_requests(mine)) is None
    assert denied(produce_error(kit, names.lookup_requests(theirs)))
    assert count_records(admin, names.lookup_requests(theirs)) == 0
    # It may not write its own answers (only the index does), nor read its own requests.
    assert denied(produce_error(kit, names.lookup_answers(mine)))
    consumer = Consumer({**kit, "group.id": f"{env.principal(mine)}.probe"})
    consumer.subscribe([names.lookup_answers(theirs)])
    err, records = poll_error(consumer)
    consumer.close()
    assert denied(err), err
    assert records == []


async def test_the_index_writes_only_in_its_own_transactions_where_lookups_need_it(
    secure_env: SecureEnv,
) -> None:
    env, names = secure_env, secure_env.admin.topics
    owner, bystander = "rs", "frontex"  # rs owns entries; Frontex owns none, gets no notice
    ingress = names.ingress("rs", ALERT_TYPES[0])
    await env.create_topics(
        names.inbox(owner), names.inbox(bystander), ingress, names.audit, names.dlq,
        names.lookup_requests("europol"), names.lookup_answers("europol"), names.lookup_audit,
    )  # fmt: skip
    admin = ck_config(env.broker.admin_config)
    index = ck_config(env.credentials("index"))

    # In its own transactional id, a hit notice reaches the owner's inbox: the positive control.
    own = Producer({**index, "transactional.id": f"{env.prefix}bus-index-lookups"})
    own.init_transactions(20)
    own.begin_transaction()
    own.produce(names.inbox(owner), b"a hit notice")
    own.commit_transaction(20)
    assert count_records(admin, names.inbox(owner)) == 2  # the record and the commit marker

    # Another service's transactional id (the fan-out's): refused before anything is written.
    other = Producer({**index, "transactional.id": f"{env.prefix}bus-fanout-0"})
    with pytest.raises(KafkaException) as refused:
        other.init_transactions(20)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # No inbox of a partner that owns nothing, no ingress, no requests, no audit of deliveries.
    for topic in (names.inbox(bystander), ingress, names.lookup_requests("europol"),
                  names.audit, names.dlq):  # fmt: skip
        assert denied(produce_error(index, topic)), topic
        assert count_records(admin, topic) == 0
    # It reads neither the inboxes nor the delivery audit nor the dead letters.
    for topic in (names.inbox(owner), names.audit, names.dlq):
        consumer = Consumer({**index, "group.id": f"{env.prefix}bus-index-lookups"})
        consumer.subscribe([topic])
        err, records = poll_error(consumer)
        consumer.close()
        assert denied(err), (topic, err)
        assert records == []


async def test_the_index_says_to_run_topics_apply_when_its_topics_are_missing(
    secure_env: SecureEnv,
) -> None:
    env = secure_env
    with pytest.raises(BusKafkaError, match=r"may not create them: run `bus topics apply`") as info:
        await ensure_index_topics(env.as_principal("index"), env.agreements)
    assert env.admin.topics.lookup_requests("europol") in str(info.value)
    async with Admin(env.admin) as admin:
        assert not [t for t in await admin.list_topics() if t.startswith(env.prefix)]
