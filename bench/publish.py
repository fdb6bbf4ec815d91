"""Publisher throughput against raw aiokafka, in one run on the same broker.

    .venv/bin/python bench/publish.py [--count 50000]

Baseline: raw aiokafka (idempotent, acks=all, same linger and batch size) sending pre-made
records of the same shape: pre-encoded values of the same size, the same keys, and the five
contract headers. Measured: ``Publisher.publish_many`` taking JSON-shaped dicts, so
each alert is validated (pydantic), encoded (Avro), signed (Ed25519) and produced. Uses
BUS_BOOTSTRAP_SERVERS, or starts the local broker when nothing listens there.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import BusSettings, Publisher, generate_keypair  # noqa: E402
from bus.kafka import Admin, make_producer  # noqa: E402
from bus.kafka.local import LocalKafka, _port_open  # noqa: E402
from bus.logs import configure_logging  # noqa: E402
from bus.models import ALERT_TYPES  # noqa: E402
from bus.topics import TopicSpec  # noqa: E402


def sample_dicts(count: int) -> list[dict[str, object]]:
    examples = {
        t: json.loads((REPO / "examples" / "alerts" / f"{t}.json").read_text()) for t in ALERT_TYPES
    }
    out = []
    for i in range(count):
        kind = ALERT_TYPES[i % len(ALERT_TYPES)]
        data = copy.deepcopy(examples[kind])
        data["header"]["alert_id"] = str(uuid.uuid4())
        data["header"]["origin"] = "rs"
        data["header"]["case_ref"] = f"RS-BENCH-{i}"
        data["alert_type"] = kind
        out.append(data)
    return out


async def raw_aiokafka(settings: BusSettings, topic: str, values: list[bytes]) -> float:
    """The same records on the wire (key, value size, the contract's five headers), pre-made."""
    producer = make_producer(settings, client_suffix="bench-raw")
    headers = [
        ("bus-type", b"trafficking-arrest"), ("bus-origin", b"rs"),
        ("bus-alert-id", str(uuid.uuid4()).encode()), ("bus-signature", bytes(64)),
        ("bus-key-id", b"rs"),
    ]  # fmt: skip
    keys = [f"RS-BENCH-{i}".encode() for i in range(len(values))]
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value=v, key=k, headers=headers)
            for k, v in zip(keys, values, strict=True)
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def bus_publisher(settings: BusSettings, alerts: list[dict[str, object]]) -> float:
    async with Publisher(settings, origin="rs") as pub:
        started = time.perf_counter()
        await pub.publish_many(alerts)
        return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    keys = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    generate_keypair(keys, "rs")
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = BusSettings(keys_dir=keys, topic_prefix=prefix)
    host, _, port = settings.bootstrap_servers.rpartition(":")
    if host == "127.0.0.1" and not _port_open(int(port)):
        LocalKafka(settings).start()

    alerts = sample_dicts(args.count)
    async with Publisher(settings, origin="rs") as pub:
        sizes = [len(pub.prepare(dict(a))[1]) for a in alerts[: len(ALERT_TYPES)]]
    values = [b"\xc3\x01" + bytes(sizes[i % len(sizes)] - 2) for i in range(args.count)]
    raw_topic = prefix + "raw"
    async with Admin(settings) as admin:
        await admin.ensure_topics(
            [TopicSpec(raw_topic, 3, 1)]
            + [TopicSpec(settings.topics.ingress("rs", t), 3, 1) for t in ALERT_TYPES]
        )
    print(f"{args.count} alerts, values of {min(sizes)}-{max(sizes)} bytes, "
          f"broker {settings.bootstrap_servers}")  # fmt: skip
    raw_s = await raw_aiokafka(settings, raw_topic, values)
    bus_s = await bus_publisher(settings, alerts)
    raw_rate, bus_rate = args.count / raw_s, args.count / bus_s
    print(f"raw aiokafka   {raw_rate:10,.0f} alerts/s  ({raw_s:.2f} s)")
    print(f"bus Publisher  {bus_rate:10,.0f} alerts/s  ({bus_s:.2f} s)")
    print(f"ratio Publisher/raw = {bus_rate / raw_rate:.2f}  (target ≥ 0.5)")


if __name__ == "__main__":
    asyncio.run(main())
