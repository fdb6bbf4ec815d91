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

Only regular files are read, never through a link (see ``entries``). A symbolic link, a hard
link, a FIFO, a socket or a device node is removed from the folder unread (``os.unlink`` removes
the link, never its target) and reported; a directory is moved into ``quarantine/`` unread.
Their report line says why; their dead letter carries the reason and no value. No file can stop
the adapter: an error nobody foresaw, in one record or in a whole file, sets that record or file
aside with ``unexpected <class>: <message>``; only Kafka errors (not the file's fault) leave the
file where it is, to be tried again.

    async with DropFolder(adapter, Path("/srv/drop/rs")) as folder:
        outcomes = await folder.scan_once()          # or: await folder.run(stop_event)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bus.errors import BusError
from bus.publisher import PreparedAlert
from services.adapters.adapter import Adapter
from services.adapters.entries import (
    SYMLINK,
    FileContent,
    NotRegular,
    check_own_directory,
    fit_name,
    kind_of,
    move_into,
    read_regular,
    remove_links_below,
)
from services.adapters.errors import AdapterError, FeedRejected, RecordRejected, unexpected_reason
from services.adapters.feeds import FeedRecord
from services.adapters.journal import Journal
from services.adapters.quarantine import MAX_DEAD_LETTER_BYTES, Rejection

_IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")
_REPORT_SUFFIX = ".report.jsonl"


@dataclass
class FileOutcome:
    """What one pass over a file did. ``outcome``: done, already_done, quarantined, refused (not
    a regular file: never read, removed or moved aside) or vanished (gone before it was read)."""

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
        self._check_own_directories()
        self.journal = Journal(self.state_dir / f"{adapter.cc}.journal")
        self._seen: dict[Path, tuple[int, int]] = {}
        # Refused entries that could not be removed (e.g. no permission): reported once only.
        self._stuck: set[tuple[str, int, int]] = set()
        self._log = adapter.log.bind(drop_folder=str(directory))

    def _check_own_directories(self) -> None:
        """done/, quarantine/ (and .state/ when inside the folder) are real directories."""
        own = [self.done_dir, self.quarantine_dir]
        if self.state_dir.parent == self.directory:
            own.append(self.state_dir)
        for path in own:
            check_own_directory(path)

    async def __aenter__(self) -> DropFolder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.journal.close()

    def pending(self, *, settled_only: bool = False) -> list[Path]:
        """Files waiting, oldest first; with ``settled_only``, those unchanged since last look
        and older than ``settle_ms``. Only what ``lstat`` calls a regular file is listed."""
        return self._list(settled_only=settled_only)[0]

    def _list(self, *, settled_only: bool) -> tuple[list[Path], list[tuple[Path, str]]]:
        """(regular files waiting, oldest first; other entries with what they are)."""
        files, others = [], []
        now = time.time()
        seen, self._seen = self._seen, {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.endswith(_IN_PROGRESS_SUFFIXES):
                    continue
                path = Path(entry.path)
                if path in (self.done_dir, self.quarantine_dir, self.state_dir):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)  # lstat: a link is not followed
                except FileNotFoundError:  # taken away between listing and looking
                    continue
                kind = kind_of(st.st_mode)
                if kind is not None:
                    if (name, st.st_dev, st.st_ino) not in self._stuck:
                        others.append((path, kind))
                    continue
                signature = (st.st_size, st.st_mtime_ns)
                previous, self._seen[path] = seen.get(path), signature
                if settled_only and (
                    previous != signature
                    or now - st.st_mtime < self.adapter.config.settle_ms / 1000
                ):
                    continue
                files.append((st.st_mtime_ns, name, path))
        return [path for _, _, path in sorted(files)], sorted(others)

    async def scan_once(self, *, settled_only: bool = False) -> list[FileOutcome]:
        """Refuse what is not a regular file, then ingest every waiting file; Kafka errors
        propagate (the file is tried again later)."""
        self._check_own_directories()
        files, others = self._list(settled_only=settled_only)
        outcomes = [await self._refuse(path, NotRegular(kind)) for path, kind in others]
        self.adapter.metrics.file_outcomes(o.outcome for o in outcomes)
        for path in files:
            outcomes.append(await self.ingest(path))
            self.adapter.metrics.file_outcomes([outcomes[-1].outcome])
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
            except Exception as exc:  # never fatal: Kafka down, a full disk, or a bug
                foreseen = isinstance(exc, BusError | OSError)
                self._log.error(
                    "drop_folder_retry_later",
                    error=str(exc),
                    error_class=type(exc).__name__,
                    exc_info=None if foreseen else exc,
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
        # Reading, hashing and parsing run in a thread: a large file must not stall the HTTP
        # endpoint.
        try:
            content = await asyncio.to_thread(read_regular, path, limit)
        except NotRegular as exc:  # swapped for a link, a FIFO… since it was listed
            return await self._refuse(path, exc)
        except FileNotFoundError:
            log.info("file_vanished")
            return FileOutcome(name, "", "vanished")
        except PermissionError as exc:  # the national system's to fix; moving needs no reading
            problem = FeedRejected(f"cannot be opened: {exc.strerror}")
            return await self._reject_file(path, None, problem, head=b"")
        except OSError:
            raise  # the disk or the system, not the file: tried again later
        except Exception as exc:
            log.error("file_unexpected_error", error_class=type(exc).__name__, exc_info=exc)
            return await self._reject_file(
                path, None, FeedRejected(unexpected_reason(exc)), head=b""
            )
        sha = content.sha256
        if content.size > limit:
            problem = FeedRejected(
                f"the file has {content.size} bytes; the limit is {limit} (split it)"
            )
            return await self._reject_file(path, content, problem, head=b"")
        progress = self.journal.progress(sha)
        if progress.done:
            log.info("file_already_ingested", outcome=progress.outcome)
            target = self.quarantine_dir if progress.outcome == "quarantined" else self.done_dir
            move_into(target, path, tag=sha[:12], identity=content.identity)
            return FileOutcome(name, sha, "already_done")
        feed = self.adapter.mapping.feed
        try:
            if not name.lower().endswith(feed.suffixes):
                raise FeedRejected(
                    f"expected a {' or '.join(feed.suffixes)} file for {self.adapter.cc}"
                )
            records = await asyncio.to_thread(feed.parse, content.data, self.adapter.limits)
        except FeedRejected as exc:
            return await self._reject_file(path, content, exc, head=content.data)
        except Exception as exc:  # a parser that met what nobody foresaw: the file goes aside
            log.error("file_unexpected_error", error_class=type(exc).__name__, exc_info=exc)
            problem = FeedRejected(unexpected_reason(exc))
            return await self._reject_file(path, content, problem, head=content.data)
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
        move_into(self.done_dir, path, tag=sha[:12], identity=content.identity)
        log.info("file_done", published=outcome.published, quarantined=outcome.quarantined,
                 skipped=outcome.skipped)  # fmt: skip
        return outcome

    async def _batch(
        self, batch: list[FeedRecord], name: str, sha: str, outcome: FileOutcome
    ) -> None:
        publish: list[tuple[FeedRecord, PreparedAlert]] = []
        rejections: list[Rejection] = []
        skipped: dict[int, str] = {}
        in_batch: set[str] = set()
        for record, prepared in zip(batch, await self.adapter.prepare_all(batch), strict=True):
            if isinstance(prepared, RecordRejected):
                rejections.append(
                    Rejection(name, record.number, record.position, prepared.field,
                              prepared.reason, prepared, record.raw)
                )  # fmt: skip
                continue
            alert_id = str(prepared.alert.alert_id)
            if self.journal.is_published(alert_id) or alert_id in in_batch:
                # The same version of the same record came before (an overlapping export).
                skipped[record.number] = alert_id
                continue
            in_batch.add(alert_id)
            publish.append((record, prepared))
        await self.adapter.set_aside(rejections, report=self._report_path(name), file_sha256=sha)
        results = await self.adapter.publish([prepared for _, prepared in publish])
        for (record, prepared), result in zip(publish, results, strict=True):
            self.adapter.log.debug(
                "alert_published", file=name, line=record.position,
                alert_id=str(result.alert_id), topic=result.topic, partition=result.partition,
                offset=result.offset,
            )  # fmt: skip
            outcome.by_type[prepared.alert.alert_type] += 1
        self.journal.record_batch(
            sha,
            acked={record.number: str(p.alert.alert_id) for record, p in publish},
            quarantined=[r.number for r in rejections if r.number is not None],
            skipped=skipped,
        )
        outcome.published += len(publish)
        outcome.quarantined += len(rejections)
        outcome.skipped += len(skipped)
        self.adapter.metrics.handled("skipped", len(skipped))

    async def _reject_file(
        self, path: Path, content: FileContent | None, problem: FeedRejected, *, head: bytes
    ) -> FileOutcome:
        """Set a whole regular file aside: report, dead letter, journal, into quarantine/."""
        sha = content.sha256 if content is not None else None
        rejection = Rejection(
            path.name, None, problem.where, None, problem.reason, problem,
            head[:MAX_DEAD_LETTER_BYTES] or None,
        )  # fmt: skip
        await self.adapter.set_aside(
            [rejection], report=self._report_path(path.name), file_sha256=sha
        )
        if content is not None:
            self.journal.mark_done(content.sha256, path.name, "quarantined")
        move_into(
            self.quarantine_dir,
            path,
            tag=sha[:12] if sha else f"{time.time_ns():x}",
            identity=content.identity if content is not None else None,
        )
        return FileOutcome(path.name, sha or "", "quarantined", quarantined=1)

    async def _refuse(self, path: Path, problem: NotRegular) -> FileOutcome:
        """Report an entry that is not read, then remove it (a directory: into quarantine/).

        Nothing of a link's target is read or sent: the report names where the link pointed,
        the dead letter carries the reason and no value.
        """
        name = path.name
        details: dict[str, str] = {"entry": problem.kind}
        if problem.kind == SYMLINK:
            with contextlib.suppress(OSError):
                details["link_target"] = os.readlink(path)
        rejection = Rejection(name, None, None, None, problem.reason, problem, None, details)
        await self.adapter.set_aside([rejection], report=self._report_path(name), file_sha256=None)
        try:
            st = os.lstat(path)  # what is there now: it may have changed since it was looked at
            if stat.S_ISDIR(st.st_mode):
                identity = (st.st_dev, st.st_ino)
                moved = move_into(self.quarantine_dir, path, tag=f"{time.time_ns():x}",
                                  identity=identity)  # fmt: skip
                await self._remove_links_below(moved)
            elif not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):  # else: read next pass
                os.unlink(path)  # the link (or FIFO, …) itself; never what it points at
        except FileNotFoundError:
            pass
        except OSError as exc:
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                self._stuck.add((name, st.st_dev, st.st_ino))
            self._log.error(
                "entry_not_removed", file=name, error=str(exc), error_class=type(exc).__name__
            )
        self._log.warning("entry_refused", file=name, reason=problem.reason, **details)
        return FileOutcome(name, "", "refused", quarantined=1)

    async def _remove_links_below(self, moved: Path) -> None:
        # A directory in quarantine/ must not hold a link to follow (to a key, say) either.
        try:
            removed, complete = await asyncio.to_thread(remove_links_below, moved)
        except OSError as exc:  # replaced again in between: move_into took care of a link
            self._log.warning("directory_not_checked", moved_to=str(moved), error=str(exc))
            return
        log = self._log.warning if removed or not complete else self._log.info
        log("directory_quarantined", moved_to=str(moved), links_removed=removed,
            fully_checked=complete)  # fmt: skip

    def _report_path(self, name: str) -> Path:
        report = fit_name(name, reserve_bytes=len(_REPORT_SUFFIX))
        return self.quarantine_dir / f"{report}{_REPORT_SUFFIX}"
