"""Setting records aside: a report beside the file, and the record on ``bus.dlq``.

A report is JSON Lines, ``<dropdir>/quarantine/<file>.report.jsonl``, one line per rejected
record, for the national system's operators to fix at the source:

    {"file": "rs-2014-07.csv", "record": 7, "position": "line 8", "field": "датум_рођења",
     "reason": "expected a date like 31.12.2014. (dd.mm.yyyy.), got '31.02.1990.'", …}

The same record, as read, goes to the dead-letter topic with stage ``adapter``, so that the bus
operators see every rejection in one place; its headers say the file, position and field. An
entry that was not read at all (a link, a FIFO, a directory) has a dead letter with the reason
and no value.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bus.dlq import DeadLetter, send_dead_letter
from bus.settings import BusSettings

STAGE = "adapter"
#: A rejected record larger than this is cut in the dead letter (the report keeps its position).
MAX_DEAD_LETTER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Rejection:
    """One record set aside (``number`` None when a whole file is), and why."""

    source: str
    number: int | None
    position: str | None
    field: str | None
    reason: str
    error: Exception
    raw: bytes | None
    #: More for the report only (never the dead letter), e.g. where a refused link pointed.
    details: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def report_line(self, file_sha256: str | None) -> dict[str, object]:
        return {
            "file": self.source,
            "file_sha256": file_sha256,
            "record": self.number,
            "position": self.position,
            "field": self.field,
            "reason": self.reason,
            **self.details,
            "quarantined_at": datetime.now(UTC).isoformat(),
        }


class Quarantine:
    """Writes reports and dead letters for one country's adapter."""

    def __init__(self, settings: BusSettings, cc: str, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._cc = cc
        self._producer = producer

    async def put(
        self,
        rejections: Sequence[Rejection],
        *,
        report: Path | None,
        file_sha256: str | None = None,
    ) -> None:
        """Report and dead-letter ``rejections``; returns once both are durable."""
        if not rejections:
            return
        if report is not None:
            write_report(report, [r.report_line(file_sha256) for r in rejections])
        await asyncio.gather(*(self._dead_letter(r, file_sha256) for r in rejections))

    async def _dead_letter(self, rejection: Rejection, file_sha256: str | None) -> None:
        headers = [
            ("bus-origin", self._cc.encode()),
            ("bus-adapter-source", rejection.source.encode("utf-8", "replace")),
            ("bus-adapter-position", (rejection.position or "").encode("utf-8", "replace")),
            ("bus-adapter-field", (rejection.field or "").encode("utf-8", "replace")),
        ]
        value = rejection.raw
        if value is not None and len(value) > MAX_DEAD_LETTER_BYTES:
            value = value[:MAX_DEAD_LETTER_BYTES]
            headers.append(("bus-adapter-truncated", str(len(rejection.raw or b"")).encode()))
        key = f"{self._cc}:{(file_sha256 or '')[:16]}:{rejection.number or 0}".encode()
        letter = DeadLetter(
            topic=f"{self._cc}:{rejection.source}",
            partition=-1,
            offset=rejection.number if rejection.number is not None else -1,
            key=key,
            value=value,
            headers=headers,
            error=rejection.error,
            stage=STAGE,
            source=f"adapter-{self._cc}",
        )
        await send_dead_letter(
            self._producer,
            letter,
            topic=self._settings.topics.dlq,
            timeout_ms=self._settings.publish_timeout_ms,
        )


def write_report(path: Path, lines: Sequence[dict[str, object]]) -> None:
    """Append report lines and fsync them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    # Undecodable bytes of a broken record are in the reason only as escapes.
    data = text.encode("utf-8", "backslashreplace")
    fd = _open_report(path)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_REPORT_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    | os.O_CLOEXEC
)  # fmt: skip


def _open_report(path: Path) -> int:
    """Open ``path`` for appending, as a regular file of its own.

    The quarantine folder sits inside a folder the national system writes: a link or FIFO
    planted under a report's name is removed, never written through (or blocked on).
    """
    for _ in range(3):
        try:
            fd = os.open(path, _REPORT_FLAGS, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO with no reader
                raise
        else:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                return fd
            os.close(fd)
        os.unlink(path)
    raise OSError(errno.EEXIST, "something keeps replacing the report file", str(path))
