"""The drop folder: national files in, each record published once or set aside, file by file.

    <dropdir>/rs-2014-07.csv                      a new file (write it elsewhere, then rename in)
    <dropdir>/done/rs-2014-07.csv                 every record acknowledged by Kafka or set aside
    <dropdir>/quarantine/rs-2014-07.csv.report.jsonl    one line per record set aside, with why
    <dropdir>/quarantine/broken.xml               a file that could not be read at all
    <dropdir>/.state/rs.journal                   progress, for restarts (see ``journal``)

A file counts as done only when each of its records has been acknowledged or quarantined; the
journal is written after each acknowledged batch, so an adapter killed mid-file finishes it on
restart, sending again at most the batch that was in flight. Names starting with a dot or ending
in ``.part``/``.tmp`` are files still being written and are left alone.

    async with DropFolder(adapter, Path("/srv/drop/rs")) as folder:
        outcomes = await folder.scan_once()          # or: await folder.run(stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bus import Alert
from bus.errors import BusError
from services.adapters.adapter import Adapter
from services.adapters.errors import AdapterError, FeedRejected, RecordRejected
from services.adapters.feeds import FeedRecord
from services.adapters.journal import Journal
from services.adapters.quarantine import MAX_DEAD_LETTER_BYTES, Rejection

_IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


@dataclass
class FileOutcome:
    """What one pass over a file did. ``outcome``: done, already_done or quarantined."""

    name: str
    sha256: str
    outcome: str
    published: int = 0
    quarantined: int = 0
    skipped: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


class DropFolder:
    """Ingests the files dropped for one country, exactly once each; an async context manager."""

    def __init__(self, adapter: Adapter, directory: Path, *, state_dir: Path | None = None) -> None:
        if not directory.is_dir():
            raise AdapterError(f"The drop folder {directory} does not exist or is not a folder")
        self.adapter = adapter
        self.directory = directory
        self.done_dir = directory / "done"
        self.quarantine_dir = directory / "quarantine"
        self.state_dir = state_dir or directory / ".state"
        self.journal = Journal(self.state_dir / f"{adapter.cc}.journal")
        self._seen: dict[Path, tuple[int, int]] = {}
        self._log = adapter.log.bind(drop_folder=str(directory))

    async def __aenter__(self) -> DropFolder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.journal.close()

    def pending(self, *, settled_only: bool = False) -> list[Path]:
        """Files waiting, oldest first; with ``settled_only``, those unchanged since last look
        and older than ``settle_ms``."""
        files = []
        now = time.time()
        seen, self._seen = self._seen, {}
        for path in self.directory.iterdir():
            name = path.name
            if name.startswith(".") or name.endswith(_IN_PROGRESS_SUFFIXES) or not path.is_file():
                continue
            try:
                st = path.stat()
            except FileNotFoundError:  # taken away between listing and looking
                continue
            signature = (st.st_size, st.st_mtime_ns)
            previous, self._seen[path] = seen.get(path), signature
            if settled_only and (
                previous != signature or now - st.st_mtime < self.adapter.config.settle_ms / 1000
            ):
                continue
            files.append((st.st_mtime_ns, name, path))
        return [path for _, _, path in sorted(files)]

    async def scan_once(self, *, settled_only: bool = False) -> list[FileOutcome]:
        """Ingest every waiting file; Kafka errors propagate (the file is tried again later)."""
        outcomes = []
        for path in self.pending(settled_only=settled_only):
            outcomes.append(await self.ingest(path))
            self._seen.pop(path, None)
        return outcomes

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the folder until ``stop`` is set; a failing file is retried after a pause."""
        poll_s = self.adapter.config.poll_interval_ms / 1000
        self._log.info("drop_folder_watching")
        while not stop.is_set():
            pause = poll_s
            try:
                await self.scan_once(settled_only=True)
            except (BusError, OSError) as exc:
                self._log.error(
                    "drop_folder_retry_later", error=str(exc), error_class=type(exc).__name__
                )
                pause = max(poll_s, self.adapter.config.retry_backoff_ms / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
        self._log.info("drop_folder_stopped")

    async def ingest(self, path: Path) -> FileOutcome:
        """Publish or set aside every record of ``path`` not yet handled, then move it to done/."""
        name = path.name
        log = self._log.bind(file=name)
        limit = self.adapter.config.max_file_bytes
        # Reading and hashing run in a thread: a large file must not stall the HTTP endpoint.
        data, size, sha = await asyncio.to_thread(_read, path, limit)
        if size > limit:
            problem = FeedRejected(f"the file has {size} bytes; the limit is {limit} (split it)")
            return await self._reject_file(path, sha, problem, head=b"")
        progress = self.journal.progress(sha)
        if progress.done:
            log.info("file_already_ingested", outcome=progress.outcome)
            target = self.quarantine_dir if progress.outcome == "quarantined" else self.done_dir
            self._move(path, target, sha)
            return FileOutcome(name, sha, "already_done")
        feed = self.adapter.mapping.feed
        try:
            if not name.lower().endswith(feed.suffixes):
                raise FeedRejected(
                    f"expected a {' or '.join(feed.suffixes)} file for {self.adapter.cc}"
                )
            records = feed.parse(data, self.adapter.limits)
        except FeedRejected as exc:
            return await self._reject_file(path, sha, exc, head=data)
        todo = [r for r in records if r.number not in progress.handled]
        log.info("file_started", records=len(records), already_handled=len(records) - len(todo))
        outcome = FileOutcome(name, sha, "done")
        batch_size = self.adapter.config.batch_size
        for start in range(0, len(todo), batch_size):
            await self._batch(todo[start : start + batch_size], name, sha, outcome)
            log.info(
                "batch_acked",
                published=outcome.published,
                quarantined=outcome.quarantined,
                skipped=outcome.skipped,
                remaining=max(0, len(todo) - start - batch_size),
            )
        self.journal.mark_done(
            sha, name, "done",
            published=outcome.published, quarantined=outcome.quarantined, skipped=outcome.skipped,
        )  # fmt: skip
        self._move(path, self.done_dir, sha)
        log.info("file_done", published=outcome.published, quarantined=outcome.quarantined,
                 skipped=outcome.skipped)  # fmt: skip
        return outcome

    async def _batch(
        self, batch: list[FeedRecord], name: str, sha: str, outcome: FileOutcome
    ) -> None:
        publish: list[tuple[FeedRecord, Alert]] = []
        rejections: list[Rejection] = []
        skipped: dict[int, str] = {}
        in_batch: set[str] = set()
        for record in batch:
            try:
                alert = self.adapter.map(record)
            except RecordRejected as exc:
                rejections.append(
                    Rejection(name, record.number, record.position, exc.field, exc.reason, exc,
                              record.raw)
                )  # fmt: skip
                continue
            alert_id = str(alert.alert_id)
            if self.journal.is_published(alert_id) or alert_id in in_batch:
                # The same version of the same record came before (an overlapping export).
                skipped[record.number] = alert_id
                continue
            in_batch.add(alert_id)
            publish.append((record, alert))
        await self.adapter.set_aside(rejections, report=self._report_path(name), file_sha256=sha)
        results = await self.adapter.publish([alert for _, alert in publish])
        for (record, alert), result in zip(publish, results, strict=True):
            self.adapter.log.debug(
                "alert_published", file=name, line=record.position, alert_id=str(alert.alert_id),
                topic=result.topic, partition=result.partition, offset=result.offset,
            )  # fmt: skip
            outcome.by_type[alert.alert_type] += 1
        self.journal.record_batch(
            sha,
            acked={record.number: str(alert.alert_id) for record, alert in publish},
            quarantined=[r.number for r in rejections if r.number is not None],
            skipped=skipped,
        )
        outcome.published += len(publish)
        outcome.quarantined += len(rejections)
        outcome.skipped += len(skipped)

    async def _reject_file(
        self, path: Path, sha: str, problem: FeedRejected, *, head: bytes
    ) -> FileOutcome:
        rejection = Rejection(
            path.name, None, problem.where, None, problem.reason, problem,
            head[:MAX_DEAD_LETTER_BYTES] or None,
        )  # fmt: skip
        await self.adapter.set_aside(
            [rejection], report=self._report_path(path.name), file_sha256=sha
        )
        self.journal.mark_done(sha, path.name, "quarantined")
        self._move(path, self.quarantine_dir, sha)
        return FileOutcome(path.name, sha, "quarantined", quarantined=1)

    def _report_path(self, name: str) -> Path:
        return self.quarantine_dir / f"{name}.report.jsonl"

    def _move(self, path: Path, folder: Path, sha: str) -> None:
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.stem}.{sha[:12]}{path.suffix}"
        os.replace(path, target)


def _read(path: Path, limit: int) -> tuple[bytes, int, str]:
    """(content, size, SHA-256); the content is empty when the file is over ``limit``."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            return b"", size, hashlib.file_digest(f, "sha256").hexdigest()
        data = f.read()
    return data, len(data), hashlib.sha256(data).hexdigest()
