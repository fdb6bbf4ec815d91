"""What each service counts for Prometheus, and how it judges itself ready.

Each service keeps its own registry (``metrics.registry``), served by ``OpsServer`` on its own
port, so two services in one process never mix their counts. Counters move only once the work
they count is durable: the fan-out counts a transaction's copies, denials and dead letters
after Kafka committed it, so an aborted and retried batch is counted once.

    metrics = FanoutMetrics(settings.topics, partners=["europol"], ready=event.is_set)
    metrics.committed(topics, counts, seconds=0.012)     # after each committed transaction
    readiness = await metrics.readiness()                # refreshes lag, entries, bus_ready
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import prometheus_client as prom
from aiokafka import AIOKafkaConsumer, TopicPartition

from bus.ops.lag import ConsumerLag
from bus.policy import RULES
from bus.topics import TopicNames

# Each counter's ``_created`` series doubles the exposition and says little to an operator.
prom.disable_created_metrics()  # type: ignore[no-untyped-call]

#: The rules a denial names (``bus.policy.RULES`` but ``covered``), each counted from zero.
DENIAL_RULES = tuple(rule for rule in RULES if rule != "covered")
#: Buckets of the transaction latency histogram, in seconds.
TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` answers: ready or not, and the facts it was judged on."""

    ready: bool
    detail: dict[str, Any] = field(default_factory=dict)


class ServiceMetrics:
    """One service's registry, its ``bus_ready`` gauge and, for a consumer, its lag."""

    service: ClassVar[str] = "service"

    def __init__(self, *, ready: Callable[[], bool], consumer: str | None = None) -> None:
        self.registry = prom.CollectorRegistry()
        self._is_ready = ready
        self.lag = ConsumerLag(self.registry, consumer) if consumer else None
        self._ready = prom.Gauge(
            "bus_ready", "1 when the service answers /readyz with ready, else 0.",
            registry=self.registry,
        )  # fmt: skip
        self.dead_letters = prom.Counter(
            "bus_dead_letters", "Records written to bus.dlq, by the stage that set them aside.",
            ["stage"], registry=self.registry,
        )  # fmt: skip

    def follow(self, consumer: AIOKafkaConsumer) -> None:
        """Report the lag of ``consumer`` too (a new session's consumer, or another shard's)."""
        if self.lag is not None:
            self.lag.follow(consumer)

    def unfollow(self, consumer: AIOKafkaConsumer) -> None:
        """No longer report ``consumer``: it stopped."""
        if self.lag is not None:
            self.lag.unfollow(consumer)

    async def readiness(self) -> Readiness:
        """Bring the values read on demand up to date (lag, …) and judge readiness."""
        lags = await self.lag.refresh() if self.lag is not None else {}
        readiness = await self._judge(lags)
        self._ready.set(1 if readiness.ready else 0)
        return readiness

    async def _judge(self, lags: Mapping[TopicPartition, int]) -> Readiness:
        running = self._is_ready()
        detail: dict[str, Any] = {"running": running}
        if self.lag is not None:
            detail.update(lag_detail(lags))
        return Readiness(running, detail)


def lag_detail(lags: Mapping[TopicPartition, int]) -> dict[str, Any]:
    """Lag as ``/readyz`` reports it: the total, and per topic and partition."""
    by_topic: dict[str, dict[str, int]] = {}
    for tp, lag in sorted(lags.items()):
        by_topic.setdefault(tp.topic, {})[str(tp.partition)] = lag
    return {"lag": sum(lags.values()), "partitions": len(lags), "lag_by_topic": by_topic}


class RoutingCounts(Protocol):
    """What one committed fan-out transaction routed, by label."""

    @property
    def copies_to(self) -> Mapping[str, int]: ...
    @property
    def notices_to(self) -> Mapping[str, int]: ...
    @property
    def denied_by(self) -> Mapping[str, int]: ...
    @property
    def dead_letters_by(self) -> Mapping[str, int]: ...


class FanoutMetrics(ServiceMetrics):
    """The fan-out: ready once it has restored its state and consumes ingress."""

    service = "fanout"

    def __init__(
        self,
        names: TopicNames,
        *,
        ready: Callable[[], bool],
        partners: Iterable[str] = (),
        reasons: Iterable[str] = DENIAL_RULES,
    ) -> None:
        super().__init__(ready=ready, consumer="fanout")
        self._names = names
        r = self.registry
        self.alerts_in = prom.Counter(
            "bus_alerts_in", "Ingress records the fan-out routed (committed), by origin and type.",
            ["origin", "alert_type"], registry=r,
        )  # fmt: skip
        self.copies = prom.Counter(
            "bus_copies_delivered", "Alert copies committed to a partner's inbox.", ["partner"],
            registry=r,
        )  # fmt: skip
        self.notices = prom.Counter(
            "bus_notices_delivered", "Withdrawal notices committed to a partner's inbox.",
            ["partner"], registry=r,
        )  # fmt: skip
        self.denials = prom.Counter(
            "bus_denials", "Partners denied an alert, by the rule that denied it.", ["reason"],
            registry=r,
        )  # fmt: skip
        self.transaction_seconds = prom.Histogram(
            "bus_fanout_transaction_seconds",
            "Time to write and commit one fan-out transaction (committed ones).",
            buckets=TRANSACTION_BUCKETS, registry=r,
        )  # fmt: skip
        self.audit_head = prom.Gauge(
            "bus_audit_head", "Index of the next record of an audit hash chain: its length.",
            ["chain"], registry=r,
        )  # fmt: skip
        # Every known label at zero, so that a rate() has a series from the start.
        for partner in partners:
            self.copies.labels(partner)
            self.notices.labels(partner)
        for reason in reasons:
            self.denials.labels(reason)

    def chain_head(self, shard: int, next_index: int) -> None:
        """The head of a shard's audit chain (``bus.audit`` partition ``shard``), labelled
        ``<audit topic>/<shard>``."""
        self.audit_head.labels(f"{self._names.audit}/{shard}").set(next_index)

    def committed(self, topics: Iterable[str], counts: RoutingCounts, *, seconds: float) -> None:
        """Count one committed transaction: its ingress records' topics and what they became."""
        for topic, n in collections.Counter(topics).items():
            parsed = self._names.parse_ingress(topic)
            if parsed is not None:
                self.alerts_in.labels(*parsed).inc(n)
        _add(self.copies, counts.copies_to)
        _add(self.notices, counts.notices_to)
        _add(self.denials, counts.denied_by)
        _add(self.dead_letters, counts.dead_letters_by)
        self.transaction_seconds.observe(seconds)


class IndexMetrics(ServiceMetrics):
    """The index: ready once it consumes ingress, answers lookups and has caught up with the
    end of ingress at least once in this session (until then, a lookup could miss entries):
    its consumer reached the end and everything read up to there is in the database."""

    service = "index"

    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        entries: Callable[[], int],
        in_flight: Callable[[], int],
        audit_head: Callable[[], int | None],
        audit_chain: str,
    ) -> None:
        super().__init__(ready=ready, consumer="index")
        r = self.registry
        self._entries_now = entries
        self._in_flight = in_flight
        self.records = prom.Counter(
            "bus_index_records", "Ingress records folded into the index (committed).",
            registry=r,
        )  # fmt: skip
        self.rejected = prom.Counter(
            "bus_index_records_rejected", "Ingress records skipped: failed verification.",
            registry=r,
        )  # fmt: skip
        self.entries = prom.Gauge(
            "bus_index_entries", "Entries (token, owner, alert) in the index.", registry=r
        )
        self.lookups = prom.Counter(
            "bus_index_lookups", "Lookups answered (committed), by channel.", ["channel"],
            registry=r,
        )  # fmt: skip
        self.tokens = prom.Counter(
            "bus_index_lookup_tokens", "Tokens asked about in answered lookups, by channel.",
            ["channel"], registry=r,
        )  # fmt: skip
        self.hits = prom.Counter(
            "bus_index_lookup_hits", "Tokens answered with a hit, by channel.", ["channel"],
            registry=r,
        )  # fmt: skip
        self.refused = prom.Counter(
            "bus_index_lookups_refused", "Lookup requests refused (malformed, too many tokens).",
            registry=r,
        )  # fmt: skip
        head = prom.Gauge(
            "bus_audit_head", "Index of the next record of an audit hash chain: its length.",
            ["chain"], registry=r,
        )  # fmt: skip
        head.labels(audit_chain).set_function(lambda: _or_nan(audit_head()))
        for channel in ("kafka", "http"):
            for counter in (self.lookups, self.tokens, self.hits):
                counter.labels(channel)

    def looked_up(self, audits: Sequence[Mapping[str, Any]], refused: int = 0) -> None:
        """Count committed lookups by the audit records they wrote (channel, tokens, hits)."""
        for audit in audits:
            channel = str(audit.get("channel", "unknown"))
            self.lookups.labels(channel).inc()
            self.tokens.labels(channel).inc(int(audit.get("tokens", 0)))
            self.hits.labels(channel).inc(int(audit.get("hits", 0)))
        if refused:
            self.refused.inc(refused)

    async def _judge(self, lags: Mapping[TopicPartition, int]) -> Readiness:
        entries = await asyncio.to_thread(self._entries_now)
        self.entries.set(entries)
        running = self._is_ready()
        # Caught up: the consumer reached the end of every partition once, and everything it
        # read up to there is committed to the database (a batch is written while the next
        # one is read).
        caught_up = self.lag is not None and self.lag.caught_up and self._in_flight() == 0
        detail = {"running": running, "caught_up": caught_up, "entries": entries}
        return Readiness(running and caught_up, {**detail, **lag_detail(lags)})


class AdapterMetrics(ServiceMetrics):
    """A national adapter: ready once connected to Kafka."""

    service = "adapter"

    def __init__(self, origin: str, *, ready: Callable[[], bool]) -> None:
        super().__init__(ready=ready)
        self.origin = origin
        self.files = prom.Counter(
            "bus_adapter_files", "Files of the drop folder handled, by outcome (done, "
            "already_done, quarantined, refused, vanished).", ["origin", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.records = prom.Counter(
            "bus_adapter_records", "Native records handled, by outcome (published, quarantined, "
            "skipped as already published, rejected over HTTP).", ["origin", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        for outcome in ("published", "quarantined", "skipped", "rejected"):
            self.records.labels(origin, outcome)
        self.dead_letters.labels("adapter")

    def handled(self, outcome: str, count: int = 1) -> None:
        """Count ``count`` records with ``outcome``; quarantined ones are dead letters too."""
        if count:
            self.records.labels(self.origin, outcome).inc(count)
            if outcome == "quarantined":
                self.dead_letters.labels("adapter").inc(count)

    def file_outcomes(self, outcomes: Iterable[str]) -> None:
        for outcome in outcomes:
            self.files.labels(self.origin, outcome).inc()


def _add(counter: prom.Counter, counts: Mapping[str, int]) -> None:
    for label, n in counts.items():
        if n:
            counter.labels(label).inc(n)


def _or_nan(value: int | None) -> float:
    return float("nan") if value is None else float(value)
