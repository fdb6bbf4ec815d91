"""Consumer lag per partition, as the consumer itself knows it: the partition's end minus its
position, read when the operator asks (a scrape of ``/metrics`` or ``/readyz``).

    lag = ConsumerLag(registry, "fanout")
    lag.follow(consumer)              # once the consumer is assigned; again after a new session
    lag.unfollow(consumer)            # a consumer that stops (a fan-out shard given up)
    lags = await lag.refresh()        # {TopicPartition: records behind}, also the gauge

The end is the last stable offset a ``read_committed`` consumer can reach (else the high-water
mark), both from the consumer's latest fetch response: no extra request to the broker. A
partition not fetched yet has no known end and is left out until it has.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Gauge


class ConsumerLag:
    """The ``bus_consumer_lag`` gauge of one consumer of a service."""

    def __init__(self, registry: CollectorRegistry, consumer: str) -> None:
        self.name = consumer
        self._gauge = Gauge(
            "bus_consumer_lag",
            "Records a consumer has yet to read: the partition's end minus its position.",
            ["consumer", "topic", "partition"],
            registry=registry,
        )
        #: The consumers reported on: one per session, or one per shard of the fan-out.
        self._consumers: list[AIOKafkaConsumer] = []
        #: Whether every assigned partition was seen with no lag since ``follow``.
        self.caught_up = False
        #: The lag of the last refresh, by partition; partitions of unknown end left out.
        self.latest: dict[TopicPartition, int] = {}

    def follow(self, consumer: AIOKafkaConsumer) -> None:
        """Report on ``consumer`` from now on, beside the others still running."""
        self._consumers = [c for c in self._consumers if c._closed is False and c is not consumer]
        self._consumers.append(consumer)
        self.caught_up = False

    def unfollow(self, consumer: AIOKafkaConsumer) -> None:
        """Stop reporting on ``consumer`` (it stopped, or its partitions went elsewhere)."""
        self._consumers = [c for c in self._consumers if c is not consumer]

    async def refresh(self, timeout_s: float = 2.0) -> dict[TopicPartition, int]:
        """Read the lag of every assigned partition now; a stopped consumer has none."""
        lags: dict[TopicPartition, int] = {}
        complete = bool(self._consumers)
        for consumer in list(self._consumers):
            if consumer._closed is not False:
                continue
            read: dict[TopicPartition, int] = {}
            whole = False
            with contextlib.suppress(Exception):  # stopped meanwhile, or reassigned: none
                read, whole = await asyncio.wait_for(_read(consumer), timeout_s)
            lags.update(read)
            complete = complete and whole
        self.latest = lags
        if complete and lags and not any(lags.values()):
            self.caught_up = True
        self._gauge.clear()
        for tp, lag in lags.items():
            self._gauge.labels(self.name, tp.topic, str(tp.partition)).set(lag)
        return lags


async def _read(consumer: AIOKafkaConsumer) -> tuple[dict[TopicPartition, int], bool]:
    """The lag per partition whose end is known, and whether every partition's was."""
    lags: dict[TopicPartition, int] = {}
    assigned = sorted(consumer.assignment())
    for tp in assigned:
        end = consumer.last_stable_offset(tp)
        if end is None or end < 0:  # read_uncommitted, or not fetched yet
            end = consumer.highwater(tp)
        if end is None:
            continue
        lags[tp] = max(0, end - await consumer.position(tp))
    return lags, len(lags) == len(assigned)
