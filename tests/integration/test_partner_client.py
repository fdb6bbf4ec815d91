"""A client that is not this project decodes every value with schemas/ and verifies with .pub."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bus import AlertCodec, BusSettings, Publisher, SchemaRegistry, Signer
from bus.envelope import alert_headers
from tests.conftest import REPO, unique
from tests.factories import mixed_alerts
from tests.integration.conftest import create_topics
from tests.integration.test_pubsub import ingress_topics, prefixed


async def test_librdkafka_consumer_with_apache_avro_decodes_and_verifies_everything(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    topics = await ingress_topics(settings, ("rs", "gr"))
    alerts = mixed_alerts(50, ("rs", "gr"))
    for origin in ("rs", "gr"):
        async with Publisher(settings, origin=origin) as pub:
            await pub.publish_many([a for a in alerts if a.origin == origin])

    # Only the public keys travel to the partner.
    partner_keys = tmp_path / "partner-keys"
    partner_keys.mkdir()
    for pub_file in country_keys.glob("*.pub"):
        (partner_keys / pub_file.name).write_bytes(pub_file.read_bytes())

    cmd = [sys.executable, str(REPO / "examples" / "partner_consumer.py"),
           "--bootstrap", settings.bootstrap_servers, "--schemas", str(REPO / "schemas"),
           "--keys", str(partner_keys), "--max", "50", "--idle-seconds", "30"]  # fmt: skip
    for topic in topics:
        cmd += ["--topic", topic]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]

    assert len(lines) == 50
    assert all(line["signature_ok"] and line["signature_problem"] is None for line in lines)
    sent = {str(a.alert_id): a for a in alerts}
    for line in lines:
        alert = sent.pop(line["alert"]["header"]["alert_id"])
        assert line["key_id"] == alert.origin
        assert type(alert).from_avro(line["alert"]) == alert
    assert not sent


async def test_the_partner_accepts_only_the_origins_or_the_hubs_signature(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    # A member with a valid key of its own (gr) signs another's alert (rs); one names a key id
    # that is a path; one is the hub's. Only the origin's and the hub's signatures count.
    settings = prefixed(settings)
    topic = unique("partner-feed")
    await create_topics(settings, topic, partitions=1)
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    [alert] = mixed_alerts(1, ("rs",))
    value = codec.encode(alert)
    signers = {k: Signer.load(country_keys, k) for k in ("rs", "gr", "hub")}
    records = [  # (key id header, signed by, expected problem)
        ("rs", "rs", None),
        ("hub", "hub", None),
        ("gr", "gr", "signed by 'gr'; only 'hub' or 'rs' may sign it"),
        ("rs", "gr", "the signature does not verify with rs.pub"),
        ("../../keys/gr", "gr", "signed by '../../keys/gr'; only 'hub' or 'rs' may sign it"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for key_id, signer, _ in records:
            headers = alert_headers(alert, signers[signer].sign(value), key_id)
            await producer.send_and_wait(topic, value=value, headers=headers)
    finally:
        await producer.stop()
    partner_keys = tmp_path / "partner-keys"
    partner_keys.mkdir()
    for pub_file in country_keys.glob("*.pub"):
        (partner_keys / pub_file.name).write_bytes(pub_file.read_bytes())

    cmd = [sys.executable, str(REPO / "examples" / "partner_consumer.py"),
           "--bootstrap", settings.bootstrap_servers, "--schemas", str(REPO / "schemas"),
           "--keys", str(partner_keys), "--topic", topic, "--max", str(len(records)),
           "--idle-seconds", "30"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(x["key_id"], x["signature_ok"], x["signature_problem"]) for x in lines] == [
        (key_id, problem is None, problem) for key_id, _, problem in records
    ]
    assert all(x["alert"]["header"]["alert_id"] == str(alert.alert_id) for x in lines)


async def test_a_partner_outside_the_project_reads_its_inbox_and_never_sees_removed_fields(
    settings: BusSettings, keys_dir: Path, tmp_path: Path
) -> None:
    from services.fanout.service import FanoutService
    from tests.integration.fanout_support import (
        agreements_keys,
        expected_inboxes,
        fanout_settings,
        fanout_topics,
        load_example_agreements,
        publish_all,
        varied_alerts,
    )
    from tests.integration.test_fanout import run_until

    agreements = load_example_agreements()
    settings = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, agreements)
    await fanout_topics(settings, agreements)
    alerts = varied_alerts(1500, agreements, seed=21)
    await publish_all(settings, alerts)
    await run_until(FanoutService(settings), len(alerts))
    expected = expected_inboxes(alerts, agreements)

    partner_keys = tmp_path / "partner-keys"  # public keys only, the hub's among them
    partner_keys.mkdir()
    for pub_file in keys_dir.glob("*.pub"):
        (partner_keys / pub_file.name).write_bytes(pub_file.read_bytes())
    for partner in ("frontex", "mk"):
        want = len(expected[partner])
        assert want > 0
        cmd = [sys.executable, str(REPO / "examples" / "partner_consumer.py"),
               "--bootstrap", settings.bootstrap_servers, "--schemas", str(REPO / "schemas"),
               "--keys", str(partner_keys), "--topic", settings.topics.inbox(partner),
               "--max", str(want), "--idle-seconds", "30"]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
        )
        out, err = await asyncio.wait_for(proc.communicate(), 180)
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert len(lines) == want
        assert all(line["signature_ok"] for line in lines)
        assert {line["alert"]["header"]["alert_id"] for line in lines} == set(expected[partner])
        if partner == "frontex":  # its agreement removes the personal data of crossings
            assert all(line["key_id"] == "hub" for line in lines)
            for line in lines:
                assert line["redacted"] == ["persons", "suspected_facilitator"]
                assert line["alert"]["persons"] == []
                assert line["alert"]["suspected_facilitator"] is None
