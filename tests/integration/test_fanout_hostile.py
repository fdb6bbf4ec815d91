"""The fan-out against a misbehaving member country, on the real broker.

A country may reference, shadow or withdraw only its own alerts; a follow-up never carries content
to someone the rules would not give it to; exercises and expired alerts go nowhere they should
not; a copy Kafka refuses is never audited as delivered; and garbage in the state the fan-out
reads back does not stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from bus import BusSettings
from bus.admin import read_audit
from bus.agreements import Agreements, parse_agreements
from bus.audit import decisions
from bus.kafka import read_to_end
from bus.models import Alert, WithdrawalNotice
from bus.schemas import SchemaRegistry
from bus.topics import TopicSpec
from services.fanout.service import FanoutService
from tests.conftest import REPO
from tests.factories import make_alert
from tests.integration.conftest import prefixed
from tests.integration.fanout_support import (
    agreements_keys,
    check_inboxes,
    expected_inboxes,
    fanout_topics,
    publish_all,
    read_inboxes,
    wait_caught_up,
)

REGISTRY = SchemaRegistry.load(REPO / "schemas")


def _agreements(*agreements: dict[str, Any]) -> Agreements:
    partners = {
        "rs": {"name": "Serbia", "country": "rs", "public_key": "rs.pub"},
        "mk": {"name": "North Macedonia", "country": "mk", "public_key": "mk.pub"},
        "al": {"name": "Albania", "country": "al", "public_key": "al.pub"},
        "jc-tabanovce": {"name": "Joint centre Tabanovce", "country": None, "public_key": None},
        "europol": {"name": "Europol", "country": None, "public_key": None},
    }
    base = {
        "title": "t", "legal_basis": "b", "types": ["*"], "redact": [],
        "valid_from": "2012-01-01", "valid_until": None,
    }  # fmt: skip
    return parse_agreements(
        {"partners": partners, "agreements": [{**base, **a} for a in agreements]},
        source="test", schemas=REGISTRY,
    )  # fmt: skip


#: rs and mk share with each other, the joint centre and Europol; only Europol and mk at RED;
#: only Europol carries exercises.
AGREEMENTS = _agreements(
    {"id": "tabanovce", "origins": ["rs", "mk"], "recipients": ["rs", "mk", "jc-tabanovce"],
     "max_tlp": "AMBER"},
    {"id": "red", "origins": ["rs", "mk"], "recipients": ["europol", "mk"], "max_tlp": "RED"},
    {"id": "drill", "origins": ["rs", "mk"], "recipients": ["europol"], "max_tlp": "AMBER",
     "statuses": ["ACTUAL", "EXERCISE"]},
)  # fmt: skip
PARTNERS = sorted(AGREEMENTS.partners)


@pytest.fixture
async def env(settings: BusSettings, keys_dir: Path) -> BusSettings:
    s = prefixed(settings)
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(s, AGREEMENTS)
    return s


@contextlib.asynccontextmanager
async def running(settings: BusSettings, **kwargs: Any) -> AsyncIterator[FanoutService]:
    service = FanoutService(settings, agreements=AGREEMENTS, **kwargs)
    task = asyncio.create_task(service.run())
    try:
        await service.wait_ready(60)
        yield service
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


async def route(settings: BusSettings, alerts: list[Alert]) -> FanoutService:
    """Publish ``alerts`` and run the fan-out until it has committed all of ingress."""
    await publish_all(settings, alerts)
    async with running(settings) as service:
        await wait_caught_up(settings, service.group_id)
    return service


def _ids_in_inboxes(inboxes: dict[str, list[Any]]) -> set[tuple[str, str]]:
    return {(p, str(a.alert_id)) for p, recs in inboxes.items() for a, _, _ in recs}


async def test_a_country_cannot_update_or_cancel_another_countrys_alert(env: BusSettings) -> None:
    original = make_alert("irregular-crossing", "rs", tlp="GREEN", explicit_recipients=[])
    await route(env, [original])
    update = make_alert("irregular-crossing", "mk", tlp="GREEN", msg_type="UPDATE",
                        references=[str(original.alert_id)], explicit_recipients=[])  # fmt: skip
    cancel = make_alert("irregular-crossing", "mk", tlp="GREEN", msg_type="CANCEL",
                        references=[str(original.alert_id)], explicit_recipients=[])  # fmt: skip
    await route(env, [update, cancel])

    notices: dict[str, list[WithdrawalNotice]] = {}
    inboxes = await read_inboxes(env, PARTNERS, notices=notices)
    follow_ups = {str(update.alert_id), str(cancel.alert_id)}
    assert not {aid for _, aid in _ids_in_inboxes(inboxes)} & follow_ups
    assert not notices
    letters = {
        dict(r.headers)["bus-alert-id"].decode(): {
            k: v.decode("utf-8", "replace") for k, v in r.headers
        }
        for r in await read_to_end(env, env.topics.dlq)
    }
    assert set(letters) == follow_ups
    for letter in letters.values():
        assert letter["bus-dlq-stage"] == "policy"
        message = letter["bus-dlq-error-message"]
        assert "from mk" in message
        assert "only rs published" in message
    audit = list(decisions(await read_audit(env)))
    refused = [r for r in audit if r["alert_id"] in follow_ups]
    assert [r["decision"] for r in refused] == ["refused", "refused"]


async def test_a_country_cannot_shadow_another_countrys_alert_id(env: BusSettings) -> None:
    stolen = uuid.uuid4()  # the id rs's next alert will have
    shadow = make_alert("readmission", "mk", tlp="GREEN", alert_id=str(stolen),
                        explicit_recipients=[])  # fmt: skip
    await route(env, [shadow])
    real = make_alert("readmission", "rs", tlp="GREEN", alert_id=str(stolen),
                      explicit_recipients=[])  # fmt: skip
    await route(env, [real])
    inboxes = await read_inboxes(env, PARTNERS)
    # Both arrived where their own country's agreements send them, each once.
    got_real = {p for p, recs in inboxes.items() for a, _, _ in recs if a.origin == "rs"}
    got_shadow = {p for p, recs in inboxes.items() for a, _, _ in recs if a.origin == "mk"}
    assert got_real == {p for p, e in expected_inboxes([real], AGREEMENTS).items() if e}
    assert got_real == {"mk", "jc-tabanovce", "europol"}
    assert got_shadow == {"rs", "jc-tabanovce", "europol"}
    for recs in inboxes.values():
        for alert, _, _ in recs:
            assert alert == (real if alert.origin == "rs" else shadow)


async def test_a_red_update_reaches_with_content_only_whom_the_rules_allow(
    env: BusSettings,
) -> None:
    original = make_alert("trafficking-arrest", "rs", tlp="AMBER", explicit_recipients=[])
    await route(env, [original])
    holders = {p for p, recs in (await read_inboxes(env, PARTNERS)).items() if recs}
    assert holders == {"mk", "jc-tabanovce", "europol"}

    marker = "SECRET-UPDATE-CONTENT-7f3a"
    update = make_alert(
        "trafficking-arrest", "rs", tlp="RED", msg_type="UPDATE", explicit_recipients=["mk"],
        references=[str(original.alert_id)], case_ref=marker,
    )  # fmt: skip
    await route(env, [update])
    notices: dict[str, list[WithdrawalNotice]] = {}
    inboxes = await read_inboxes(env, PARTNERS, notices=notices)
    with_update = {p for p, aid in _ids_in_inboxes(inboxes) if aid == str(update.alert_id)}
    assert with_update == {"mk"}  # the explicit recipient an agreement allows at RED
    assert set(notices) == {"jc-tabanovce", "europol"}
    for [notice] in notices.values():
        assert notice.alert_ids == [original.alert_id]
        assert notice.follow_up_id == update.alert_id
        assert notice.msg_type.value == "UPDATE"
        assert notice.origin == "rs"
    # None of them holds any field of the update: not in the value, the key or the headers.
    consumer_records = await read_to_end(env, env.topics.inbox("europol"))
    consumer_records += await read_to_end(env, env.topics.inbox("jc-tabanovce"))
    for r in consumer_records:
        blob = (r.key or b"") + (r.value or b"") + b"".join(v for _, v in r.headers)
        assert marker.encode() not in blob
    notice_records = [
        r for r in consumer_records if dict(r.headers)["bus-type"] == b"withdrawal-notice"
    ]
    assert len(notice_records) == 2
    for r in notice_records:
        assert dict(r.headers)["bus-key-id"] == b"hub"
        assert r.key == str(original.alert_id).encode()


async def test_exercises_go_only_where_an_agreement_carries_them_and_expired_alerts_nowhere(
    env: BusSettings,
) -> None:
    exercise = make_alert("irregular-crossing", "rs", tlp="GREEN", status="EXERCISE",
                          explicit_recipients=[])  # fmt: skip
    issued = datetime.now(UTC) - timedelta(days=3)
    expired = make_alert(
        "irregular-crossing", "rs", tlp="GREEN", explicit_recipients=[], issued_at=issued,
        occurred_at=issued - timedelta(hours=2), expires_at=issued + timedelta(days=1),
    )  # fmt: skip
    await route(env, [exercise, expired])
    inboxes = await read_inboxes(env, PARTNERS)
    assert _ids_in_inboxes(inboxes) == {("europol", str(exercise.alert_id))}
    audit = list(decisions(await read_audit(env)))
    by_partner = {r["partner"]: r for r in audit if r["alert_id"] == str(expired.alert_id)}
    assert {d["decision"] for p, d in by_partner.items() if p != "rs"} == {"expired"}
    assert "expired at" in by_partner["mk"]["reason"]


async def test_a_copy_the_inbox_refuses_is_never_audited_as_delivered(
    settings: BusSettings, keys_dir: Path
) -> None:
    env = prefixed(settings)
    agreements_keys(keys_dir, AGREEMENTS)
    # mk's inbox takes records of at most 4 KB; create it before the others.
    from bus.kafka import Admin

    async with Admin(env) as admin:
        await admin.ensure_topics([
            TopicSpec(env.topics.inbox("mk"), 1, 1, {"max.message.bytes": "4096"})
        ])  # fmt: skip
    await fanout_topics(env, AGREEMENTS)
    small = [make_alert("readmission", "rs", tlp="GREEN", explicit_recipients=[]) for _ in range(3)]
    big = make_alert("readmission", "rs", tlp="GREEN", explicit_recipients=[],
                     case_ref="R" * 60, issuing_agency="A" * 20_000)  # fmt: skip
    await publish_all(env, [small[0], big, *small[1:]])
    async with running(env) as service:
        await wait_caught_up(env, service.group_id)
    inboxes = await read_inboxes(env, PARTNERS)
    delivered = _ids_in_inboxes(inboxes)
    assert ("mk", str(big.alert_id)) not in delivered
    assert {("jc-tabanovce", str(big.alert_id)), ("europol", str(big.alert_id))} <= delivered
    for alert in small:  # the rest flowed on, to mk too
        assert ("mk", str(alert.alert_id)) in delivered
    audit = list(decisions(await read_audit(env)))
    [mk_big] = [r for r in audit if r["alert_id"] == str(big.alert_id) and r["partner"] == "mk"]
    assert mk_big["decision"] == "failed"
    assert "MessageSizeTooLarge" in mk_big["reason"] or "RecordTooLarge" in mk_big["reason"]
    assert not [
        r for r in audit if r["partner"] == "mk" and r["decision"] == "delivered"
        and r["alert_id"] == str(big.alert_id)
    ]  # fmt: skip
    [letter] = [
        r for r in await read_to_end(env, env.topics.dlq)
        if dict(r.headers)["bus-alert-id"] == str(big.alert_id).encode()
    ]  # fmt: skip
    headers = {k: v.decode("utf-8", "replace") for k, v in letter.headers}
    assert headers["bus-dlq-stage"] == "deliver"
    assert "partner.mk.inbox" in headers["bus-dlq-error-message"]
    expected = expected_inboxes([*small, big], AGREEMENTS)
    del expected["mk"][str(big.alert_id)]
    check_inboxes(inboxes, expected)


async def test_garbage_in_the_state_read_back_is_reported_and_routing_goes_on(
    env: BusSettings,
) -> None:
    first = make_alert("irregular-crossing", "rs", tlp="GREEN", explicit_recipients=[])
    await route(env, [first])
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(env.topics.fanout_state, b"\xff\xfe garbage", key=b"x")
        await producer.send_and_wait(env.topics.fanout_state, b"{}", key=b"")
        await producer.send_and_wait(env.topics.fanout_state, json.dumps(
            {"recipients": "everyone"}).encode(), key=f"rs:{uuid.uuid4()}".encode())  # fmt: skip
        await producer.send_and_wait(env.topics.audit, b"not an audit record")
    finally:
        await producer.stop()
    again = first  # a duplicate must still be recognised from the state that parsed
    second = make_alert("irregular-crossing", "rs", tlp="GREEN", explicit_recipients=[])
    await publish_all(env, [again, second])
    async with running(env) as service:
        await wait_caught_up(env, service.group_id)
        assert service.stats.state_malformed == 4
        assert service.stats.duplicates == 1
    inboxes = await read_inboxes(env, PARTNERS)
    assert {aid for _, aid in _ids_in_inboxes(inboxes)} == {
        str(first.alert_id), str(second.alert_id),
    }  # fmt: skip
    check_inboxes(inboxes, expected_inboxes([first, second], AGREEMENTS))
