"""Operator tasks against the cluster: create the bus's topics, publish the schemas."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bus.agreements import Agreements, load_agreements
from bus.errors import BusError, KafkaError
from bus.kafka import Admin, bounded, make_producer, read_to_end, stop_client
from bus.kafka.admin import ClusterReplication
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from bus.topics import bus_topic_specs, replication_for

#: The fan-out's consumer group (after the topic prefix), whose offsets the cluster must hold.
FANOUT_GROUP = "bus-fanout"
#: The group the fan-out's instances join on ``bus.fanout.shards`` to share the shards.
FANOUT_SHARDS_GROUP = "bus-fanout-shards"
H_SCHEMA_TYPE = "bus-type"
H_SCHEMA_VERSION = "bus-schema-version"


async def apply_topics(
    settings: BusSettings, *, partners: Iterable[str] | None = None
) -> tuple[list[str], int]:
    """Create every missing topic, then (re)publish every schema; return (created, total).

    Partner inboxes are created for ``partners``, or by default for every partner of the
    agreements file (``BUS_AGREEMENTS``) when it exists. Topics get the replication the
    cluster is configured for (``topic_replication``) unless ``BUS_TOPIC_REPLICATION_FACTOR``
    is set; with fewer brokers up than that, it waits for them (``BUS_CONNECT_TIMEOUT_MS``),
    then refuses, naming how many are up and how many are needed.
    Returns once every partition of the topics created has a leader serving it, and the
    fan-out's consumer groups a coordinator, so that nothing started next meets a cluster still
    settling (and its client's retry warnings).
    """
    registry = SchemaRegistry.load(settings.schemas_dir)
    requesters: Iterable[str] = ()
    if partners is None:
        partners = ()
        if settings.agreements.exists():
            agreements = load_agreements(settings.agreements, schemas=registry)
            partners, requesters = agreements.partners, agreements.lookup_requesters
    async with Admin(settings) as admin:
        replicas, min_isr = await _replication(settings, admin)
        specs = bus_topic_specs(
            settings.topics,
            countries=settings.countries,
            alert_types=registry.alert_types,
            partners=partners,
            requesters=requesters,
            partitions=settings.topic_partitions,
            replication_factor=replicas,
            min_insync_replicas=min_isr,
            ingress_retention_ms=settings.ingress_retention_ms,
            dlq_retention_ms=settings.dlq_retention_ms,
            audit_retention_ms=settings.audit_retention_ms,
        )
        created = await admin.ensure_topics(specs)
        for group in (FANOUT_GROUP, FANOUT_SHARDS_GROUP):  # the fan-out joins both at once
            await admin.wait_for_group_coordinator(f"{settings.topic_prefix}{group}")
    await publish_schemas(settings, registry)
    return created, len(specs)


async def ensure_index_topics(settings: BusSettings, agreements: Agreements) -> list[str]:
    """The joint index's topics, as ``apply_topics`` makes them: lookup requests and answers of
    every requester, the lookup audit, and the inboxes of the owners (hit notices go there).

    Where they exist (``bus topics apply`` made them) nothing is asked of the broker beyond a
    listing, so the index needs no right to create topics on a secure bus.
    """
    names, requesters = settings.topics, agreements.lookup_requesters
    wanted = {names.inbox(o) for o in agreements.lookup_owners} | {names.lookup_audit}
    wanted |= {t for r in requesters for t in (names.lookup_requests(r), names.lookup_answers(r))}
    async with Admin(settings) as admin:
        existing = await admin.list_topics()
        if wanted <= set(existing):
            return []
        try:
            replicas, min_isr = await _replication(settings, admin)
            specs = bus_topic_specs(
                names, countries=(), alert_types=(), partners=agreements.lookup_owners,
                requesters=requesters, partitions=settings.topic_partitions,
                replication_factor=replicas, min_insync_replicas=min_isr,
                ingress_retention_ms=settings.ingress_retention_ms,
                dlq_retention_ms=settings.dlq_retention_ms,
                audit_retention_ms=settings.audit_retention_ms,
            )  # fmt: skip
            return await admin.ensure_topics(s for s in specs if s.name in wanted)
        except KafkaError as exc:
            if not settings.principal:
                raise
            missing = sorted(wanted - set(existing))
            raise KafkaError(
                f"The joint index's topics {', '.join(missing)} are missing and "
                f"{settings.principal} may not create them: run `bus topics apply` as the "
                f"administrator ({exc})"
            ) from exc


async def _replication(settings: BusSettings, admin: Admin) -> tuple[int, int]:
    if settings.topic_replication_factor is not None:
        return replication_for(0, settings.topic_replication_factor)
    return topic_replication(await admin.replication())


def topic_replication(cluster: ClusterReplication) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the bus's topics on ``cluster``.

    The factor is the one the cluster is configured for (``default.replication.factor``), not
    the number of brokers that happen to be up: with one node of three down, topics still get
    three replicas (``Admin.ensure_topics`` waits for the node, or refuses). Only a cluster that
    states no factor gets ``min(3, brokers up)``. ``min.insync.replicas`` is 2 from three
    replicas on, never below the cluster's own, and never above the factor (a topic nobody
    could write to with acks=all).
    """
    if cluster.default_replication_factor is not None:
        replicas = cluster.default_replication_factor
    else:
        replicas, _ = replication_for(len(cluster.brokers_up))
    _, min_isr = replication_for(0, replicas)
    min_isr = max(min_isr, cluster.min_insync_replicas or 1)
    if min_isr > replicas:
        raise KafkaError(
            f"The cluster asks for min.insync.replicas {min_isr}, more than the {replicas} "
            "replica(s) its topics would get (default.replication.factor "
            f"{cluster.default_replication_factor or 'unset'}, {len(cluster.brokers_up)} "
            "broker(s) up): no acks=all write could succeed. Set BUS_TOPIC_REPLICATION_FACTOR "
            f"to {min_isr} or more, or the cluster's default.replication.factor"
        )
    return replicas, min_isr


async def publish_schemas(settings: BusSettings, registry: SchemaRegistry) -> int:
    """Write every schema version to the compacted ``bus.schemas`` topic, keyed by fingerprint.

    The key is the fingerprint as 16 hex digits (the wire bytes, in order); the value is the
    schema JSON. Re-publishing is harmless: compaction keeps one record per fingerprint.
    """
    producer = make_producer(settings, client_suffix="schemas")
    await bounded(producer.start(), settings.connect_timeout_ms, "Connecting to Kafka")
    try:
        futures = []
        for sv in registry:
            futures.append(
                await producer.send(
                    settings.topics.schemas,
                    key=sv.fingerprint_hex.encode(),
                    value=json.dumps(sv.schema_json, ensure_ascii=False).encode(),
                    headers=[
                        (H_SCHEMA_TYPE, sv.alert_type.encode()),
                        (H_SCHEMA_VERSION, str(sv.version).encode()),
                    ],
                )
            )
        for future in futures:
            await bounded(future, settings.publish_timeout_ms, "Publishing schemas")
        return len(futures)
    finally:
        await stop_client(producer, settings.request_timeout_ms)


async def read_audit(settings: BusSettings) -> list[dict[str, Any]]:
    """Every committed audit record, in log order."""
    records = await read_to_end(settings, settings.topics.audit)
    out: list[dict[str, Any]] = []
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        try:
            out.append(json.loads(r.value))
        except (TypeError, ValueError) as exc:
            raise BusError(
                f"{settings.topics.audit}[{r.partition}]@{r.offset} is not an audit record: {exc}"
            ) from exc
    return out
