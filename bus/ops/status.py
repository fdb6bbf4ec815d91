"""``bus status``: the health and lag of every part of the bus, gathered in one pass.

    status = await bus_status(settings, services={"fanout": "127.0.0.1:8490"},
                              index_offsets=store.offsets)
    status.healthy            # False when Kafka or a service is down or not ready

Lag is read from Kafka itself, so it is there whether a service runs or not: the fan-out's from
its consumer group's committed offsets, the index's from the offsets its database commits with
its entries (or, without that database here, from the index's own ``/readyz``), each against the
end of every ingress partition as a ``read_committed`` consumer sees it. Health is what each
service's ``/healthz`` and ``/readyz`` answer. A part that cannot be reached is reported as such;
nothing here raises for a broker or service that is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import TopicPartition

from bus.admin import FANOUT_GROUP
from bus.errors import BusError, KafkaError
from bus.kafka import Admin, bounded, make_consumer, stop_client, topic_partitions
from bus.settings import BusSettings

#: The rows of the two consumers' lag (the services' own rows are named as configured).
FANOUT_LAG, INDEX_LAG = "fan-out lag", "index lag"
#: Offsets a consumer has committed, by (topic, partition): where it will read next.
Offsets = Mapping[tuple[str, int], int]


@dataclass(frozen=True)
class Lag:
    """How far one consumer is behind the end of ingress, per partition and in total."""

    by_partition: dict[TopicPartition, int]

    @property
    def total(self) -> int:
        return sum(self.by_partition.values())

    def by_topic(self) -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for tp, lag in sorted(self.by_partition.items()):
            out.setdefault(tp.topic, {})[tp.partition] = lag
        return out


@dataclass(frozen=True)
class Part:
    """One row of the status: a part of the bus, its state, lag where it has one, and why."""

    name: str
    state: str  # ok, ready, not ready, down, unknown
    detail: str
    healthy: bool
    lag: Lag | None = None


@dataclass
class Status:
    parts: list[Part] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(p.healthy for p in self.parts)


async def bus_status(
    settings: BusSettings,
    *,
    services: Mapping[str, str],
    index_offsets: Callable[[], Offsets | None] | None = None,
    timeout_s: float = 3.0,
) -> Status:
    """Every part: the cluster, the fan-out's and the index's lag, and each service's health."""
    checked = await asyncio.gather(*(_service(n, a, timeout_s) for n, a in services.items()))
    status = Status()
    try:
        kafka, ends, starts = await _kafka(settings)
    except (BusError, OSError) as exc:
        status.parts.append(Part("kafka", "down", f"{settings.bootstrap_servers}: {exc}", False))
        for name in (FANOUT_LAG, INDEX_LAG):
            status.parts.append(Part(name, "unknown", "no lag without the cluster", True))
        status.parts += [part for part, _ in checked]
        return status
    status.parts.append(kafka)
    status.parts.append(await _fanout_lag(settings, ends, starts))
    readyz = {part.name: body for part, body in checked if body}
    status.parts.append(_index_lag(index_offsets, readyz.get("index"), ends, starts))
    status.parts += [part for part, _ in checked]
    return status


async def _kafka(
    settings: BusSettings,
) -> tuple[Part, dict[TopicPartition, int], dict[TopicPartition, int]]:
    async with Admin(settings) as admin:
        brokers, controller = await admin.brokers()
    consumer = make_consumer(settings, group_id=None, client_suffix="status")
    await bounded(consumer.start(), settings.connect_timeout_ms, "Connecting to the cluster")
    try:
        layout = await topic_partitions(consumer, settings.request_timeout_ms)
        tps = [
            TopicPartition(t, p)
            for t, ps in sorted(layout.items())
            if settings.topics.parse_ingress(t) is not None
            for p in sorted(ps)
        ]
        # A consumer subscribed to nothing waits for metadata on each topic it is asked
        # about (seconds for hundreds of partitions): have it learn them all at once.
        await bounded(
            consumer._client.set_topics(sorted({tp.topic for tp in tps})),
            settings.request_timeout_ms, "Reading the metadata of ingress",
            timeout_error=KafkaError,
        )  # fmt: skip
        ends = await _offsets(consumer.end_offsets(tps), settings, "end")
        starts = await _offsets(consumer.beginning_offsets(tps), settings, "first")
    finally:
        await stop_client(consumer, settings.request_timeout_ms)
    detail = f"{len(brokers)} broker(s): {', '.join(brokers)}"
    if controller is not None and controller >= 0:
        detail += f"; controller {controller}"
    topics = len({tp.topic for tp in tps})
    detail += f"; {topics} ingress topic(s), {len(tps)} partition(s)"
    return Part("kafka", "ok", detail, True), ends, starts


async def _offsets(
    call: Awaitable[Mapping[TopicPartition, int]], settings: BusSettings, which: str
) -> dict[TopicPartition, int]:
    what = f"Reading the {which} offsets of ingress"
    found = await bounded(call, settings.request_timeout_ms, what, timeout_error=KafkaError)
    return dict(found)


def _lag(
    committed: Offsets, ends: Mapping[TopicPartition, int], starts: Mapping[TopicPartition, int]
) -> Lag:
    """End minus the committed offset; a partition never committed is behind from its start."""
    return Lag({
        tp: max(0, end - committed.get((tp.topic, tp.partition), starts.get(tp, 0)))
        for tp, end in ends.items()
    })  # fmt: skip


async def _fanout_lag(
    settings: BusSettings, ends: Mapping[TopicPartition, int], starts: Mapping[TopicPartition, int]
) -> Part:
    group = f"{settings.topic_prefix}{FANOUT_GROUP}"
    try:
        async with Admin(settings) as admin:
            # On a new cluster the first question about a group creates the offsets topic.
            await admin.wait_for_group_coordinator(group)
            committed = await admin.committed_offsets(group)
            state, members = await admin.group_state(group)
    except (BusError, OSError) as exc:
        return Part(FANOUT_LAG, "unknown", f"group {group}: {exc}", False)
    lag = _lag({(tp.topic, tp.partition): o for tp, o in committed.items()}, ends, starts)
    # The fan-out takes its partitions by fixed assignment: its group has no members, only
    # the offsets its transactions commit.
    detail = f"group {group} ({state.lower()}, {members} member(s)): committed offsets"
    return Part(FANOUT_LAG, "ok", detail, True, lag)


def _index_lag(
    offsets: Callable[[], Offsets | None] | None,
    readyz: dict[str, Any] | None,
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int],
) -> Part:
    stored = offsets() if offsets is not None else None
    if stored is not None:
        return Part(INDEX_LAG, "ok", "offsets in its database", True, _lag(stored, ends, starts))
    if readyz is not None and isinstance(readyz.get("lag_by_topic"), dict):
        lag = Lag({
            TopicPartition(topic, int(p)): int(n)
            for topic, parts in readyz["lag_by_topic"].items() for p, n in parts.items()
        })  # fmt: skip
        return Part(INDEX_LAG, "ok", "as the running index reports it (/readyz)", True, lag)
    return Part(INDEX_LAG, "unknown", "no index database here and no running index answered",
                True)  # fmt: skip


async def _service(name: str, address: str, timeout_s: float) -> tuple[Part, dict[str, Any]]:
    """(its row, the body of its /readyz); a service that does not answer is down."""
    url = f"http://{address}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return Part(f"{name}", "down", f"{url}: {reason}", False), {}
    if health.status_code != 200:
        return Part(name, "down", f"{url}/healthz answered {health.status_code}", False), {}
    try:
        body = ready.json()
    except ValueError:
        body = {}
    service = body.get("service", "?")
    facts = [f"{service} at {url}"]
    if "lag" in body:
        facts.append(f"lag {body['lag']} on {body.get('partitions', '?')} partition(s)")
    if body.get("caught_up") is False:
        facts.append("not caught up with ingress yet")
    if body.get("running") is False:
        facts.append("not consuming (starting, or reconnecting to Kafka)")
    if ready.status_code == 200:
        return Part(name, "ready", "; ".join(facts), True), body
    return Part(name, "not ready", "; ".join(facts), False), body
