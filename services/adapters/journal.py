"""The drop folder's journal: which records of which file Kafka acknowledged or were set aside.

One JSON line per acknowledged batch, written and fsync'ed before the next batch is sent:

    {"file": "9f2c…", "acked": {"12": "5b3e…"}, "quarantined": [13], "skipped": {}}
    {"file": "9f2c…", "done": "rs-2014-07.csv", "outcome": "done", "published": 38, …}

Files are known by the SHA-256 of their content, so a file dropped again under any name is
recognised. After a crash (even ``kill -9``) the adapter reads the journal, skips what it
records and sends the rest: at most the batch in flight at the crash is sent twice, with the
same alert ids. A torn last line (the crash hit the write) is dropped, and its batch sent again.
The journal also holds every alert id published, so a record that comes again in another file
(an export that overlaps the previous one) is skipped, not sent again.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.adapters.errors import AdapterError

_OPEN_FLAGS = (
    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    | os.O_CLOEXEC
)  # fmt: skip


@dataclass
class FileProgress:
    """What the journal knows of one file."""

    handled: set[int] = field(default_factory=set)
    done: bool = False
    outcome: str | None = None


class Journal:
    """Append-only, fsync'ed record of progress; one per country and drop folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, FileProgress] = {}
        self._published: set[str] = set()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened once, never through a link: .state/ sits in a folder the national system
        # writes, and a journal linked to another file would be read, and appended to, there.
        try:
            self._fd = os.open(path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise AdapterError(
                f"The journal {path} cannot be opened as a regular file ({exc.strerror}); is it "
                "a symbolic link? Remove it, or move it aside to start over"
            ) from exc
        st = os.fstat(self._fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(self._fd)
            raise AdapterError(
                f"The journal {path} is not a regular file of its own (a FIFO, a device, a hard "
                "link?); remove it, or move it aside to start over"
            )
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _load(self) -> None:
        with os.fdopen(os.dup(self._fd), "rb") as f:
            data = f.read()
        complete, _, torn = data.rpartition(b"\n")
        if torn:
            # The process died while writing this line; its batch was not acknowledged as
            # journaled, so it is sent again. Cut the torn line so that appends stay clean.
            os.ftruncate(self._fd, len(complete) + 1 if complete else 0)
            os.fsync(self._fd)
        for number, line in enumerate(complete.split(b"\n") if complete else [], 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._apply(entry)
            except (ValueError, KeyError, TypeError) as exc:
                raise AdapterError(
                    f"The journal {self.path} is damaged at line {number} ({exc}); move it "
                    "aside to start over (files still in the drop folder will be sent again, "
                    "with the same alert ids)"
                ) from exc

    def _apply(self, entry: dict[str, Any]) -> None:
        progress = self._files.setdefault(str(entry["file"]), FileProgress())
        if "done" in entry:
            progress.done = True
            progress.outcome = str(entry.get("outcome", "done"))
            return
        for number, alert_id in entry.get("acked", {}).items():
            progress.handled.add(int(number))
            self._published.add(str(alert_id))
        for number in entry.get("skipped", {}):
            progress.handled.add(int(number))
        for number in entry.get("quarantined", []):
            progress.handled.add(int(number))

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        os.fsync(self._fd)
        self._apply(entry)

    def progress(self, file_id: str) -> FileProgress:
        return self._files.get(file_id, FileProgress())

    def is_published(self, alert_id: str) -> bool:
        return alert_id in self._published

    def record_batch(
        self,
        file_id: str,
        *,
        acked: dict[int, str],
        quarantined: list[int],
        skipped: dict[int, str],
    ) -> None:
        """Note a batch as handled; returns once it is on disk."""
        if not (acked or quarantined or skipped):
            return
        self._write(
            {
                "file": file_id,
                "acked": {str(n): a for n, a in acked.items()},
                "quarantined": quarantined,
                "skipped": {str(n): a for n, a in skipped.items()},
            }
        )

    def mark_done(self, file_id: str, name: str, outcome: str, **counts: int) -> None:
        """Note a file as finished (``done``) or set aside whole (``quarantined``)."""
        self._write({"file": file_id, "done": name, "outcome": outcome, **counts})
