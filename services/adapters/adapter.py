"""One country's adapter: native records in, signed alerts out, rejected records set aside.

    identity = IdentityHasher.from_settings(AdapterSettings())
    async with Adapter(settings, load_mapping("rs"), identity=identity) as adapter:
        results = await adapter.submit([record, record])   # all valid, or nothing published

The adapter publishes as its country through ``bus.Publisher`` (signing with
``keys_dir/<cc>.key``) and writes rejected records to ``bus.dlq``. Files are read by
``DropFolder``, requests served by ``http.create_app``; both use this class.

Each record is mapped, validated, encoded and signed on its own (``prepare``), so that any
failure of one record, foreseen or not, sets that record aside and nothing else. That work is
CPU-bound and runs in a thread (``prepare_all``), so that a large batch does not stall the
HTTP endpoint sharing the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bus import Alert, BusError, BusSettings, Publisher, PublishResult, ValidationError
from bus.kafka import bounded, make_producer, stop_client
from bus.logs import get_logger
from bus.ops.metrics import AdapterMetrics
from bus.publisher import PreparedAlert
from services.adapters.errors import BatchRejected, RecordRejected, unexpected
from services.adapters.feeds import FeedRecord, Limits, json_record
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import CountryMapping, MappingContext
from services.adapters.quarantine import Quarantine, Rejection
from services.adapters.settings import AdapterSettings


class _Pace:
    """Spreads publishing to at most ``per_second`` records a second (0: no limit)."""

    def __init__(self, per_second: float) -> None:
        self._per_second = per_second
        self._next = 0.0

    async def wait(self, count: int) -> None:
        if not self._per_second:
            return
        now = asyncio.get_running_loop().time()
        start = max(now, self._next)
        self._next = start + count / self._per_second
        if start > now:
            await asyncio.sleep(start - now)


class Adapter:
    """Maps, publishes and quarantines for one country; an async context manager."""

    def __init__(
        self,
        settings: BusSettings,
        mapping: CountryMapping,
        *,
        identity: IdentityHasher,
        config: AdapterSettings | None = None,
    ) -> None:
        self.settings = settings
        self.mapping = mapping
        self.config = config or AdapterSettings()
        self.limits = Limits(max_field_chars=self.config.max_field_chars)
        self.context = MappingContext(mapping.cc, mapping.conventions.language, identity)
        self._publisher = Publisher(settings, origin=mapping.cc)
        self._dlq = make_producer(settings, client_suffix=f"adapter-{mapping.cc}-dlq")
        self.quarantine = Quarantine(settings, mapping.cc, self._dlq)
        self._pace = _Pace(self.config.max_records_per_second)
        self.log = get_logger("adapter", origin=mapping.cc)
        self._connected = False
        self.metrics = AdapterMetrics(mapping.cc, ready=lambda: self._connected)

    @property
    def cc(self) -> str:
        return self.mapping.cc

    async def __aenter__(self) -> Adapter:
        await self._publisher.__aenter__()
        try:
            await bounded(
                self._dlq.start(),
                self.settings.connect_timeout_ms,
                "Connecting the dead-letter producer",
            )
        except BaseException:
            await self._publisher.__aexit__(None, None, None)
            raise
        self._connected = True
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        self._connected = False
        try:
            problem = await stop_client(self._dlq, self.settings.publish_timeout_ms)
            if problem:
                self.log.warning("dlq_producer_stop_failed", error=problem)
        finally:
            await self._publisher.__aexit__(exc_type, *exc)

    def map(self, record: FeedRecord) -> Alert:
        """The alert for one read record, or ``RecordRejected``."""
        return self.mapping.map(record, self.context)

    def prepare(self, record: FeedRecord) -> PreparedAlert:
        """Map, validate, encode and sign one record; every failure is ``RecordRejected``.

        Thread-safe: ``prepare_all`` runs it off the event loop.
        """
        try:
            prepared = self._publisher.prepare(self.map(record))
        except RecordRejected:
            raise
        except ValidationError as exc:  # the alert does not encode (the models let it through)
            field = f"alert.{exc.field}" if exc.field else None
            raise RecordRejected(f"the alert cannot be encoded: {exc}", field=field) from exc
        except BusError as exc:  # e.g. OriginMismatch: a mapping that names another origin
            raise RecordRejected(f"the alert cannot be published: {exc}") from exc
        except Exception as exc:
            raise unexpected(exc) from exc
        limit = self.config.max_alert_bytes
        if len(prepared.value) > limit:
            raise RecordRejected(
                f"the alert encodes to {len(prepared.value)} bytes; at most {limit} "
                "(BUS_ADAPTER_MAX_ALERT_BYTES) fit in a Kafka record: split the record"
            )
        return prepared

    def _prepare_each(self, records: Sequence[FeedRecord]) -> list[PreparedAlert | RecordRejected]:
        outcomes: list[PreparedAlert | RecordRejected] = []
        for record in records:
            try:
                outcomes.append(self.prepare(record))
            except RecordRejected as exc:
                outcomes.append(exc)
            except Exception as exc:  # a mapping that overrides ``map`` and lets an error out
                outcomes.append(unexpected(exc))
        return outcomes

    async def prepare_all(
        self, records: Sequence[FeedRecord]
    ) -> list[PreparedAlert | RecordRejected]:
        """``prepare`` for each record, in a thread: the prepared alert or why not, in order."""
        outcomes = await asyncio.to_thread(self._prepare_each, records)
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, RecordRejected) and outcome.unexpected is not None:
                self._log_unexpected(outcome.unexpected, position=record.position)
        return outcomes

    def _log_unexpected(self, error: Exception, **context: Any) -> None:
        # Not the record's fault as far as anyone knows: the class and traceback are for the
        # developers; the record itself is set aside like any other.
        self.log.error(
            "record_unexpected_error",
            error_class=type(error).__name__,
            error=str(error)[:500],
            exc_info=error,
            **context,
        )

    def _json_records(self, items: Sequence[Any], source: str) -> list[FeedRecord]:
        return [
            json_record(item, index + 1, f"{source}[{index}]", self.limits)
            for index, item in enumerate(items)
        ]

    async def publish(self, prepared: Sequence[PreparedAlert]) -> list[PublishResult]:
        """Publish prepared alerts and return once Kafka acknowledged every one."""
        if not prepared:
            return []
        await self._pace.wait(len(prepared))
        results = await self._publisher.publish_prepared(prepared)
        self.metrics.handled("published", len(results))
        return results

    async def submit(self, items: Sequence[Any], *, source: str = "http") -> list[PublishResult]:
        """Map every item (native JSON records); publish all only if every one maps.

        Raises ``BatchRejected`` naming each rejected record's index, field and reason; then
        nothing was published.
        """
        records = await asyncio.to_thread(self._json_records, items, source)
        outcomes = await self.prepare_all(records)
        problems = [
            (index, outcome.field, outcome.reason)
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, RecordRejected)
        ]
        if problems:
            for index, field, reason in problems:
                self.log.warning(
                    "record_rejected", source=source, index=index, field=field, reason=reason
                )
            self.metrics.handled("rejected", len(problems))
            raise BatchRejected(problems)
        results = await self.publish([o for o in outcomes if not isinstance(o, RecordRejected)])
        for result in results:
            self.log.info(
                "alert_published",
                source=source,
                alert_id=str(result.alert_id),
                topic=result.topic,
                partition=result.partition,
                offset=result.offset,
            )
        return results

    async def set_aside(
        self, rejections: Sequence[Rejection], *, report: Path | None, file_sha256: str | None
    ) -> None:
        """Quarantine ``rejections`` (report and dead letters) and log each."""
        for r in rejections:
            self.log.warning(
                "record_quarantined",
                file=r.source,
                record=r.number,
                line=r.position,
                field=r.field,
                reason=r.reason,
                error_class=type(r.error.__cause__ or r.error).__name__,
            )
        await self.quarantine.put(rejections, report=report, file_sha256=file_sha256)
        self.metrics.handled("quarantined", len(rejections))
