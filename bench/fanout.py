"""Fan-out throughput and latency against a raw exactly-once forwarder, in one run on one broker.

    .venv/bin/python bench/fanout.py [--count 20000] [--rate 500] [--seconds 10]

Baseline: a minimal exactly-once forwarder in raw aiokafka. It reads the ingress topics
``read_committed`` and produces the same bytes to every partner's inbox (ten copies per alert,
as many as the fan-out writes), one Kafka transaction per batch carrying the input offsets
(``send_offsets_to_transaction``). Measured: ``FanoutService``
with ten partners under one agreement that gives every alert of the bench origin to all ten
(variant ``plain``), and with five of them under agreements that remove the personal fields
(variant ``redact``: one re-encoded, re-signed copy per alert). Per alert the fan-out writes ten
inbox copies, one audit record (every decision for the alert) and a state record in its
transaction.

Saturation: COUNT alerts are published first; the forwarder then starts and the rate is COUNT
over the time from ready to the last one committed (capped by --max-seconds), with the CPU time
the forwarder's process spent per alert (less sensitive to a busy machine than the rate) and the
output records per second (the fan-out writes 12 per alert, the raw forwarder 10). Latency: a
separate process sends at --rate alerts/s, paced by the clock, the records ``Publisher`` makes
(encoded and signed beforehand, to keep that process light), and reads the output
``read_committed`` (for the fan-out: the last partner's inbox, a redacted one in the redact
variant); latency runs from just before the send to the record decoded with ``AlertCodec``. The
first --warmup-seconds of alerts, offered at the same rate, are not measured: latency is the
steady state's, not a fresh producer's first transactions. The load generator has its own
process so that the forwarder's CPU use does not delay its clock. Both forwarders' transactional
producers have no linger (they hand whole batches over and wait for them).

Soak (``--soak [N]``, N = 1,000,000 unless given; nothing else is measured then): one
``FanoutService`` (variant ``plain``, ten partners) runs in a process of its own that does
nothing else, while this process publishes N fresh alerts to it at --rate alerts/s, paced by the
clock, encoded and signed a chunk at a time (and holds back while more than 10,000 are published
but not yet routed, so the broker is never flooded). Once the first 5 % are routed (the warm-up)
the fan-out process's RSS (``VmRSS`` of ``/proc/<pid>/status``) is sampled every
--soak-interval seconds; the run reports it at the end of the warm-up, its minimum, maximum and
last value, and the drift last/warm-up against the target of ±10 %. ``Routed`` remembers the
recipients of every alert for its follow-ups, so it grows with each distinct alert, but on disk
(a SQLite file under ``BUS_FANOUT_STATE_DIR``) with a bounded page cache in the process: the
report gives the RSS growth per alert, and the file's size and entries at the end. The
soak's ingress, inbox, audit and dead-letter topics keep about 64 MiB per partition.

    .venv/bin/python bench/fanout.py --soak --rate 1000

Uses BUS_BOOTSTRAP_SERVERS, or starts the local broker when nothing listens there; the run's
topics are deleted at the end (--keep-topics keeps them).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
sys.path.insert(0, str(REPO))

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bus import AlertCodec, BusSettings, Publisher, SchemaRegistry, generate_keypair  # noqa: E402
from bus.agreements import Agreements, parse_agreements  # noqa: E402
from bus.envelope import alert_headers  # noqa: E402
from bus.errors import KafkaError  # noqa: E402
from bus.kafka import Admin, bounded, make_consumer, make_producer, topic_partitions  # noqa: E402
from bus.kafka.local import LocalKafka, _port_open  # noqa: E402
from bus.keys import HUB_KEY_ID, Signer  # noqa: E402
from bus.logs import configure_logging  # noqa: E402
from bus.models import ALERT_TYPES, Alert  # noqa: E402
from bus.topics import TopicSpec  # noqa: E402
from services.fanout.routed import CACHE_KIB  # noqa: E402
from services.fanout.service import FanoutService  # noqa: E402
from tests.factories import make_alert  # noqa: E402

ORIGIN = "rs"
READY_S = 60.0
#: Personal data removed for the redacted partners, per type (no path is common to all types).
REDACT = {
    "citizen-assistance": ["persons"],
    "foreign-fighter-travel": [
        "person.family_name",
        "person.given_names",
        "person.travel_document",
    ],
    "irregular-crossing": ["persons", "suspected_facilitator"],
    "readmission": ["persons"],
    "trafficking-arrest": ["suspects"],
}
Record = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


# -- set-up ------------------------------------------------------------------------------------


def bench_agreements(partners: list[str], variant: str, registry: SchemaRegistry) -> Agreements:
    """Every alert of ORIGIN to every partner; with ``redact``, the second half gets no persons."""
    common = {
        "legal_basis": "Benchmark",
        "origins": [ORIGIN],
        "max_tlp": "AMBER",
        "valid_from": "2000-01-01",
        "valid_until": None,
    }
    half = len(partners) // 2 if variant == "redact" else len(partners)
    agreements = [
        {
            **common,
            "id": "bench-all",
            "title": "All alerts, whole",
            "recipients": partners[:half],
            "types": ["*"],
            "redact": [],
        }
    ][: 1 if half else 0]
    agreements += [
        {
            **common,
            "id": f"bench-redact-{t}",
            "title": f"{t} without persons",
            "recipients": partners[half:],
            "types": [t],
            "redact": REDACT[t],
        }
        for t in ALERT_TYPES
        if partners[half:]
    ]
    data = {
        "partners": {
            p: {"name": f"Bench {p}", "country": None, "public_key": None} for p in partners
        },
        "agreements": agreements,
    }
    return parse_agreements(data, source=f"bench agreements ({variant})", schemas=registry)


def bench_alerts(count: int) -> list[Alert]:
    """Alerts of every type from ORIGIN, each allowed to every partner by the agreements."""
    return [
        make_alert(ALERT_TYPES[i % len(ALERT_TYPES)], ORIGIN, tlp="AMBER", explicit_recipients=[])
        for i in range(count)
    ]


def topic_specs(
    settings: BusSettings, partners: list[str], retention: dict[str, str] | None = None
) -> list[TopicSpec]:
    """The run's topics; ``retention`` is the config of those that only grow (all but the
    fan-out's state and shards)."""
    n, names, kept = settings.topic_partitions, settings.topics, retention or {}
    compact = {"cleanup.policy": "compact"}
    return [
        *(TopicSpec(names.ingress(ORIGIN, t), n, 1, kept) for t in ALERT_TYPES),
        *(TopicSpec(names.inbox(p), n, 1, kept) for p in partners),
        TopicSpec(names.dlq, n, 1, kept),
        TopicSpec(names.fanout_state, n, 1, compact),
        TopicSpec(names.audit, n, 1, kept),  # one audit chain per fan-out shard
        TopicSpec(names.fanout_shards, n, 1),
    ]


def signing(settings: BusSettings) -> Callable[[list[Alert]], list[Record]]:
    """What ``Publisher`` sends for each alert: topic, key, signed value, headers."""
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    signer = Signer.load(settings.keys_dir, ORIGIN)

    def records(alerts: list[Alert]) -> list[Record]:
        out: list[Record] = []
        for alert in alerts:
            value = codec.encode(alert)
            headers = alert_headers(alert, signer.sign(value), ORIGIN)
            out.append((alert.alert_type, alert.record_key, value, headers))
        return out

    return records


def prepared(settings: BusSettings, alerts: list[Alert]) -> list[Record]:
    return signing(settings)(alerts)


async def produce(settings: BusSettings, records: list[Record]) -> None:
    producer = make_producer(settings, client_suffix="bench-load")
    await bounded(producer.start(), settings.connect_timeout_ms, "Starting the load producer")
    try:
        names = settings.topics
        futures = [
            await producer.send(names.ingress(ORIGIN, t), key=k, value=v, headers=h)
            for t, k, v, h in records
        ]
        await bounded(asyncio.gather(*futures), settings.publish_timeout_ms, "Pre-publishing")
    finally:
        await asyncio.wait_for(producer.stop(), 30)


async def delete_topics(settings: BusSettings, prefixes: list[str]) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await asyncio.wait_for(client.start(), 15)
    try:
        topics = await asyncio.wait_for(client.list_topics(), 15)
        doomed = [t for t in topics if t.startswith(tuple(prefixes))]
        for i in range(0, len(doomed), 50):
            await asyncio.wait_for(client.delete_topics(doomed[i : i + 50]), 30)
    finally:
        await client.close()


# -- the two systems under test ----------------------------------------------------------------


class RawForwarder:
    """Consume ingress ``read_committed``, produce the same bytes to every partner's inbox, one
    transaction per batch with the input offsets: a minimal exactly-once forwarder, fixed
    assignment, writing as many copies per alert as the fan-out."""

    def __init__(
        self, settings: BusSettings, partners: list[str], *, name: str = "raw",
        max_batch: int = 500,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.outputs = [settings.topics.inbox(p) for p in partners]
        self.group_id = f"{settings.topic_prefix}bench-{name}"
        self.forwarded = 0
        self.transactions = 0
        self._max_batch = max_batch
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def wait_ready(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout_s)

    async def run(self) -> None:
        s = self.settings
        # Configured as the fan-out's producer is: no linger (a transaction is waited for).
        producer = make_producer(
            s.model_copy(update={"linger_ms": 0}), transactional_id=self.group_id,
            client_suffix="bench-raw",
        )  # fmt: skip
        consumer = make_consumer(s, group_id=self.group_id, client_suffix="bench-raw")
        try:
            await bounded(producer.start(), s.connect_timeout_ms, "Starting the raw producer")
            await bounded(consumer.start(), s.connect_timeout_ms, "Starting the raw consumer")
            layout = await topic_partitions(consumer, s.request_timeout_ms)
            tps = sorted(
                TopicPartition(t, p)
                for t, ps in layout.items()
                if s.topics.parse_ingress(t)
                for p in ps
            )
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._ready.set()
            while not self._stopping.is_set():
                batch = await bounded(
                    consumer.getmany(timeout_ms=50, max_records=self._max_batch),
                    s.request_timeout_ms,
                    "Reading ingress",
                    timeout_error=KafkaError,
                )
                if not batch:
                    continue
                await bounded(
                    self._forward(producer, batch),
                    s.publish_timeout_ms,
                    "Committing a forwarder transaction",
                    timeout_error=KafkaError,
                )
                self.forwarded += sum(len(records) for records in batch.values())
                self.transactions += 1
        finally:
            for client in (consumer, producer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 10)

    async def _forward(
        self, producer: Any, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        async with producer.transaction():
            for records in batch.values():
                for r in records:
                    headers = list(r.headers)
                    for out in self.outputs:
                        await producer.send(out, key=r.key, value=r.value, headers=headers)
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            await producer.send_offsets_to_transaction(offsets, self.group_id)


@dataclass
class Running:
    progress: Callable[[], int]  # inputs committed so far
    records: Callable[[], int]  # output records committed so far
    task: asyncio.Task[None]
    info: Callable[[], str]
    system: Any = None  # the FanoutService, for the fan-out


@contextlib.asynccontextmanager
async def running(
    kind: str, settings: BusSettings, agreements: Agreements | None, name: str = "raw"
) -> AsyncIterator[Running]:
    """Start the raw forwarder or the fan-out; yield once it is consuming; stop it cleanly."""
    if kind == "raw":
        assert agreements is not None
        raw = RawForwarder(settings, sorted(agreements.partners), name=name)
        system: Any = raw
        task = asyncio.create_task(raw.run())
        handle = Running(
            lambda: raw.forwarded, lambda: raw.forwarded * len(raw.outputs), task,
            lambda: f"{raw.transactions} txns",
        )  # fmt: skip
    else:
        service = FanoutService(settings, agreements=agreements)
        system = service
        task = asyncio.create_task(service.run())

        def progress() -> int:
            st = service.stats
            return st.alerts + st.duplicates + st.dead_lettered

        def records() -> int:  # copies and notices, audit and state records, dead letters
            st = service.stats
            audit = st.alerts + st.duplicates + st.refused
            return st.delivered + st.notices + audit + st.alerts + st.dead_lettered

        def info() -> str:
            st = service.stats
            return (
                f"{st.transactions} txns, {st.delivered} copies, "
                f"{st.dead_lettered} dlq, {st.restarts} restarts"
            )

        handle = Running(progress, records, task, info, service)
    try:
        await until_ready(system.wait_ready(READY_S), task)
        yield handle
    finally:
        system.stop()
        try:
            await asyncio.wait_for(task, 30)
        except TimeoutError:
            print(f"warning: {kind} did not stop within 30 s; cancelled", file=sys.stderr)


async def until_ready(ready: Awaitable[object], task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(ready)
    await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not waiter.done():
        waiter.cancel()
        task.result()  # raises what stopped it
        raise RuntimeError("the forwarder returned before it was ready")
    waiter.result()


# -- saturation --------------------------------------------------------------------------------


@dataclass
class Saturation:
    done: int
    records: int
    seconds: float
    cpu_s: float  # CPU time of this process (only the forwarder runs in it meanwhile)
    capped: bool
    info: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


async def saturate(
    kind: str,
    settings: BusSettings,
    agreements: Agreements | None,
    count: int,
    cap_s: float,
    profile: Path | None = None,
    name: str = "raw",
) -> Saturation:
    async with running(kind, settings, agreements, name) as sut:
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        while sut.progress() < count and time.perf_counter() - started < cap_s:
            if sut.task.done():
                sut.task.result()
                raise RuntimeError(f"{kind} stopped during the saturation run")
            await asyncio.sleep(0.01)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
            print_profile(profile)
        done = sut.progress()
        return Saturation(done, sut.records(), elapsed, cpu, done < count, sut.info())


def print_profile(path: Path) -> None:
    text = io.StringIO()
    pstats.Stats(str(path), stream=text).sort_stats("tottime").print_stats(25)
    print(f"cProfile of the fan-out saturation run, top 25 by own time ({path}):", file=sys.stderr)
    print(text.getvalue(), file=sys.stderr)


# -- latency -----------------------------------------------------------------------------------


@dataclass
class Latency:
    sent: int
    received: int
    duplicates: int
    lat_ms: list[float] = field(repr=False)
    lag_ms: float
    offered: float

    def pct(self, q: float) -> float:
        if not self.lat_ms:
            return math.nan
        ordered = sorted(self.lat_ms)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def latency(
    kind: str,
    settings: BusSettings,
    agreements: Agreements | None,
    read_topic: str,
    rate: float,
    seconds: float,
    warmup: float,
) -> Latency:
    params = {
        "bootstrap": settings.bootstrap_servers,
        "keys": str(settings.keys_dir),
        "prefix": settings.topic_prefix,
        "topic": read_topic,
        "rate": rate,
        "seconds": seconds,
        "warmup": warmup,
    }
    async with running(kind, settings, agreements) as sut:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "--load-process",
            json.dumps(params),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), warmup + seconds + 120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"the load process for {kind} did not finish in time") from None
        if sut.task.done():
            sut.task.result()
        if proc.returncode != 0:
            raise RuntimeError(f"the load process for {kind} failed ({proc.returncode})")
    return Latency(**json.loads(out.decode().strip().splitlines()[-1]))


async def load_process(p: dict[str, Any]) -> None:
    """In its own process: publish at a fixed rate; time each alert until decoded in the output."""
    quiet_logging()
    settings = BusSettings(
        bootstrap_servers=p["bootstrap"], keys_dir=Path(p["keys"]), topic_prefix=p["prefix"]
    )
    rate, n = float(p["rate"]), int(p["rate"] * p["seconds"])
    # The first ``w`` alerts warm the path up at the offered rate and are not measured: a
    # producer's first transactions and a consumer's first fetches are slower than the rest.
    w = int(rate * p["warmup"])
    alerts, warmup = bench_alerts(w + n), bench_alerts(len(ALERT_TYPES))
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    state = {"duplicates": 0, "lag": 0.0, "first": 0.0, "last": 0.0, "done": False}
    reader = AIOKafkaConsumer(
        p["topic"],
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="bench-latency-reader",
    )
    await bounded(reader.start(), settings.connect_timeout_ms, "Starting the latency reader")

    async def read() -> None:
        drain_until = math.inf
        while len(got) < n and time.perf_counter() < drain_until:
            batch = await reader.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    alert_id = str(codec.decode(r.value).alert.alert_id)
                    now = time.perf_counter()
                    if alert_id in got:
                        state["duplicates"] += 1
                    elif alert_id in sent:
                        got[alert_id] = now
            if state["done"] and drain_until == math.inf:
                drain_until = time.perf_counter() + 30

    async def pace(producer: Any) -> None:
        futures = []
        t0 = time.perf_counter()
        i, total = 0, w + n
        while i < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                alert_type, key, value, headers = records[i]
                now = time.perf_counter()
                if i >= w:  # measured
                    if i == w:
                        state["first"] = now
                    state["lag"] = max(state["lag"], now - (t0 + i / rate))
                    sent[ids[i]] = now
                topic = settings.topics.ingress(ORIGIN, alert_type)
                futures.append(await producer.send(topic, key=key, value=value, headers=headers))
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        state["last"] = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*futures), 60)
        state["done"] = True

    # Encoded and signed beforehand (what Publisher.publish sends), to keep this process light.
    records = prepared(settings, alerts)
    ids = [str(a.alert_id) for a in alerts]
    producer = make_producer(settings, client_suffix="bench-latency")
    try:
        await bounded(producer.start(), settings.connect_timeout_ms, "Starting the publisher")
        await reader.getmany(timeout_ms=200)  # partitions assigned, positions known
        # Warm up: metadata for every ingress topic, the forwarder's first transaction.
        async with Publisher(settings, origin=ORIGIN) as pub:
            await pub.publish_many(warmup)
        await asyncio.sleep(1.0)
        reading = asyncio.create_task(read())
        try:
            await pace(producer)
            await asyncio.wait_for(reading, 60)
        finally:
            reading.cancel()
    finally:
        await asyncio.wait_for(producer.stop(), 10)
        await asyncio.wait_for(reader.stop(), 10)
    spread = state["last"] - state["first"]
    result = {
        "sent": n,
        "received": len(got),
        "duplicates": state["duplicates"],
        "lat_ms": [round((got[a] - sent[a]) * 1000, 3) for a in got],
        "lag_ms": round(state["lag"] * 1000, 3),
        "offered": (n - 1) / spread if spread else 0.0,
    }
    print(json.dumps(result))


# -- soak --------------------------------------------------------------------------------------

SOAK_DEFAULT = 1_000_000
SOAK_WARMUP = 0.05  # the first 5 % of the alerts: imports, caches and client buffers settle
SOAK_TARGET = 0.10  # RSS last/warm-up within ±10 %
SOAK_CHUNK = 500  # alerts made, encoded and signed at a time
SOAK_BACKLOG = 10_000  # published but not yet routed, at most
SOAK_STALL_S = 120.0  # nothing routed for this long while alerts wait: the run fails
#: What the soak's growing topics keep per partition: a million alerts fanned out to ten
#: partners would otherwise fill many gigabytes, and none of it is read again.
SOAK_RETENTION = {"retention.bytes": str(64 << 20), "segment.bytes": str(16 << 20)}
MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


def emit(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def fanout_process(p: dict[str, Any]) -> None:
    """In its own process, for its RSS to be the fan-out's alone: run ``FanoutService`` until
    SIGTERM, with its progress as JSON lines on stdout, then what its ``Routed`` holds (on
    disk, under its own ``BUS_FANOUT_STATE_DIR``)."""
    quiet_logging()
    settings = BusSettings(
        bootstrap_servers=p["bootstrap"], keys_dir=Path(p["keys"]), topic_prefix=p["prefix"],
        fanout_state_dir=Path(p["state"]),
    )  # fmt: skip
    agreements = bench_agreements(p["partners"], "plain", SchemaRegistry.load(settings.schemas_dir))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running("fanout", settings, agreements) as sut:
        emit({"ready": True})
        while not stop.is_set():
            if sut.task.done():
                sut.task.result()
                raise RuntimeError("the fan-out stopped during the soak")
            emit({"routed": sut.progress()})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        service: FanoutService = sut.system
        st = service.stats
        emit(
            {
                "routed": sut.progress(),
                "alerts": st.alerts,
                "duplicates": st.duplicates,
                "dead_lettered": st.dead_lettered,
                "restarts": st.restarts,
                "info": sut.info(),
                "known": len(service.routed),
                "state_file_bytes": service.routed.file_bytes(),
            }
        )


class Feeder:
    """Publishes ``count`` fresh alerts at ``rate`` alerts/s, paced by the clock, made, encoded
    and signed a chunk at a time; holds back (its clock paused) while ``SOAK_BACKLOG`` alerts
    are published but not yet routed (``heard`` is set whenever the routed count may have
    changed)."""

    def __init__(
        self, settings: BusSettings, count: int, rate: float, routed: Callable[[], int],
        heard: asyncio.Event,
    ) -> None:  # fmt: skip
        self.settings, self.count, self.rate, self.routed = settings, count, rate, routed
        self.heard = heard
        self.sent = 0
        self.held_s = 0.0
        self.first = self.last = 0.0
        self.sizes: tuple[int, int] = (0, 0)

    @property
    def offered(self) -> float:
        spread = self.last - self.first - self.held_s
        return (self.sent - 1) / spread if spread > 0 else 0.0

    async def run(self) -> None:
        s, sign = self.settings, signing(self.settings)
        producer = make_producer(s, client_suffix="bench-soak")
        await bounded(producer.start(), s.connect_timeout_ms, "Starting the soak producer")
        try:
            chunk: list[Record] = []
            pos = 0
            pending: list[asyncio.Future[Any]] = []
            t0 = self.first = time.perf_counter()
            while self.sent < self.count:
                if self.sent - self.routed() >= SOAK_BACKLOG:
                    held = time.perf_counter()
                    while self.sent - self.routed() >= SOAK_BACKLOG:
                        self.heard.clear()
                        await self.heard.wait()
                    t0 += time.perf_counter() - held
                    self.held_s += time.perf_counter() - held
                due = min(self.count, int((time.perf_counter() - t0) * self.rate) + 1)
                while (
                    self.sent < due
                    and self.sent - self.routed() < SOAK_BACKLOG
                    and len(pending) < SOAK_CHUNK
                ):
                    if pos == len(chunk):
                        chunk = sign(bench_alerts(min(SOAK_CHUNK, self.count - self.sent)))
                        pos = 0
                        if not self.sent:
                            sizes = sorted(len(v) for _, _, v, _ in chunk)
                            self.sizes = (sizes[0], sizes[-1])
                    alert_type, key, value, headers = chunk[pos]
                    pos += 1
                    topic = s.topics.ingress(ORIGIN, alert_type)
                    pending.append(
                        await producer.send(topic, key=key, value=value, headers=headers)
                    )
                    self.sent += 1
                if len(pending) >= SOAK_CHUNK:
                    await bounded(asyncio.gather(*pending), s.publish_timeout_ms, "Publishing")
                    pending.clear()
                if self.sent < self.count:
                    await asyncio.sleep(max(0.0, t0 + self.sent / self.rate - time.perf_counter()))
            self.last = time.perf_counter()
            await bounded(asyncio.gather(*pending), s.publish_timeout_ms, "Publishing")
        finally:
            await asyncio.wait_for(producer.stop(), 30)


@dataclass
class Sample:
    seconds: float
    routed: int
    rss: int


async def soak(
    settings: BusSettings, partners: list[str], count: int, rate: float, interval_s: float
) -> None:
    """Feed ``count`` alerts to one fan-out process; sample its RSS after the warm-up."""
    warm_at = max(1, math.ceil(count * SOAK_WARMUP))
    params = {
        "bootstrap": settings.bootstrap_servers,
        "keys": str(settings.keys_dir),
        "prefix": settings.topic_prefix,
        "partners": partners,
        "state": str(settings.fanout_state_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--fanout-process", json.dumps(params),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    heard: dict[str, Any] = {"routed": 0}
    ready, news = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            message = json.loads(line)
            if message.pop("ready", False):
                ready.set()
            heard.update(message)
            news.set()

    listening = asyncio.create_task(listen())
    feeding: asyncio.Task[None] | None = None
    try:
        await until_ready(asyncio.wait_for(ready.wait(), READY_S + 30), listening)
        start_rss = rss_bytes(proc.pid)
        feeder = Feeder(settings, count, rate, lambda: int(heard["routed"]), news)
        feeding = asyncio.create_task(feeder.run())
        started = time.perf_counter()
        samples: list[Sample] = []
        next_at = math.inf
        moved = (started, 0)  # when the routed count last changed, and to what
        while True:
            if feeding.done():
                feeding.result()  # raises what stopped it
            if listening.done():
                raise RuntimeError(f"the fan-out process ended ({proc.returncode}) mid-soak")
            now, routed = time.perf_counter(), int(heard["routed"])
            if routed >= count or (not samples and routed >= warm_at) or now >= next_at:
                samples.append(Sample(now - started, routed, rss_bytes(proc.pid)))
                next_at = now + interval_s
                print(f"  {routed:,}/{count:,} routed, RSS {samples[-1].rss / MIB:.1f} MiB "
                      f"after {now - started:.0f} s", file=sys.stderr)  # fmt: skip
            if routed >= count:
                break
            if routed != moved[1]:
                moved = (now, routed)
            elif now - moved[0] > SOAK_STALL_S and feeder.sent > routed:
                raise RuntimeError(
                    f"nothing routed for {SOAK_STALL_S:g} s: {routed:,} of {feeder.sent:,} sent"
                )
            await asyncio.sleep(0.05)
        await feeding
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(listening, 120)
        if await asyncio.wait_for(proc.wait(), 30) != 0:
            raise RuntimeError(f"the fan-out process failed ({proc.returncode})")
    finally:
        for task in (feeding, listening):
            if task is not None:
                task.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    soak_report(count, rate, feeder, heard, start_rss, samples, warm_at)


def soak_report(
    count: int, rate: float, feeder: Feeder, final: dict[str, Any], start_rss: int,
    samples: list[Sample], warm_at: int,
) -> None:  # fmt: skip
    warm, last = samples[0], samples[-1]
    rss = [x.rss for x in samples]
    drift = last.rss / warm.rss - 1
    grown = last.routed - warm.routed
    per_alert = (last.rss - warm.rss) / grown if grown else math.nan
    slope = math.nan
    if len({x.routed for x in samples}) > 1:
        slope = statistics.linear_regression([x.routed for x in samples], rss).slope
    on_disk = final["state_file_bytes"] / final["known"] if final["known"] else math.nan
    lo, hi = feeder.sizes
    print(
        f"\nalerts routed: {final['routed']:,} of {count:,} published ({final['alerts']:,} "
        f"alerts, {final['duplicates']} duplicates; {final['info']}); alerts of {lo}-{hi} bytes"
    )
    print(
        f"elapsed: {last.seconds:.1f} s, {last.routed / last.seconds:,.0f} alerts/s (offered "
        f"{feeder.offered:,.0f}/s of --rate {rate:g}; held back {feeder.held_s:.1f} s with "
        f"{SOAK_BACKLOG:,} unrouted)"
    )
    print(
        f"RSS: {start_rss / MIB:.1f} MiB when ready, {warm.rss / MIB:.1f} MiB at warm-up end "
        f"({warm.routed:,} routed, the first {SOAK_WARMUP * 100:g} % being {warm_at:,}); min "
        f"{min(rss) / MIB:.1f}, max {max(rss) / MIB:.1f}, last {last.rss / MIB:.1f} MiB "
        f"({len(samples)} samples)"
    )
    print(
        f"RSS last/warm-up = {last.rss / warm.rss:.3f} ({(last.rss - warm.rss) / MIB:+.1f} MiB "
        f"over {grown:,} alerts: {per_alert:+,.0f} B per alert; fitted over the samples "
        f"{slope:+,.0f} B per alert)"
    )
    # A step (buffers filled while the fan-out fell behind) and a slope (something kept per
    # alert) end at the same drift; the second half of the run tells them apart.
    half = next(x for x in samples if x.routed >= (warm.routed + last.routed) / 2)
    if last.routed > half.routed:
        print(
            f"second half: RSS {half.rss / MIB:.1f} MiB at {half.routed:,} routed, last "
            f"{last.rss / MIB:.1f} MiB ({(last.rss / half.rss - 1) * 100:+.1f} %, "
            f"{(last.rss - half.rss) / (last.routed - half.routed):+,.0f} B per alert)"
        )
    print(
        f"Routed (who received each alert, kept for its follow-ups): {final['known']:,} alerts "
        f"on disk in {final['state_file_bytes'] / MIB:.1f} MiB ({on_disk:,.0f} B per alert), "
        f"the process holding at most {CACHE_KIB / 1024:g} MiB of it in its page cache"
    )
    if count < SOAK_DEFAULT and not math.isnan(slope):
        more = slope * (SOAK_DEFAULT - warm_at) / warm.rss
        print(
            f"projected: at the fitted slope, {SOAK_DEFAULT:,} alerts would end about "
            f"{more * 100:+.0f} % off this warm-up RSS"
        )
    verdict = "met" if abs(drift) <= SOAK_TARGET else "MISSED"
    print(
        f"soak: RSS drift = {drift * 100:+.1f} % over {count:,} alerts (target within "
        f"±{SOAK_TARGET * 100:g} %, {verdict})"
    )


# -- the run -----------------------------------------------------------------------------------


def quiet_logging() -> None:
    configure_logging("WARNING", "console")
    # aiokafka warns while the leaders of just-created topics settle, and retries; not news here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="alerts for saturation")
    parser.add_argument(
        "--rate", type=float, default=500.0, help="offered alerts/s (latency, soak)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=3.0,
        help="latency: alerts offered at --rate for this long first, not measured",
    )
    parser.add_argument("--partners", type=int, default=10)
    parser.add_argument("--variants", default="plain,redact", help="plain, redact or both")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=50.0,
        help="cap per saturation run (the rate then counts what was done)",
    )
    parser.add_argument("--profile", type=Path, help="cProfile the fan-out saturation run here")
    parser.add_argument(
        "--soak",
        type=int,
        nargs="?",
        const=SOAK_DEFAULT,
        metavar="N",
        help=f"only a soak: N alerts (default {SOAK_DEFAULT:,}) through one fan-out process, "
        "its RSS sampled",
    )
    parser.add_argument(
        "--soak-interval", type=float, default=5.0, help="seconds between RSS samples (soak)"
    )
    parser.add_argument("--keep-topics", action="store_true")
    parser.add_argument("--load-process", help=argparse.SUPPRESS)
    parser.add_argument("--fanout-process", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_process:
        await load_process(json.loads(args.load_process))
        return
    if args.fanout_process:
        await fanout_process(json.loads(args.fanout_process))
        return
    if args.soak is not None and args.soak < 1:
        parser.error("--soak takes a number of alerts, at least 1")
    quiet_logging()
    variants = [v for v in args.variants.split(",") if v]
    if not set(variants) <= {"plain", "redact"}:
        parser.error("--variants takes plain, redact or plain,redact")
    keys = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    atexit.register(shutil.rmtree, keys, True)  # its private keys leave with the run
    for key_id in (ORIGIN, HUB_KEY_ID):
        generate_keypair(keys, key_id)
    run = f"bfan{uuid.uuid4().hex[:6]}"
    base = BusSettings(keys_dir=keys)
    host, _, port = base.bootstrap_servers.rpartition(":")
    if host == "127.0.0.1" and not _port_open(int(port)):
        LocalKafka(base).start()

    def env(name: str) -> BusSettings:
        return base.model_copy(update={"topic_prefix": f"{run}-{name}."})

    registry = SchemaRegistry.load(base.schemas_dir)
    partners = [f"partner-{i:02d}" for i in range(1, args.partners + 1)]
    if args.soak is not None:
        await soak_run(args, env("soak"), partners)
        return
    agreements = {v: bench_agreements(partners, v, registry) for v in variants}
    # One prefix per measurement: the fan-out reads every ingress topic of its prefix.
    sat = {"raw": env("sat")} | {v: env(f"sat-{v}") for v in variants}
    sat[variants[0]] = sat["raw"]  # the raw forwarder and the first fan-out read the same input
    lat = {"raw": env("lat")} | {v: env(f"lat-{v}") for v in variants}
    settings_all = {s.topic_prefix: s for s in [*sat.values(), *lat.values()]}
    load_before = os.getloadavg()
    try:
        async with Admin(base) as admin:
            await admin.ensure_topics(
                [spec for s in settings_all.values() for spec in topic_specs(s, partners)]
            )
        records = prepared(base, bench_alerts(args.count))
        sizes = sorted(len(v) for _, _, v, _ in records)
        print(
            f"broker {base.bootstrap_servers}, {args.partners} partners, saturation "
            f"{args.count} alerts of {sizes[0]}-{sizes[-1]} bytes, latency {args.rate:g}/s "
            f"for {args.seconds:g} s, load average {load_before[0]:.2f} on "
            f"{os.cpu_count()} cores"
        )
        for s in {id(s): s for s in sat.values()}.values():
            await produce(s, records)
        rows: dict[str, tuple[Saturation, Latency]] = {}
        for kind in ["raw", *variants]:
            # The raw forwarder writes one copy to each partner of the agreements.
            a = agreements.get(kind, agreements[variants[0]])
            if kind == "raw":
                # A raw run takes about a second: take the median of three (own consumer groups).
                runs = [
                    await saturate(
                        "raw", sat[kind], a, args.count, args.max_seconds, name=f"raw{i}"
                    )
                    for i in range(3)
                ]
                rate = sorted(runs, key=lambda r: r.rate)[1]
                rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
                print(f"  raw saturation runs: {rates} alerts/s", file=sys.stderr)
            else:
                profile = args.profile if kind == variants[0] else None
                rate = await saturate("fanout", sat[kind], a, args.count, args.max_seconds, profile)
            # The designated partner: the last one (redacted in the redact variant).
            topic = lat[kind].topics.inbox(partners[-1])
            lats = await latency(
                "raw" if kind == "raw" else "fanout",
                lat[kind],
                a,
                topic,
                args.rate,
                args.seconds,
                args.warmup_seconds,
            )
            rows[kind] = (rate, lats)
            print(
                f"  {kind}: {rate.done} in {rate.seconds:.2f} s ({rate.info}); latency "
                f"{lats.received}/{lats.sent} received, {lats.duplicates} duplicates, "
                f"offered {lats.offered:.0f}/s, pacer lag max {lats.lag_ms:.1f} ms",
                file=sys.stderr,
            )
    finally:
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(base, list(settings_all))
    report(rows, args, partners, load_before)


async def soak_run(args: argparse.Namespace, settings: BusSettings, partners: list[str]) -> None:
    load_before = os.getloadavg()
    print(
        f"soak: broker {settings.bootstrap_servers}, one fan-out process, {len(partners)} "
        f"partners, {args.soak:,} alerts offered at {args.rate:g}/s, RSS sampled every "
        f"{args.soak_interval:g} s after the first {SOAK_WARMUP * 100:g} %; load average "
        f"{load_before[0]:.2f} on {os.cpu_count()} cores"
    )
    try:
        async with Admin(settings) as admin:
            await admin.ensure_topics(topic_specs(settings, partners, SOAK_RETENTION))
        await soak(settings, partners, args.soak, args.rate, args.soak_interval)
    finally:
        if not args.keep_topics:
            with contextlib.suppress(Exception):
                await delete_topics(settings, [settings.topic_prefix])
    load = os.getloadavg()
    print(f"load average {load_before[0]:.2f} before, {load[0]:.2f} after", file=sys.stderr)


def report(
    rows: dict[str, tuple[Saturation, Latency]],
    args: argparse.Namespace,
    partners: list[str],
    load_before: tuple[float, float, float],
) -> None:
    labels = {
        "raw": f"raw forwarder, {len(partners)} copies",
        "plain": f"fan-out, {len(partners)} partners",
        "redact": f"fan-out, {len(partners) // 2} of them redacted",
    }
    print(
        f"\n{'':30} {'alerts/s':>9} {'records/s':>10} {'CPU us/alert':>12} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7}  received"
    )
    for kind, (sat, lat) in rows.items():
        capped = "*" if sat.capped else " "
        cpu_us = sat.cpu_s / sat.done * 1e6 if sat.done else math.nan
        print(
            f"{labels[kind]:30} {sat.rate:8,.0f}{capped} {sat.records / sat.seconds:10,.0f} "
            f"{cpu_us:12,.0f} {lat.pct(0.5):7.1f} {lat.pct(0.99):7.1f} {lat.pct(1.0):7.1f}  "
            f"{lat.received}/{lat.sent}"
        )
    raw_rate = rows["raw"][0].rate
    for kind in [k for k in rows if k != "raw"]:
        sat, lat = rows[kind]
        ok_rate = "met" if sat.rate >= 0.5 * raw_rate else "MISSED"
        ok_p99 = "met" if lat.pct(0.99) < 100 and lat.received == lat.sent else "MISSED"
        raw_records = rows["raw"][0].records / rows["raw"][0].seconds
        print(
            f"{kind}: alerts/s fan-out/raw = {sat.rate / raw_rate:.2f} (target >= 0.5, {ok_rate}); "
            f"p99 at {args.rate:g}/s = {lat.pct(0.99):.0f} ms (target < 100, {ok_p99}); "
            f"records/s fan-out/raw = {sat.records / sat.seconds / raw_records:.2f}"
        )
    print("raw saturation: the median of three runs; CPU: the forwarder's process per alert")
    if any(sat.capped for sat, _ in rows.values()):
        print(f"* stopped at --max-seconds {args.max_seconds:g} before all {args.count} were done")
    load = os.getloadavg()
    print(
        f"load average {load_before[0]:.2f} before, {load[0]:.2f} after "
        f"({os.cpu_count()} cores; the broker may be shared)"
    )


if __name__ == "__main__":
    asyncio.run(main())
