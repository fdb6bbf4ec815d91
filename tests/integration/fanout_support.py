"""Helpers for the fan-out tests: expected inboxes from the policy, reading inboxes back."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import Alert, AlertCodec, BusSettings, Publisher, SchemaRegistry, generate_keypair
from bus.agreements import Agreements, load_agreements
from bus.codec import DecodedNotice
from bus.envelope import header_map
from bus.kafka import topic_partitions
from bus.models import ALERT_TYPES, MessageType, Tlp, WithdrawalNotice
from bus.policy import Decision, decide
from bus.redact import redact_alert
from tests.conftest import REPO
from tests.factories import make_alert
from tests.integration.conftest import create_topics

AGREEMENTS = REPO / "examples" / "agreements.yaml"
TLPS = ("CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED")


def agreements_keys(keys_dir: Path, agreements: Agreements) -> None:
    for pid in sorted({p.country for p in agreements.partners.values() if p.country} | {"hub"}):
        if not (keys_dir / f"{pid}.key").exists():
            generate_keypair(keys_dir, pid)


def fanout_settings(settings: BusSettings) -> BusSettings:
    return settings.model_copy(update={"agreements": AGREEMENTS})


async def fanout_topics(settings: BusSettings, agreements: Agreements) -> None:
    origins = sorted({cc for a in agreements.agreements for cc in a.origins})
    await create_topics(
        settings,
        *(settings.topics.ingress(o, t) for o in origins for t in ALERT_TYPES),
        *(settings.topics.inbox(p) for p in agreements.partners),
        settings.topics.dlq, settings.topics.fanout_state,
        # One audit chain per shard, one shard per partition of the shards topic.
        settings.topics.audit, settings.topics.fanout_shards,
    )  # fmt: skip


def varied_alerts(
    count: int, agreements: Agreements, seed: int = 3, origins: tuple[str, ...] = ()
) -> list[Alert]:
    """Alerts across types, origins (the agreements', unless given), TLPs, dates and explicit
    recipients."""
    rng = random.Random(seed)
    origins = origins or tuple(sorted({cc for a in agreements.agreements for cc in a.origins}))
    partners = sorted(agreements.partners)
    out = []
    for i in range(count):
        kind = ALERT_TYPES[i % len(ALERT_TYPES)]
        origin = rng.choice(origins)
        year = rng.choice((2012, 2014, 2016, 2019, 2024))
        occurred = datetime(year, rng.randint(1, 12), rng.randint(1, 28), 10, tzinfo=UTC)
        explicit = rng.sample(partners, rng.randint(1, 4)) if rng.random() < 0.2 else []
        out.append(make_alert(
            kind, origin, tlp=rng.choice(TLPS), occurred_at=occurred, issued_at=occurred,
            explicit_recipients=explicit, expires_at=None,
        ))  # fmt: skip
    return out


async def publish_all(settings: BusSettings, alerts: list[Alert]) -> None:
    by_origin: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_origin[alert.origin].append(alert)
    for origin, batch in sorted(by_origin.items()):
        async with Publisher(settings, origin=origin) as pub:
            await pub.publish_many(batch)


@dataclass(frozen=True)
class Expected:
    alert: Alert
    redacted: tuple[str, ...]


def _decided(
    alerts: list[Alert], agreements: Agreements
) -> Iterator[tuple[Alert, str, list[Decision]]]:
    """Each alert (first of each identity only) with the policy's decisions for it, earlier
    recipients of the alerts it follows up taken into account, as the fan-out routes them."""
    received: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen: set[tuple[str, str]] = set()
    for alert in alerts:
        aid = str(alert.alert_id)
        if (alert.origin, aid) in seen:
            continue
        seen.add((alert.origin, aid))
        refs = frozenset(
            p for r in alert.header.references for p in received.get((alert.origin, str(r)), ())
        )
        decisions = decide(alert, agreements, referenced_recipients=refs)
        received[alert.origin, aid].update(d.partner_id for d in decisions if d.deliver)
        yield alert, aid, decisions


def expected_inboxes(alerts: list[Alert], agreements: Agreements) -> dict[str, dict[str, Expected]]:
    """partner → alert id → the copy it must get, by the policy (first of each id only)."""
    inboxes: dict[str, dict[str, Expected]] = defaultdict(dict)
    for alert, aid, decisions in _decided(alerts, agreements):
        for d in decisions:
            if d.deliver:
                copy = redact_alert(alert, d.redact) if d.redact else alert
                inboxes[d.partner_id][aid] = Expected(copy, d.redact)
    return inboxes


async def read_inboxes(
    settings: BusSettings,
    partners: list[str],
    *,
    expect: int | None = None,
    timeout_s: float = 60,
    notices: dict[str, list[WithdrawalNotice]] | None = None,
) -> dict[str, list[tuple[Alert, dict[str, bytes], bytes]]]:
    """Every committed record of the partners' inboxes (withdrawal notices into ``notices``;
    without it, a notice fails the test).

    Reads until ``expect`` records have arrived and a further quiet second passed (so that any
    extra copy would show), or, without ``expect``, until two quiet seconds. A commit returns
    before its markers reach every partition, so a single read-to-end could stop short.
    """
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    consumer = AIOKafkaConsumer(
        *(settings.topics.inbox(p) for p in partners),
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
        enable_auto_commit=False, auto_offset_reset="earliest", group_id=None,
    )  # fmt: skip
    await consumer.start()
    out: dict[str, list[tuple[Alert, dict[str, bytes], bytes]]] = {p: [] for p in partners}
    owner = {settings.topics.inbox(p): p for p in partners}
    loop = asyncio.get_running_loop()
    deadline, quiet_since, total = loop.time() + timeout_s, loop.time(), 0
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    decoded = codec.decode_message(r.value)
                    total += 1
                    if isinstance(decoded, DecodedNotice):
                        assert notices is not None, f"unexpected notice {decoded.notice}"
                        notices.setdefault(owner[tp.topic], []).append(decoded.notice)
                        continue
                    out[owner[tp.topic]].append((decoded.alert, header_map(r.headers), r.value))
            if batch:
                quiet_since = loop.time()
            quiet = loop.time() - quiet_since
            if (expect is not None and total >= expect and quiet > 1.0) or (
                expect is None and quiet > 2.0
            ):
                break
    finally:
        await consumer.stop()
    return out


async def wait_caught_up(settings: BusSettings, group_id: str, timeout_s: float = 180) -> None:
    """Until the fan-out's committed offsets reach the end of every ingress partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=group_id,
        enable_auto_commit=False, isolation_level="read_committed",
    )  # fmt: skip
    await consumer.start()
    try:
        layout = await topic_partitions(consumer, 10_000)
        tps = [
            TopicPartition(t, p)
            for t, ps in layout.items()
            if settings.topics.parse_ingress(t)
            for p in ps
        ]
        consumer.assign(tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            ends = await consumer.end_offsets(tps)
            behind = [tp for tp in tps if ((await consumer.committed(tp)) or 0) < ends[tp]]
            if not behind:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"fan-out still behind on {len(behind)} partition(s)")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


def check_inboxes(
    actual: dict[str, list[tuple[Alert, dict[str, bytes], bytes]]],
    expected: dict[str, dict[str, Expected]],
    codec_values: dict[str, bytes] | None = None,
) -> int:
    """Each inbox holds exactly its entitled alerts, once each, equal to the expected copy."""
    total = 0
    for partner, records in actual.items():
        ids = [str(a.alert_id) for a, _, _ in records]
        assert len(ids) == len(set(ids)), f"{partner} got duplicates"
        want = expected.get(partner, {})
        extra, missing = set(ids) - set(want), set(want) - set(ids)
        assert not extra, f"{partner}: {len(extra)} alert(s) it is not entitled to"
        assert not missing, f"{partner}: {len(missing)} entitled alert(s) missing"
        for alert, headers, value in records:
            exp = want[str(alert.alert_id)]
            assert alert == exp.alert, f"{partner} copy of {alert.alert_id} differs"
            if exp.redacted:
                assert headers["bus-key-id"] == b"hub"
                assert headers["bus-redacted"].decode().split(",") == list(exp.redacted)
            else:
                assert headers["bus-key-id"] == alert.origin.encode()
                assert "bus-redacted" not in headers
                if codec_values is not None:
                    assert value == codec_values[str(alert.alert_id)]
            total += 1
    return total


def load_example_agreements() -> Agreements:
    return load_agreements(AGREEMENTS, schemas=SchemaRegistry.load(REPO / "schemas"))


def expected_notices(alerts: list[Alert], agreements: Agreements) -> dict[str, set[str]]:
    """partner → the follow-ups it must get as a withdrawal notice, by the policy."""
    notices: dict[str, set[str]] = defaultdict(set)
    for _alert, aid, decisions in _decided(alerts, agreements):
        for d in decisions:
            if d.notice:
                notices[d.partner_id].add(aid)
    return notices


def follow_ups(originals: list[Alert], seed: int = 4) -> list[Alert]:
    """An UPDATE or CANCEL of each original, at a random TLP, keyed as the contract says: with
    the original's case reference, or none when it had none."""
    rng = random.Random(seed)
    out = []
    for original in originals:
        header = original.header.model_copy(update={
            "alert_id": uuid.uuid4(),
            "msg_type": rng.choice((MessageType.UPDATE, MessageType.CANCEL)),
            "references": [original.alert_id],
            "tlp": rng.choice(list(Tlp)),
        })  # fmt: skip
        out.append(original.model_copy(update={"header": header}))
    return out


def without_case_ref(alerts: list[Alert], every: int = 2) -> list[Alert]:
    """Every ``every``-th alert with its case reference removed (keyed by its alert id)."""
    return [
        a.model_copy(update={"header": a.header.model_copy(update={"case_ref": None})})
        if i % every == 0 else a
        for i, a in enumerate(alerts)
    ]  # fmt: skip


def start_fanout_process(
    settings: BusSettings, log: Path, **extra_env: str
) -> subprocess.Popen[bytes]:
    """``bus fanout run`` as an operator starts it, output appended to ``log``; no metrics
    endpoint on the fixed port (other runs, and other instances, may share this machine)."""
    env = {
        **os.environ,
        "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "BUS_KEYS_DIR": str(settings.keys_dir),
        "BUS_TOPIC_PREFIX": settings.topic_prefix,
        "BUS_AGREEMENTS": str(settings.agreements),
        "BUS_LOG_FORMAT": "json",
        "BUS_FANOUT_METRICS_PORT": "0",
        "PYTHONPATH": str(REPO),
        **extra_env,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bus", "fanout", "run"], env=env, cwd=REPO,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
