"""The whole loop on the secure broker, each component under its own principal.

Countries publish with their own credentials, the fan-out routes as ``fanout``, and every
entitled partner reads exactly its alerts with its own kit and a client that is not this
project (confluent-kafka and Apache Avro, ``examples/partner_consumer.py``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from bus import Publisher
from bus.access.kit import write_kit
from bus.kafka import read_to_end
from bus.models import ALERT_TYPES
from examples.partner_consumer import (
    check_signature,
    decode,
    load_keys,
    load_schemas,
    origin_of,
    read_properties,
)
from services.fanout.service import FanoutService
from tests.conftest import REPO
from tests.integration.fanout_support import (
    agreements_keys,
    expected_inboxes,
    fanout_topics,
    varied_alerts,
)
from tests.integration.secure.conftest import SecureEnv
from tests.integration.test_fanout import run_until


def read_with_kit(
    kit: Path, topic: str, want: int, quiet_s: float = 1.0
) -> list[dict[str, object]]:
    """What a partner's own consumer reads from ``topic`` with nothing but its kit."""
    config = read_properties(kit / "client.properties")
    schemas = load_schemas(kit / "schemas")
    keys = load_keys(kit / "keys")
    consumer = Consumer({**config, "group.id": f"{config['sasl.username']}.check",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    out: list[dict[str, str]] = []
    deadline, last = time.monotonic() + 60, time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(out) >= want and time.monotonic() - last > quiet_s:
                    break
                continue
            assert not msg.error(), msg.error()
            last = time.monotonic()
            headers = dict(msg.headers() or [])
            _, record = decode(msg.value(), schemas)
            key_id = headers["bus-key-id"].decode()
            problem = check_signature(
                keys, key_id, origin_of(record), msg.value(), headers["bus-signature"]
            )
            assert problem is None, problem
            out.append({"alert_id": record["header"]["alert_id"], "key_id": key_id})
    finally:
        consumer.close()
    return out


async def test_every_partner_reads_exactly_its_alerts_with_its_own_kit(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env = secure_env
    agreements_keys(keys_dir, env.agreements)
    await fanout_topics(env.admin, env.agreements)
    alerts = varied_alerts(400, env.agreements, seed=8)
    by_origin = defaultdict(list)
    for alert in alerts:
        by_origin[alert.origin].append(alert)
    for origin, batch in sorted(by_origin.items()):
        async with Publisher(env.as_principal(origin), origin=origin) as pub:  # its own login
            await pub.publish_many(batch)

    fanout = FanoutService(env.as_principal("fanout"), agreements=env.agreements)
    await run_until(fanout, len(alerts))
    expected = expected_inboxes(alerts, env.agreements)
    assert len([p for p in env.agreements.partners if expected.get(p)]) >= 10

    partners = list(env.agreements.partners)
    for partner in partners:
        write_kit(env.admin, env.access, partner, tmp_path / f"kit-{partner}")
    reads = await asyncio.gather(*(
        asyncio.to_thread(read_with_kit, tmp_path / f"kit-{p}", env.admin.topics.inbox(p),
                          len(expected.get(p, {})))
        for p in partners
    ))  # fmt: skip
    for partner, got in zip(partners, reads, strict=True):
        want = expected.get(partner, {})
        ids = [line["alert_id"] for line in got]
        assert len(ids) == len(set(ids)), partner
        assert set(ids) == set(want), partner
        for line in got:
            redacted = bool(want[line["alert_id"]].redacted)
            assert (line["key_id"] == "hub") == redacted

    # The partner consumer of the README, run as its own process with nothing but the kit.
    frontex = expected["frontex"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "examples" / "partner_consumer.py"),
        "--kit", str(tmp_path / "kit-frontex"), "--topic", env.admin.topics.inbox("frontex"),
        "--max", str(len(frontex)), "--idle-seconds", "20",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert {line["alert"]["header"]["alert_id"] for line in lines} == set(frontex)
    assert all(line["signature_ok"] for line in lines)


async def test_an_adapter_publishes_and_dead_letters_as_its_country_and_only_as_it(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    from bus.errors import AccessDenied
    from services.adapters.dropfolder import DropFolder
    from tests.integration.test_adapters import adapter, break_rows, open_all
    from tests.unit.test_adapters_countries import sample_feed

    env, names = secure_env, secure_env.admin.topics
    agreements_keys(keys_dir, env.agreements)
    topics = [names.ingress("rs", t) for t in ALERT_TYPES]
    await env.create_topics(*topics, names.dlq, partitions=3)
    data, broken = break_rows(sample_feed("rs").read_text("utf-8"))
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "mixed.csv").write_bytes(data)

    async with adapter(env.as_principal("rs"), "rs") as a, DropFolder(a, drop) as folder:
        [outcome] = await folder.scan_once()
    assert outcome.quarantined == len(broken) > 0
    published = [r for t in topics for r in await read_to_end(env.admin, t)]  # as the operators
    assert len(open_all(env.admin, published)) == outcome.published > 0
    assert len(await read_to_end(env.admin, names.dlq)) == len(broken)

    # The same adapter run with another country's credentials is refused, and says so.
    (drop / "again.csv").write_bytes(sample_feed("rs").read_bytes().replace(b"2014", b"2015"))
    with pytest.raises(AccessDenied, match=rf"principal '{env.principal('mk')}' WRITE on topic"):
        async with adapter(env.as_principal("mk"), "rs") as a, DropFolder(a, drop) as folder:
            await folder.scan_once()
