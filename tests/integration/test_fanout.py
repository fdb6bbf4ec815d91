"""The fan-out against the real broker: exactly the entitled copies, once, with an intact audit."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from bus import AlertCodec, BusSettings, SchemaRegistry
from bus.admin import read_audit
from bus.audit import chain_of, decisions, verify_chain, verify_chains
from bus.kafka import read_to_end
from bus.models import WithdrawalNotice
from services.fanout.service import FanoutService
from tests.factories import make_alert
from tests.integration.fanout_support import (
    agreements_keys,
    check_inboxes,
    expected_inboxes,
    fanout_settings,
    fanout_topics,
    load_example_agreements,
    publish_all,
    read_inboxes,
    varied_alerts,
)
from tests.integration.test_pubsub import prefixed

AGREEMENTS = load_example_agreements()


@pytest.fixture
async def fanout_env(settings: BusSettings, keys_dir: Path) -> BusSettings:
    s = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(s, AGREEMENTS)
    return s


async def run_until(service: FanoutService, inputs: int, timeout_s: float = 180) -> None:
    """Run the service until it has routed ``inputs`` records, then stop it."""
    task = asyncio.create_task(service.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            s = service.stats
            if s.alerts + s.duplicates + s.dead_lettered >= inputs:
                break
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, f"fan-out stuck at {s}"
            await asyncio.sleep(0.2)
    finally:
        service.stop()
        await asyncio.wait_for(task, 60)


async def test_ten_thousand_alerts_reach_exactly_their_entitled_partners_once(
    fanout_env: BusSettings,
) -> None:
    settings = fanout_env
    alerts = varied_alerts(10_000, AGREEMENTS)
    await publish_all(settings, alerts)
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    originals = {str(a.alert_id): codec.encode(a) for a in alerts}

    service = FanoutService(settings)
    await run_until(service, len(alerts))

    expected = expected_inboxes(alerts, AGREEMENTS)
    total = sum(len(v) for v in expected.values())
    actual = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=total)
    delivered = check_inboxes(actual, expected, originals)
    assert delivered == service.stats.delivered > 1000
    redacted = sum(1 for recs in actual.values() for _, h, _ in recs if "bus-redacted" in h)
    assert redacted > 0, "the sample agreements redact for Frontex; some copies must be redacted"

    audit = await read_audit(settings)
    assert len(audit) == len(alerts)  # one record per alert, with every partner's decision
    assert {len(r["decisions"]) for r in audit} == {len(AGREEMENTS.partners)}
    decided = {(r["alert_id"], r["partner"]): r for r in decisions(audit)}
    assert len(decided) == len(alerts) * len(AGREEMENTS.partners)
    for partner, want in expected.items():
        for aid, exp in want.items():
            record = decided[(aid, partner)]
            assert record["decision"] == "delivered"
            assert tuple(record["redacted"]) == exp.redacted
            assert record["agreements"]
    verdicts = verify_chains(audit)
    assert sorted(verdicts) == [0, 1, 2]  # one chain per shard
    assert all(v.ok for v in verdicts.values())

    # Tampering with an exported copy is found at the index where it happened.
    rng = random.Random(5)
    audit = [r for r in audit if chain_of(r) == 1]
    i = rng.randrange(1, len(audit) - 1)
    changed = [dict(r) for r in audit]
    changed[i]["decisions"] = [{**changed[i]["decisions"][0], "decision": "denied"}]
    assert verify_chain(changed).first_broken == i
    assert verify_chain(audit[:i] + audit[i + 1 :]).first_broken == i
    moved = [*audit[:i], audit[i + 1], audit[i], *audit[i + 2 :]]
    assert verify_chain(moved).first_broken == i


async def test_an_alert_published_twice_is_delivered_once(fanout_env: BusSettings) -> None:
    settings = fanout_env
    alert = make_alert("irregular-crossing", "rs", tlp="AMBER")
    await publish_all(settings, [alert, alert, alert])
    service = FanoutService(settings)
    await run_until(service, 3)
    assert service.stats.duplicates == 2
    expected = expected_inboxes([alert], AGREEMENTS)
    total = sum(len(v) for v in expected.values())
    actual = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=total)
    check_inboxes(actual, expected)
    assert sum(len(r) for r in actual.values()) >= 2  # rs→mk, jc-tabanovce, frontex, …


async def test_a_follow_up_the_rules_deny_reaches_earlier_recipients_as_a_notice(
    fanout_env: BusSettings,
) -> None:
    settings = fanout_env
    original = make_alert("irregular-crossing", "rs", tlp="AMBER")
    service = FanoutService(settings)
    await publish_all(settings, [original])
    await run_until(service, 1)
    first = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=2)
    got_it = {p for p, recs in first.items() if recs}
    assert got_it == {"mk", "jc-tabanovce"}  # the sample's explicit recipients

    # The update is RED with no explicit recipients: by the rules nobody gets its content.
    update = make_alert("irregular-crossing", "rs", tlp="RED", msg_type="UPDATE",
                        references=[str(original.alert_id)])  # fmt: skip
    await publish_all(settings, [update])
    second = FanoutService(settings)
    await run_until(second, 1)
    notices: dict[str, list[WithdrawalNotice]] = {}
    after = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=4, notices=notices)
    assert not any(a.alert_id == update.alert_id for recs in after.values() for a, _, _ in recs)
    assert set(notices) == got_it
    for [notice] in notices.values():
        assert notice.alert_ids == [original.alert_id]
        assert notice.follow_up_id == update.alert_id
        assert notice.origin == "rs"
        assert notice.msg_type.value == "UPDATE"
    audit = [
        r for r in decisions(await read_audit(settings)) if r["alert_id"] == str(update.alert_id)
    ]
    assert {r["partner"] for r in audit if r["decision"] == "notice"} == got_it
    assert not [r for r in audit if r["decision"] == "delivered"]


async def test_invalid_ingress_goes_to_the_dead_letter_topic(fanout_env: BusSettings) -> None:
    from aiokafka import AIOKafkaProducer

    settings = fanout_env
    topic = settings.topics.ingress("rs", "readmission")
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    await producer.send_and_wait(topic, b"not an alert", headers=[("bus-key-id", b"rs")])
    await producer.stop()
    good = make_alert("readmission", "rs", tlp="GREEN")
    await publish_all(settings, [good])
    service = FanoutService(settings)
    await run_until(service, 2)
    assert service.stats.dead_lettered == 1
    dlq = await read_to_end(settings, settings.topics.dlq)
    [letter] = dlq
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["bus-dlq-stage"] == "decode"
    assert headers["bus-dlq-topic"] == topic
    assert letter.value == b"not an alert"
    audit = await read_audit(settings)
    assert {r["alert_id"] for r in audit} == {str(good.alert_id)}
    assert json.loads(json.dumps(audit[0]))["source"]["topic"] == topic
