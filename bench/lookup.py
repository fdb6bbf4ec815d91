"""Joint-index benchmark: lookups over HTTP and Kafka on an index of 1,000,000 person entries,
and the index's ingest rate against raw consumption of the same topics, in one run.

    .venv/bin/python bench/lookup.py [--alerts 20000] [--persons 50] [--batches 300] [--workers 2]

1. Publishes ALERTS irregular crossings from Serbia with PERSONS identified persons each (every
   person with an identity token): ALERTS x PERSONS index entries.
2. Raw consumption: a read_committed consumer reads those topics from the start to the end,
   without decoding (records/s). Index ingest: ``IndexService.catch_up`` decodes, verifies and
   folds the same records into SQLite (records/s and entries/s). Their ratio is the target
   (at least 0.5).
3. Starts ``bus index run`` (its own process, HTTP on a free port) on that database, then asks
   as requester ``at`` (the Balkan-route lookup agreement covers Serbia's crossings), in batches
   of 100 tokens, half of them in the index: BATCHES lookups one after another over HTTP, then
   over Kafka (request to ``lookup.at.requests``, answer read from ``lookup.at.answers``), with
   p50/p99 latency; then HTTP with 8 batches in flight for throughput. Each lookup commits its
   hit notices and audit record in a Kafka transaction before it is answered.

Uses BUS_BOOTSTRAP_SERVERS (default 127.0.0.1:9092; start one with `bus kafka start`). Prints a
JSON summary at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bus import BusSettings, Publisher, generate_keypair  # noqa: E402
from bus.codec import AlertCodec  # noqa: E402
from bus.kafka import Admin  # noqa: E402
from bus.logs import configure_logging  # noqa: E402
from bus.models import IrregularCrossing, LookupAnswer, LookupRequest  # noqa: E402
from bus.schemas import SchemaRegistry  # noqa: E402
from bus.topics import TopicSpec  # noqa: E402
from services.index.service import IndexService  # noqa: E402
from services.index.settings import IndexSettings  # noqa: E402

AGREEMENTS = REPO / "examples" / "agreements.yaml"
REQUESTER = "at"
HTTP_TOKEN = "bench-" + "b" * 40
BATCH = 100


def token(i: int) -> str:
    """The i-th person's identity token. Like the adapters' (a keyed hash), tokens are spread
    evenly, so each entry lands on a random page of the token index, as it does in production
    (counting tokens up would write that index in order, which is far cheaper)."""
    return "it1." + hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()


def alerts(count: int, persons: int) -> list[IrregularCrossing]:
    template = json.loads((REPO / "examples" / "alerts" / "irregular-crossing.json").read_text())
    person = template["persons"][0]
    now = datetime.now(UTC) - timedelta(hours=1)
    out = []
    for n in range(count):
        data = json.loads(json.dumps(template))
        data["header"].update(alert_id=str(uuid.uuid4()), case_ref=f"BENCH-{n}",
                              issued_at=now.isoformat(), occurred_at=now.isoformat(),
                              expires_at=None, explicit_recipients=[])  # fmt: skip
        data["persons"] = [{**person, "identity_token": token(n * persons + k)}
                           for k in range(persons)]  # fmt: skip
        data["head_count"] = persons
        out.append(IrregularCrossing.model_validate(data))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(latencies_s: list[float], elapsed_s: float) -> dict[str, float]:
    return {"batches": len(latencies_s), "lookups_per_s": round(len(latencies_s) * BATCH
                                                               / elapsed_s),
            "p50_ms": round(pct(latencies_s, 0.5) * 1000, 1),
            "p99_ms": round(pct(latencies_s, 0.99) * 1000, 1),
            "mean_ms": round(statistics.fmean(latencies_s) * 1000, 1)}  # fmt: skip


def asked(rng: random.Random, entries: int) -> list[str]:
    """100 tokens, half of them in the index."""
    unknown = [f"it1.{rng.getrandbits(128) | 1 << 127:032x}" for _ in range(BATCH)]
    return [token(rng.randrange(entries)) if i % 2 else unknown[i] for i in range(BATCH)]


async def raw_consumption(settings: BusSettings, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                isolation_level="read_committed", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started, seen = time.perf_counter(), 0
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            seen += sum(len(r) for r in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def http_lookups(port: int, batches: int, entries: int, concurrency: int) -> dict[str, Any]:
    rng = random.Random(7)
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        headers={"Authorization": f"Bearer {HTTP_TOKEN}"},
    ) as client:

        async def one() -> None:
            t0 = time.perf_counter()
            r = await client.post("/v1/lookup", json={"tokens": asked(rng, entries)})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t0)

        await one()  # warm-up
        latencies.clear()
        started = time.perf_counter()
        for _ in range(batches // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        return summary(latencies, time.perf_counter() - started)


async def kafka_lookups(settings: BusSettings, batches: int, entries: int) -> dict[str, Any]:
    from bus.kafka import make_producer

    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    rng = random.Random(11)
    answers = settings.topics.lookup_answers(REQUESTER)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                isolation_level="read_committed", enable_auto_commit=False,
                                fetch_max_wait_ms=5)  # fmt: skip
    producer = make_producer(settings.model_copy(update={"linger_ms": 0}), client_suffix="bench")
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(answers, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        latencies: list[float] = []
        started = time.perf_counter()
        for n in range(batches + 1):
            request = LookupRequest(request_id=uuid.uuid4(), requester=REQUESTER,
                                    tokens=asked(rng, entries))  # fmt: skip
            t0 = time.perf_counter()
            await producer.send_and_wait(
                settings.topics.lookup_requests(REQUESTER),
                codec.encode_record("lookup-request", request.to_avro()),
            )
            found = False
            while not found:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for r in records:
                        _, data = codec.decode_record(r.value)
                        found |= LookupAnswer.from_avro(data).request_id == request.request_id
            if n == 0:
                started = time.perf_counter()  # the first one warms up
            else:
                latencies.append(time.perf_counter() - t0)
        return summary(latencies, time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging("WARNING", "console")
    load_at_start = round(os.getloadavg()[0], 1)
    work = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    atexit.register(shutil.rmtree, work, True)  # its private keys leave with the run
    keys = work / "keys"
    keys.mkdir()
    for key_id in ("rs", "hub"):
        generate_keypair(keys, key_id)
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = BusSettings(keys_dir=keys, topic_prefix=prefix, agreements=AGREEMENTS,
                           publish_timeout_ms=120_000)  # fmt: skip
    try:
        return await measure(args, settings, work, load_at_start)
    finally:  # the run's topics go with it
        async with Admin(settings) as admin:
            await admin.delete_prefixed(prefix)


async def measure(
    args: argparse.Namespace, settings: BusSettings, work: Path, load_at_start: float
) -> dict[str, Any]:
    keys, prefix = settings.keys_dir, settings.topic_prefix
    topic = settings.topics.ingress("rs", "irregular-crossing")
    async with Admin(settings) as admin:
        await admin.ensure_topics([TopicSpec(topic, settings.topic_partitions, 1)])
    entries = args.alerts * args.persons
    print(f"Publishing {args.alerts} alerts x {args.persons} persons = {entries} entries …",
          file=sys.stderr)  # fmt: skip
    t0 = time.perf_counter()
    made = alerts(args.alerts, args.persons)
    async with Publisher(settings, origin="rs") as pub:
        for i in range(0, len(made), 1000):
            await pub.publish_many(made[i : i + 1000])
    published_s = time.perf_counter() - t0
    del made

    cpu0 = time.process_time()
    raw = await raw_consumption(settings, topic, args.alerts)
    raw_cpu_s = time.process_time() - cpu0
    index_settings = IndexSettings(data_dir=work / "data", **(
        {"index_workers": args.workers} if args.workers is not None else {}))  # fmt: skip
    service = IndexService(settings, index_settings)
    t0, cpu0 = time.perf_counter(), time.process_time()
    await service.catch_up()
    ingest_s = time.perf_counter() - t0
    # CPU per record, of this process and of the worker processes: a measure the other work on
    # a shared machine disturbs far less than records per second.
    ingest_cpu_s = time.process_time() - cpu0
    if index_settings.index_workers:
        ingest_cpu_s += service.opening_cpu_s
    counts = service.store.counts()
    service.store.close()
    ingest = args.alerts / ingest_s
    print(f"Raw {raw:.0f} records/s; index {ingest:.0f} records/s "
          f"({entries / ingest_s:.0f} entries/s); {counts}", file=sys.stderr)  # fmt: skip

    port = free_port()
    env = {**os.environ, "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "BUS_TOPIC_PREFIX": prefix, "BUS_KEYS_DIR": str(keys), "BUS_AGREEMENTS": str(AGREEMENTS),
           "BUS_DATA_DIR": str(index_settings.data_dir), "BUS_LOOKUP_HTTP_PORT": str(port),
           "BUS_LOOKUP_HTTP_TOKENS": json.dumps({REQUESTER: HTTP_TOKEN}),
           "BUS_LOG_LEVEL": "WARNING", "BUS_INDEX_METRICS_PORT": "0"}  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
        [sys.executable, "-m", "bus", "index", "run"], env=env, cwd=REPO
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/openapi.json")).is_success:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # the request consumer joins its group
        http_seq = await http_lookups(port, args.batches, entries, 1)
        kafka_seq = await kafka_lookups(settings, args.batches, entries)
        http_par = await http_lookups(port, args.batches, entries, 8)
    finally:
        proc.terminate()
        proc.wait(60)
    return {
        "entries": counts["entries"], "alerts": args.alerts, "persons": args.persons,
        "publish_s": round(published_s, 1), "ingest_workers": index_settings.index_workers,
        # The machine is shared: its load says how far the figures can be trusted.
        "load_average_1m": {"start": load_at_start, "end": round(os.getloadavg()[0], 1)},
        "raw_consumption_records_per_s": round(raw),
        "index_ingest_records_per_s": round(ingest),
        "index_ingest_entries_per_s": round(entries / ingest_s),
        "ingest_vs_raw": round(ingest / raw, 3),
        "raw_consumption_cpu_us_per_record": round(raw_cpu_s / args.alerts * 1e6),
        "index_ingest_cpu_us_per_record": round(ingest_cpu_s / args.alerts * 1e6),
        "index_ingest_cpu_us_per_record_in_workers": round(
            service.opening_cpu_s / args.alerts * 1e6) if index_settings.index_workers else 0,
        "http_sequential_batch_100": http_seq, "kafka_sequential_batch_100": kafka_seq,
        "http_8_in_flight_batch_100": http_par,
    }  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--persons", type=int, default=50)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument(
        "--workers", type=int, default=None, help="ingest worker processes (BUS_INDEX_WORKERS)"
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result, indent=1))
