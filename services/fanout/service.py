"""The fan-out: every ingress alert to the partner inboxes its agreements allow, exactly once.

    async with FanoutService(settings) as fanout:
        await fanout.run()          # until stop(); survives broker restarts on its own

For each batch read from ``ingress.*`` (``read_committed``), one Kafka transaction holds the
partner copies and withdrawal notices (``partner.<id>.inbox``), one audit record per alert with
every decision for it (``bus.audit``), the delivery state (``bus.fanout.state``), dead letters
(``bus.dlq``) and the input offsets. Either all of it commits or none of it does, and it commits
only once Kafka has acknowledged every record of it (``services.fanout.transaction``).

A batch Kafka refuses is aborted and read again in a new session, the suspect alerts each in a
transaction of their own; an alert whose copy a partner's inbox refuses for good (too large, not
authorised, …) is retried ``max_attempts`` times, then routed without that copy: the audit says
``failed`` for that partner and the alert goes to ``bus.dlq`` with the reason.

Scale-out: the work is cut into S shards, one per partition of ``bus.fanout.shards`` (and of
``bus.audit``, which holds one chain per shard). Every instance joins the consumer group
``bus-fanout-shards`` on that topic (membership only: nothing is ever written there) and runs
the shards whose partitions the group assigns it (``services.fanout.shard``), so instances come
and go with no hand-kept list. On a rebalance an instance stops its shards cleanly before it
lets them go; a successor's transactional producer fences a frozen instance's late writes.
aiokafka lacks KIP-447, so the ingress is read by fixed assignment, shard by shard, with the
offsets committed in each shard's transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from bus.admin import FANOUT_GROUP, FANOUT_SHARDS_GROUP
from bus.agreements import Agreements, load_agreements
from bus.codec import AlertCodec
from bus.errors import BusError, KafkaError
from bus.kafka import bounded, make_consumer, stop_client, topic_partitions
from bus.keys import HUB_KEY_ID, KeyRing, Signer
from bus.logs import get_logger
from bus.models import Alert
from bus.ops.metrics import FanoutMetrics
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from services.fanout.router import Counts, Router
from services.fanout.shard import ShardWorker
from services.fanout.state import Restorer, Routed


@dataclass
class FanoutStats(Counts):
    transactions: int = 0
    aborted: int = 0
    restarts: int = 0
    #: Sessions that ended because another instance took the shard over (or Kafka timed out
    #: the shard's transaction).
    fenced: int = 0
    #: Shards this instance took on, over all rebalances.
    shards_taken: int = 0
    #: Records of ``bus.fanout.state`` and ``bus.audit`` skipped at restores (malformed).
    state_malformed: int = 0


class FanoutService:
    """Routes ingress alerts to partner inboxes in Kafka transactions, for the shards the
    ``bus-fanout-shards`` group gives this instance."""

    def __init__(
        self,
        settings: BusSettings,
        *,
        agreements: Agreements | None = None,
        max_batch: int = 500,
        poll_timeout_ms: int = 50,
        topic_refresh_s: float = 30.0,
        stall_s: float = 15.0,
        max_attempts: int = 3,
        clock: Callable[[Alert], datetime] | None = None,
    ) -> None:
        """``clock`` says when an alert counts as routed, for its expiry: the wall clock unless
        given. Only a replay of history sets it (the demo routes its 2014 and 2018 samples as of
        the moment each was issued); no setting or command-line option exposes it."""
        self.settings = settings
        self.names = settings.topics
        registry = SchemaRegistry.load(settings.schemas_dir)
        self.agreements = agreements or load_agreements(settings.agreements, schemas=registry)
        self.router = Router(
            agreements=self.agreements, codec=AlertCodec(registry),
            keyring=KeyRing(settings.keys_dir), hub=Signer.load(settings.keys_dir, HUB_KEY_ID),
            names=self.names, clock=clock,
        )  # fmt: skip
        self.group_id = f"{settings.topic_prefix}{FANOUT_GROUP}"
        self.shards_group_id = f"{settings.topic_prefix}{FANOUT_SHARDS_GROUP}"
        self.stats = FanoutStats()
        self.max_batch = max_batch
        self.poll_timeout_ms = poll_timeout_ms
        self.topic_refresh_s = topic_refresh_s
        self.stall_s = stall_s
        self.max_attempts = max_attempts
        self.log = get_logger("fanout")
        #: Who received what, shared by this instance's shards: a local file rebuilt from Kafka
        #: during each run, deleted when the run ends.
        self.routed = Routed(settings.fanout_state_dir)
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._members: AIOKafkaConsumer | None = None  # the membership consumer, in a session
        self._shards = 0
        self._owned: set[int] | None = None  # None until the group first assigned shards
        #: What a rebalance found wrong, raised by the membership loop: a changed shard layout
        #: stops the service, a Kafka error restarts the membership.
        self._fault: Exception | None = None
        self._workers: dict[int, tuple[ShardWorker, asyncio.Task[None]]] = {}
        self._restore: tuple[float, asyncio.Task[None]] | None = None
        self._started: dict[int, float] = {}  # when each shard's worker last started
        #: State and audit records that did not parse, each reported once.
        self.malformed: set[tuple[str, int, int]] = set()
        self.metrics = FanoutMetrics(self.names, ready=self._is_ready,
                                     partners=self.agreements.partners)  # fmt: skip

    async def __aenter__(self) -> FanoutService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def shards(self) -> list[int]:
        """The shards this instance runs now."""
        return sorted(self._workers)

    async def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until the group gave this instance its shards and each of them is consuming."""

        async def ready() -> None:
            while not self._is_ready():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(ready(), timeout_s)

    def _is_ready(self) -> bool:
        return self._owned is not None and all(
            shard in self._workers and self._workers[shard][0].ready.is_set()
            for shard in self._owned
        )

    def readiness_changed(self) -> None:
        if self._is_ready():
            self.log.info("fanout_ready", shards=self.shards, of=self._shards,
                          alerts_known=len(self.routed))  # fmt: skip
        self._changed.set()

    # -- membership ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Route until ``stop()``; on a broker failure, back off, rejoin and carry on."""
        follower = asyncio.create_task(self._follow_state())
        try:
            await self._run()
        finally:
            # A read still under way (its shards gone) would reopen the file: end it first.
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            if self._restore is not None and not self._restore[1].done():
                self._restore[1].cancel()
                await asyncio.gather(self._restore[1], return_exceptions=True)
            self._restore = None
            self.routed.close()

    async def _run(self) -> None:
        backoff_s = 0.5
        while not self._stopping.is_set():
            try:
                await self._membership()
                backoff_s = 0.5
            except Exception as exc:
                if not (isinstance(exc, KafkaError | OSError) or _from_aiokafka(exc)):
                    raise
                self.stats.restarts += 1
                self.log.warning("fanout_membership_failed", error_class=type(exc).__name__,
                                 error=str(exc), retry_in_s=backoff_s)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    async def _membership(self) -> None:
        s = self.settings
        consumer = make_consumer(s, group_id=self.shards_group_id, client_suffix="fanout-members")
        try:
            await bounded(consumer.start(), s.connect_timeout_ms, "Starting the fan-out")
            self._shards = await self._shard_count(consumer)
            consumer.subscribe([self.names.fanout_shards], listener=_Listener(self, consumer))
            self._members = consumer
            self.log.info("fanout_joining", shards=self._shards, group=self.shards_group_id)
            while not self._stopping.is_set():
                # Nothing is ever written to the shards topic: polling keeps us in the group.
                # A rebalance waits in here while our shards finish their transactions.
                await bounded(consumer.getmany(timeout_ms=200),
                              s.publish_timeout_ms + 2 * s.request_timeout_ms,
                              "Polling the fan-out shards group",
                              timeout_error=KafkaError)  # fmt: skip
                if self._fault is not None:
                    fault, self._fault = self._fault, None
                    raise fault
                self._check_workers()
        finally:
            await self._release(set(self._workers))
            self._members = None
            self._owned = None
            problem = await stop_client(consumer, s.request_timeout_ms)
            if problem:
                self.log.warning("client_stop_failed", error=problem)

    async def _shard_count(self, consumer: AIOKafkaConsumer) -> int:
        """S, the partitions of ``bus.fanout.shards``; refuse an audit topic that does not
        have one partition, one chain, per shard."""
        layout = await topic_partitions(consumer, self.settings.request_timeout_ms)
        shards_topic, audit = self.names.fanout_shards, self.names.audit
        shards = len(layout.get(shards_topic, ()))
        if not shards:
            raise BusError(
                f"The topic {shards_topic} is missing: the fan-out's instances share their shards "
                "through it. Run `bus topics apply`."
            )
        chains = len(layout.get(audit, ()))
        if chains != shards:
            raise BusError(
                f"{audit} has {chains} partition(s) but {shards_topic} has {shards}: each of the "
                f"{shards} shards keeps its audit chain in its own partition of {audit}. Give "
                f"{audit} {shards} partitions (kafka-topics.sh --alter --topic {audit} "
                f"--partitions {shards}; its partition 0 keeps the chain it has), or delete "
                f"{shards_topic} and recreate it with {chains} partition(s)."
            )
        return shards

    async def check_layout(self, consumer: AIOKafkaConsumer, assigned: set[int]) -> bool:
        """Whether the shards are still the ``S`` this instance started with, asked of the
        cluster now (a rebalance is when another instance may have started with another S).

        Instances that disagree on S would map an ingress partition to different shards, and
        route it twice. So an instance that finds S changed takes no shard and stops, naming
        the change; started again, each instance reads the new S.
        """
        layout = await topic_partitions(consumer, self.settings.request_timeout_ms)
        now = len(layout.get(self.names.fanout_shards, ()))
        if now == self._shards and all(k < self._shards for k in assigned):
            return True
        self._fault = BusError(
            f"{self.names.fanout_shards} now has {now} partition(s); this fan-out instance "
            f"started with {self._shards}, and instances that count different shards would "
            "route some alerts twice. It took no shard and stops: stop every fan-out "
            f"instance, give {self.names.audit} as many partitions as {self.names.fanout_shards} "
            "(one audit chain per shard), and start them again."
        )
        self.log.error("fanout_shard_layout_changed", shards_now=now, shards_started=self._shards)
        return False

    def _check_workers(self) -> None:
        """A shard that ended on an error that is not Kafka's ends the service with it. One
        that ended because the group did not confirm it (a rebalance under way) is started
        again, at most once a second, while the group's last word still gives it to us: it
        asks the group again before it does anything."""
        for shard, (_, task) in list(self._workers.items()):
            if task.done():
                del self._workers[shard]
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc
        now = asyncio.get_running_loop().time()
        for shard in sorted((self._owned or set()) - set(self._workers)):
            if now - self._started.get(shard, 0.0) >= 1.0:
                self._start_worker(shard)

    def _start_worker(self, shard: int) -> None:
        worker = ShardWorker(self, shard, self._shards)
        self._workers[shard] = (worker, asyncio.create_task(worker.run()))
        self._started[shard] = asyncio.get_running_loop().time()

    async def owns(self, shard: int) -> bool:
        """Whether the group still gives this instance ``shard``, as its coordinator says now.

        A commit to the shards group succeeds only for a member of its current generation, so a
        zombie that missed a rebalance learns it here, before it could fence its successor.
        """
        consumer = self._members
        if consumer is None or self._owned is None or shard not in self._owned:
            return False
        tp = TopicPartition(self.names.fanout_shards, shard)
        try:
            await bounded(consumer.commit({tp: 0}), self.settings.request_timeout_ms,
                          "Confirming a fan-out shard", timeout_error=KafkaError)  # fmt: skip
        except (CommitFailedError, IllegalStateError) as exc:
            # The group has moved on without us (or is moving): the rebalance decides.
            self.log.info("fanout_shard_unconfirmed", shard=shard, error=str(exc))
            return False
        # Any other failure (a broker away, a timeout) is raised: the shard backs off and asks
        # again, rather than leave a shard it may still own unrouted.
        return not self._stopping.is_set()

    def _take(self, shards: set[int]) -> None:
        self._owned = set(shards)
        for shard in sorted(shards - set(self._workers)):
            self._start_worker(shard)
            self.stats.shards_taken += 1
        self.log.info("fanout_shards_assigned", shards=sorted(shards), of=self._shards)
        self._changed.set()

    async def _release(self, shards: set[int]) -> None:
        """Stop these shards' workers: the transaction under way commits or aborts first."""
        if self._owned is not None:
            self._owned -= shards
        stopping = [self._workers.pop(k) for k in sorted(shards) if k in self._workers]
        for worker, _ in stopping:
            worker.stop()
        if stopping:
            tasks = [task for _, task in stopping]
            _, late = await asyncio.wait(tasks, timeout=self.settings.publish_timeout_ms / 1000)
            for task in late:
                task.cancel()  # an open transaction is aborted on the way out
            await asyncio.gather(*tasks, return_exceptions=True)
            self.log.info("fanout_shards_released", shards=sorted(w.shard for w, _ in stopping))
        self._changed.set()

    # -- state shared by the shards ----------------------------------------------------------

    async def _follow_state(self) -> None:
        """Fold into ``routed`` what every instance commits to ``bus.fanout.state``, as it is
        committed, from the topic's end when this instance started.

        A shard's restore reads what was committed when the shard was taken; this keeps the
        rest of ``routed`` current with the shards other instances hold, so that a follow-up
        that lands on another shard than the alert it names (another case reference, another
        country's follow-up) is still checked against that alert: its recipients, its origin,
        a duplicate of it. It is as current as the last fetch (a fraction of a second behind).
        """
        s, topic = self.settings, self.names.fanout_state
        folder = Restorer(s, self.log, self.malformed)
        positions: dict[TopicPartition, int] = {}
        backoff_s = 0.5
        while not self._stopping.is_set():
            consumer = make_consumer(s, group_id=None, client_suffix="fanout-state-follower")
            try:
                await bounded(
                    consumer.start(), s.connect_timeout_ms, f"Connecting to follow {topic}",
                    timeout_error=KafkaError,
                )  # fmt: skip
                layout = await topic_partitions(consumer, s.request_timeout_ms)
                tps = [TopicPartition(topic, p) for p in sorted(layout.get(topic, ()))]
                consumer.assign(tps)
                fresh = [tp for tp in tps if tp not in positions]
                if fresh:
                    await bounded(
                        consumer.seek_to_end(*fresh), s.request_timeout_ms,
                        f"Reading the end of {topic}", timeout_error=KafkaError,
                    )  # fmt: skip
                for tp in tps:
                    if tp in positions:
                        consumer.seek(tp, positions[tp])
                while not self._stopping.is_set():
                    batch = await bounded(consumer.getmany(timeout_ms=500, max_records=2000),
                                          s.request_timeout_ms + 500, f"Following {topic}",
                                          timeout_error=KafkaError)  # fmt: skip
                    for tp, records in batch.items():
                        folder.fold(records, self.routed)
                        positions[tp] = records[-1].offset + 1
                    self.stats.state_malformed = len(self.malformed)
                    backoff_s = 0.5
            except Exception as exc:
                if not (isinstance(exc, KafkaError | OSError) or _from_aiokafka(exc)):
                    self._fault = exc  # the state store failed, say: the service ends with it
                    return
                self.log.warning("fanout_state_follow_failed", error_class=type(exc).__name__,
                                 error=str(exc), retry_in_s=backoff_s)  # fmt: skip
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)
            finally:
                problem = await stop_client(consumer, s.request_timeout_ms)
                if problem:
                    self.log.warning("client_stop_failed", error=problem)

    async def restore_routed(self, *, since: float) -> None:
        """Fold ``bus.fanout.state`` into ``routed``, from a read begun after ``since``.

        A shard calls it once its producer has fenced the shard's previous holder; shards that
        start together share one read.
        """
        loop = asyncio.get_running_loop()
        if self._restore is None or self._restore[0] < since:
            restorer = Restorer(self.settings, self.log, self.malformed)
            self._restore = (loop.time(), asyncio.create_task(restorer.routed(self.routed)))
        await asyncio.shield(self._restore[1])
        self.stats.state_malformed = len(self.malformed)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Shards follow the group's assignment; a consumer of an ended session is not heard."""

    def __init__(self, service: FanoutService, consumer: AIOKafkaConsumer) -> None:
        self._service = service
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._service._members is self._consumer:
            await self._service._release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        service, shards = self._service, {tp.partition for tp in assigned}
        if service._members is not self._consumer:
            return
        try:
            if await service.check_layout(self._consumer, shards):
                service._take(shards)
        except Exception as exc:  # aiokafka would only log it; the membership loop raises it
            service._fault = exc


def _from_aiokafka(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("aiokafka")
