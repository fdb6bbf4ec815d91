"""Topic names of the contract, and the specs of every topic ``bus topics apply`` creates."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DLQ_TOPIC = "bus.dlq"
AUDIT_TOPIC = "bus.audit"
SCHEMAS_TOPIC = "bus.schemas"
FANOUT_STATE_TOPIC = "bus.fanout.state"
#: The lookup audit chain: one partition, one chain (``bus audit verify`` checks it).
LOOKUP_AUDIT_TOPIC = "bus.audit.lookups"
FANOUT_SHARDS_TOPIC = "bus.fanout.shards"

_CC = re.compile(r"^[a-z]{2}$")
_PARTNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_INGRESS = re.compile(r"^ingress\.([a-z]{2})\.([a-z][a-z0-9-]*)$")


def check_country(cc: str) -> str:
    if not _CC.match(cc):
        raise ValueError(
            f"Country code {cc!r} is not valid: expected lower-case ISO 3166-1 alpha-2 "
            "such as 'rs', 'mk' or 'xk' (Kosovo)"
        )
    return cc


@dataclass(frozen=True)
class TopicNames:
    """The contract's topic names, under an optional prefix (``BUS_TOPIC_PREFIX``).

    A prefix such as ``staging.`` lets several environments share one cluster; with none, the
    names are exactly the contract's.

        names = TopicNames()
        names.ingress("rs", "trafficking-arrest")   # 'ingress.rs.trafficking-arrest'
        names.parse_ingress("ingress.rs.readmission") # ('rs', 'readmission')
        names.inbox("europol")                        # 'partner.europol.inbox'
    """

    prefix: str = ""

    @property
    def dlq(self) -> str:
        return self.prefix + DLQ_TOPIC

    @property
    def audit(self) -> str:
        return self.prefix + AUDIT_TOPIC

    @property
    def schemas(self) -> str:
        return self.prefix + SCHEMAS_TOPIC

    @property
    def fanout_state(self) -> str:
        """Compacted: alert id → partners that received it (dedupe, UPDATE and CANCEL routing)."""
        return self.prefix + FANOUT_STATE_TOPIC

    @property
    def fanout_shards(self) -> str:
        """Empty; one partition per fan-out shard. Instances share it in a consumer group, and
        each owns the shards whose partitions the group assigns it."""
        return self.prefix + FANOUT_SHARDS_TOPIC

    @property
    def ingress_pattern(self) -> str:
        """A regular expression matching every ingress topic (for pattern subscriptions)."""
        return "^" + re.escape(self.prefix) + r"ingress\.[a-z]{2}\.[a-z][a-z0-9-]*$"

    def ingress(self, origin: str, alert_type: str) -> str:
        return f"{self.prefix}ingress.{check_country(origin)}.{alert_type}"

    def parse_ingress(self, topic: str) -> tuple[str, str] | None:
        """(origin, alert type) of an ingress topic, or None for any other topic."""
        if not topic.startswith(self.prefix):
            return None
        match = _INGRESS.match(topic[len(self.prefix) :])
        return (match.group(1), match.group(2)) if match else None

    def inbox(self, partner_id: str) -> str:
        if not _PARTNER.match(partner_id):
            raise ValueError(f"Partner id {partner_id!r} is not valid: lower-case, digits, dashes")
        return f"{self.prefix}partner.{partner_id}.inbox"

    @property
    def lookup_audit(self) -> str:
        return self.prefix + LOOKUP_AUDIT_TOPIC

    def lookup_requests(self, requester: str) -> str:
        """Where ``requester`` writes lookup requests; only it may write there."""
        return f"{self.prefix}lookup.{requester}.requests"

    def lookup_answers(self, requester: str) -> str:
        """Where the joint index answers ``requester``; only it may read there."""
        return f"{self.prefix}lookup.{requester}.answers"

    @property
    def lookup_requests_pattern(self) -> str:
        """A regular expression matching every requester's requests topic."""
        return "^" + re.escape(self.prefix) + r"lookup\.[a-z0-9][a-z0-9-]*\.requests$"

    def parse_lookup_requests(self, topic: str) -> str | None:
        """The requester of ``lookup.<id>.requests`` (under this prefix), else None."""
        head, tail = f"{self.prefix}lookup.", ".requests"
        if topic.startswith(head) and topic.endswith(tail) and len(topic) > len(head + tail):
            return topic[len(head) : -len(tail)]
        return None

    def parse_inbox(self, topic: str) -> str | None:
        """The partner id of ``partner.<id>.inbox`` (under this prefix), else None."""
        head, tail = f"{self.prefix}partner.", ".inbox"
        if topic.startswith(head) and topic.endswith(tail) and len(topic) > len(head + tail):
            return topic[len(head) : -len(tail)]
        return None


@dataclass(frozen=True)
class TopicSpec:
    """A topic the bus needs, with the settings it is created with."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


#: Replicas a topic gets by default: enough to lose one node of three and still accept
#: acks=all writes (with ``min.insync.replicas`` 2), and no more than the cluster has.
MAX_DEFAULT_REPLICAS = 3


def replication_for(brokers: int, explicit: int | None = None) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers`` brokers.

    An explicit factor (``BUS_TOPIC_REPLICATION_FACTOR``) wins; otherwise the cluster gives
    ``min(3, brokers)``. From three replicas on, a write needs two of them.

    >>> replication_for(1), replication_for(3), replication_for(5), replication_for(5, 2)
    ((1, 1), (3, 2), (3, 2), (2, 1))
    """
    if brokers < 1 and explicit is None:
        raise ValueError(f"A cluster of {brokers} brokers cannot hold a topic: expected 1 or more")
    replicas = explicit if explicit is not None else min(MAX_DEFAULT_REPLICAS, brokers)
    return replicas, 2 if replicas >= 3 else 1


def bus_topic_specs(
    names: TopicNames,
    *,
    countries: Iterable[str],
    alert_types: Iterable[str],
    partners: Iterable[str] = (),
    requesters: Iterable[str] = (),
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int = 1,
    ingress_retention_ms: int,
    dlq_retention_ms: int,
    audit_retention_ms: int,
) -> list[TopicSpec]:
    """Every topic: ingress per country and type, partner inboxes, dlq, audit, schemas, and the
    joint index's lookup topics of every requester with its audit chain."""
    types = sorted(alert_types)
    isr = {"min.insync.replicas": str(min_insync_replicas)}
    specs = [
        TopicSpec(names.ingress(cc, t), partitions, replication_factor,
                  {"retention.ms": str(ingress_retention_ms)} | isr)
        for cc in sorted(set(countries)) for t in types
    ]  # fmt: skip
    specs += [
        TopicSpec(names.inbox(p), partitions, replication_factor,
                  {"retention.ms": str(ingress_retention_ms)} | isr)
        for p in sorted(set(partners))
    ]  # fmt: skip
    specs += [
        TopicSpec(names.dlq, partitions, replication_factor,
                  {"retention.ms": str(dlq_retention_ms)} | isr),
        # One hash chain per fan-out shard: chain k in partition k, one writer each.
        TopicSpec(names.audit, partitions, replication_factor,
                  {"retention.ms": str(audit_retention_ms)} | isr),
        TopicSpec(names.fanout_shards, partitions, replication_factor, isr),
        TopicSpec(names.schemas, 1, replication_factor,
                  {"cleanup.policy": "compact", "retention.ms": "-1"} | isr),
        TopicSpec(names.fanout_state, partitions, replication_factor,
                  {"cleanup.policy": "compact", "retention.ms": "-1"} | isr),
    ]  # fmt: skip
    specs += lookup_topic_specs(
        names, requesters=requesters, partitions=partitions,
        replication_factor=replication_factor, min_insync_replicas=min_insync_replicas,
        audit_retention_ms=audit_retention_ms,
    )  # fmt: skip
    return specs


def lookup_topic_specs(
    names: TopicNames,
    *,
    requesters: Iterable[str],
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int = 1,
    audit_retention_ms: int,
) -> list[TopicSpec]:
    """The joint index's topics: requests and answers per requester, and the lookup audit."""
    isr = {"min.insync.replicas": str(min_insync_replicas)}
    specs = [
        TopicSpec(topic, partitions, replication_factor, dict(isr))
        for r in sorted(set(requesters))
        for topic in (names.lookup_requests(r), names.lookup_answers(r))
    ]
    # One partition keeps the lookup audit a single hash chain in one order.
    specs.append(TopicSpec(names.lookup_audit, 1, replication_factor,
                           {"retention.ms": str(audit_retention_ms)} | isr))  # fmt: skip
    return specs
