"""Publisher throughput against raw aiokafka and FastStream, in one run on the same broker.

    .venv/bin/python bench/publish.py [--count 50000] [--rounds 3] [--warmup 2000]
                                     [--workers N] [--profile publisher.prof]

Three producers, one after the other, all idempotent with acks=all and the same linger and
batch size, each waiting until Kafka acknowledged every record, each timed after a warm-up
of its own (a first send learns the topics; the broker and the codec warm up too):

- raw aiokafka: pre-made records of the same shape (pre-encoded values of the same sizes, the
  same keys, the five contract headers), one ``send`` each: the floor of the client's cost;
- FastStream: the same JSON-shaped dicts validated into the same pydantic models, published
  as JSON (FastStream's own serialisation), unsigned, pipelined (``no_confirm``, then gather);
- ``Publisher.publish_many`` taking the same dicts: validated (pydantic), encoded (Avro),
  signed (Ed25519) and produced, first in one process (``BUS_PUBLISH_WORKERS=0``, the
  default), then with ``--workers`` preparing processes (``BUS_PUBLISH_WORKERS``; default one
  less than the cores).

The four run in turn, ``--rounds`` times, so that a slow spell of the machine hits each. For
each it prints the median alerts per second (and the range) and the CPU time per alert of this
process and of the publisher's workers (the broker's is not counted). It ends with the two ratio
lines, of the Publisher with workers; the one-process ratios come just before them.
``--profile`` writes a cProfile of the one-process run (the last round's). Uses
BUS_BOOTSTRAP_SERVERS, or starts the local broker when nothing listens there.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import copy
import cProfile
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bus import BusSettings, Publisher, generate_keypair, parse_alert  # noqa: E402
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


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system) other processes spent so far, from /proc (Linux)."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Timed:
    """Wall-clock and CPU time of a block: this process's, and that of ``workers``."""

    def __init__(self, workers: list[int] | None = None) -> None:
        self.workers = workers or []

    def __enter__(self) -> Timed:
        self.wall = time.perf_counter()
        self.cpu = time.process_time() + cpu_of(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() + cpu_of(self.workers) - self.cpu


async def raw_aiokafka(
    settings: BusSettings, topic: str, values: list[bytes], warmup: int
) -> Timed:
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
        warm = [await producer.send(topic, value=v, key=k, headers=headers)
                for k, v in zip(keys[:warmup], values[:warmup], strict=True)]  # fmt: skip
        await asyncio.gather(*warm)
        with Timed() as timed:
            futures = [
                await producer.send(topic, value=v, key=k, headers=headers)
                for k, v in zip(keys, values, strict=True)
            ]
            await asyncio.gather(*futures)
        return timed
    finally:
        await producer.stop()


async def faststream(
    settings: BusSettings, alerts: list[dict[str, object]], warmup: list[dict[str, object]]
) -> Timed:
    """The same models, validated the same way, published by FastStream as JSON."""
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(
        settings.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        max_batch_size=settings.max_batch_size_bytes,
    )
    await broker.start()

    async def publish_all(alerts: list[dict[str, object]]) -> None:
        futures = []
        for data in alerts:
            alert = parse_alert(data)
            topic = settings.topics.ingress(alert.origin, alert.alert_type)
            futures.append(
                await broker.publish(
                    alert, topic, key=alert.record_key, no_confirm=True,
                    headers={"bus-type": alert.alert_type, "bus-origin": alert.origin,
                             "bus-alert-id": str(alert.alert_id)},
                )
            )  # fmt: skip
        await asyncio.gather(*futures)

    try:
        await publish_all(warmup)
        with Timed() as timed:
            await publish_all(alerts)
        return timed
    finally:
        await broker.stop()


async def bus_publisher(
    settings: BusSettings,
    alerts: list[dict[str, object]],
    warmup: list[dict[str, object]],
    profile: str | None = None,
) -> Timed:
    async with Publisher(settings, origin="rs") as pub:
        await pub.publish_many(warmup)
        profiler = cProfile.Profile() if profile else None
        with Timed(pub.worker_pids) as timed:
            if profiler:
                profiler.enable()
            await pub.publish_many(alerts)
            if profiler:
                profiler.disable()
        if profiler and profile:
            profiler.dump_stats(profile)
        return timed


def report(name: str, count: int, rounds: list[Timed]) -> float:
    """Print the median round's rate (and the range), and its CPU per alert; return the rate."""
    rates = sorted(count / t.wall for t in rounds)
    cpu = statistics.median(t.cpu for t in rounds)
    rate = statistics.median(rates)
    spread = f" ({rates[0]:,.0f}-{rates[-1]:,.0f})" if len(rates) > 1 else ""
    print(f"{name:14s} {rate:10,.0f} alerts/s{spread}  "
          f"CPU {cpu / count * 1e6:6.1f} µs/alert")  # fmt: skip
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="BUS_PUBLISH_WORKERS of the second Publisher run (default: one less than the cores)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each, one after the other; the median"
    )
    parser.add_argument(
        "--warmup", type=int, default=2000, help="alerts each client sends before it is timed"
    )
    parser.add_argument("--profile", help="write a cProfile of the one-process runs to this file")
    args = parser.parse_args()
    if not 0 <= args.warmup <= args.count or args.rounds < 1:
        parser.error("--warmup is between 0 and --count, --rounds at least 1")
    configure_logging("WARNING", "console")
    keys = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    atexit.register(shutil.rmtree, keys, True)  # its private keys leave with the run
    generate_keypair(keys, "rs")
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = BusSettings(keys_dir=keys, topic_prefix=prefix)
    host, _, port = settings.bootstrap_servers.rpartition(":")
    if host == "127.0.0.1" and not _port_open(int(port)):
        LocalKafka(settings).start()

    alerts = sample_dicts(args.count)
    warmup = sample_dicts(args.warmup)
    async with Publisher(settings, origin="rs") as pub:
        sizes = [len(pub.prepare(dict(a))[1]) for a in alerts[: len(ALERT_TYPES)]]
    values = [b"\xc3\x01" + bytes(sizes[i % len(sizes)] - 2) for i in range(args.count)]
    raw_topic = prefix + "raw"
    async with Admin(settings) as admin:
        await admin.ensure_topics(
            [TopicSpec(raw_topic, 3, 1)]
            + [TopicSpec(settings.topics.ingress("rs", t), 3, 1) for t in ALERT_TYPES]
        )
    try:
        print(f"{args.count} alerts, values of {min(sizes)}-{max(sizes)} bytes, "
              f"broker {settings.bootstrap_servers}")  # fmt: skip
        with_workers = settings.model_copy(update={"publish_workers": args.workers})
        runs: dict[str, list[Timed]] = {"raw": [], "fs": [], "one": [], "workers": []}
        for _ in range(args.rounds):  # each round in turn, so a slow spell of the machine hits all
            runs["raw"].append(await raw_aiokafka(settings, raw_topic, values, args.warmup))
            runs["fs"].append(await faststream(settings, alerts, warmup))
            runs["one"].append(await bus_publisher(settings, alerts, warmup, args.profile))
            runs["workers"].append(await bus_publisher(with_workers, alerts, warmup))
        print(f"median of {args.rounds} round(s), each after {args.warmup} alerts of warm-up:")
        raw_rate = report("raw aiokafka", args.count, runs["raw"])
        fs_rate = report("FastStream", args.count, runs["fs"])
        one_rate = report("bus Publisher", args.count, runs["one"])
        bus_rate = report(f"  +{args.workers} workers", args.count, runs["workers"])
        print(f"(in one process: Publisher/raw = {one_rate / raw_rate:.2f}, "
              f"Publisher/FastStream = {one_rate / fs_rate:.2f})")  # fmt: skip
        print(f"ratio Publisher/raw = {bus_rate / raw_rate:.2f}")
        print(f"ratio Publisher/FastStream = {bus_rate / fs_rate:.2f}")
    finally:  # the run's topics go with it: a default run writes about 650 MB into them
        async with Admin(settings) as admin:
            await admin.delete_prefixed(prefix)


if __name__ == "__main__":
    asyncio.run(main())
