"""One country's adapter: native records in, signed alerts out, rejected records set aside.

    identity = IdentityHasher.from_settings(AdapterSettings())
    async with Adapter(settings, load_mapping("rs"), identity=identity) as adapter:
        results = await adapter.submit([record, record])   # all valid, or nothing published

The adapter publishes as its country through ``bus.Publisher`` (signing with
``keys_dir/<cc>.key``) and writes rejected records to ``bus.dlq``. Files are read by
``DropFolder``, requests served by ``http.create_app``; both use this class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bus import Alert, BusSettings, Publisher, PublishResult
from bus.kafka import bounded, make_producer, stop_client
from bus.logs import get_logger
from services.adapters.errors import BatchRejected, RecordRejected
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
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            problem = await stop_client(self._dlq, self.settings.publish_timeout_ms)
            if problem:
                self.log.warning("dlq_producer_stop_failed", error=problem)
        finally:
            await self._publisher.__aexit__(exc_type, *exc)

    def map(self, record: FeedRecord) -> Alert:
        """The alert for one read record, or ``RecordRejected``."""
        return self.mapping.map(record, self.context)

    async def publish(self, alerts: Sequence[Alert]) -> list[PublishResult]:
        """Publish ``alerts`` and return once Kafka acknowledged every one."""
        if not alerts:
            return []
        await self._pace.wait(len(alerts))
        return await self._publisher.publish_many(alerts)

    async def submit(self, items: Sequence[Any], *, source: str = "http") -> list[PublishResult]:
        """Map every item (native JSON records); publish all only if every one maps.

        Raises ``BatchRejected`` naming each rejected record's index, field and reason; then
        nothing was published.
        """
        alerts: list[Alert] = []
        problems: list[tuple[int, str | None, str]] = []
        for index, item in enumerate(items):
            record = json_record(item, index + 1, f"{source}[{index}]", self.limits)
            try:
                alerts.append(self.map(record))
            except RecordRejected as exc:
                problems.append((index, exc.field, exc.reason))
        if problems:
            for index, field, reason in problems:
                self.log.warning(
                    "record_rejected", source=source, index=index, field=field, reason=reason
                )
            raise BatchRejected(problems)
        results = await self.publish(alerts)
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
            )
        await self.quarantine.put(rejections, report=report, file_sha256=file_sha256)
