"""Who received which alert, on disk: the fan-out's memory stays flat however many it routes.

``Routed`` maps (origin, alert id) to the partners that received the alert's content: the
fan-out refuses a duplicate however old, sends a follow-up to exactly the recipients of the alert
it follows, and refuses a follow-up that references another origin's alert. Like a Kafka Streams
state store, it is a local SQLite file with the compacted topic ``bus.fanout.state`` as its
changelog: the process holds only a bounded page cache, the file holds the rest.

    routed = Routed(Path("/var/lib/bus/fanout-state"))
    batch = routed.overlay()          # one transaction's view: reads through, keeps its adds
    batch.add("rs", alert_id, ["mk"])
    ...                               # the transaction commits
    routed.merge(batch)               # only now does the store learn of them
    routed.close()                    # and the file is gone

The file is a cache of Kafka, never the truth: each ``Routed`` opens a file of its own (so two
fan-outs on one machine never share one) that it rebuilds from the changelog, and deletes it when
closed. A file an earlier process left behind (it crashed) is deleted unread when the next one
opens the directory; a file is held under an exclusive ``flock`` for as long as it is in use, so
a live one is never taken for a leftover. Rebuilding always costs a read of the compacted topic at
each start, as before the store existed, but needs no checkpoint that could disagree with a topic
that was compacted, truncated or recreated meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from bus.errors import BusError

#: SQLite's page cache for the store, in KiB: what the process holds of the file at most. A
#: lookup of a fresh alert touches a few B-tree pages; the hot ones stay here, the rest in the
#: operating system's file cache, which is not the process's memory.
CACHE_KIB = 2 * 1024
#: Recipient lists remembered in the process (each alert's row names its list by number; the
#: agreements give few distinct lists). Past this, the memo starts again from empty.
LISTS_MEMO = 4096
_PREFIX, _SUFFIX = "routed-", ".sqlite3"

_SCHEMA = """
CREATE TABLE lists (id INTEGER PRIMARY KEY, partners TEXT NOT NULL UNIQUE);
CREATE TABLE routed (
    alert_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    list INTEGER NOT NULL,
    PRIMARY KEY (alert_id, origin)
) WITHOUT ROWID;
"""


class StateStoreError(BusError):
    """The fan-out's local state file could not be created, written or read."""


class RoutedView(Protocol):
    """What routing one alert reads and writes: the store, or a batch's overlay of it."""

    def recipients(self, origin: str, alert_id: str) -> tuple[str, ...] | None: ...

    def origins(self, alert_id: str) -> set[str]: ...

    def add(self, origin: str, alert_id: str, recipients: Iterable[str]) -> None: ...


class Overlay:
    """One batch's additions, in memory, over a view they reach only through ``merge``: a
    transaction that aborts leaves its overlay behind and the store as it was."""

    def __init__(self, parent: RoutedView) -> None:
        #: By alert id: (origin, recipients) for each origin, almost always just one.
        self._by_id: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        self._parent = parent

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_id.values())

    def recipients(self, origin: str, alert_id: str) -> tuple[str, ...] | None:
        for entry_origin, recipients in self._by_id.get(alert_id, ()):
            if entry_origin == origin:
                return recipients
        return self._parent.recipients(origin, alert_id)

    def origins(self, alert_id: str) -> set[str]:
        return {o for o, _ in self._by_id.get(alert_id, ())} | self._parent.origins(alert_id)

    def add(self, origin: str, alert_id: str, recipients: Iterable[str]) -> None:
        others = tuple(e for e in self._by_id.get(alert_id, ()) if e[0] != origin)
        self._by_id[alert_id] = (*others, (origin, tuple(sorted(recipients))))

    def entries(self) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        """(origin, alert id, recipients) of each addition."""
        for alert_id, entries in self._by_id.items():
            for origin, recipients in entries:
                yield origin, alert_id, recipients


class Routed:
    """(origin, alert id) → the partners that received the alert's content, in a SQLite file
    of its own under ``directory``, opened at first use and deleted by ``close``."""

    def __init__(self, directory: Path, *, cache_kib: int = CACHE_KIB) -> None:
        self.directory = directory
        self._cache_kib = cache_kib
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None  # the file's descriptor holding our flock
        self.path: Path | None = None
        self._lists: dict[tuple[str, ...], int] = {}
        self._partners: dict[int, tuple[str, ...]] = {}

    def __enter__(self) -> Routed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the file ------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(self.directory)
            # Locked under a name no one cleans up, then given its own: another fan-out that
            # opens the directory meanwhile never sees it unlocked.
            fd, name = tempfile.mkstemp(prefix=f".{_PREFIX}", suffix=_SUFFIX, dir=self.directory)
            self._lock, self.path = fd, Path(name)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.path.with_name(self.path.name[1:])
            os.rename(name, path)
            self.path = path
            db = sqlite3.connect(path, isolation_level=None)
            # A cache of Kafka: no journal, no syncs (a crash discards the file anyway), and no
            # other process may open it, so SQLite need not take file locks per statement.
            for pragma in ("journal_mode = OFF", "synchronous = OFF",
                           "locking_mode = EXCLUSIVE", f"cache_size = -{self._cache_kib}",
                           "temp_store = FILE"):  # fmt: skip
                db.execute(f"PRAGMA {pragma}")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise StateStoreError(
                f"Could not create the fan-out's state file in {self.directory} "
                f"({type(exc).__name__}: {exc}); set BUS_FANOUT_STATE_DIR to a writable "
                "directory on a local disk"
            ) from exc
        self._db = db
        return db

    def close(self) -> None:
        """Close the file and delete it; a later use starts a new, empty one."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
        self._lists.clear()
        self._partners.clear()

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._db is None:
            return 0
        try:
            (count,) = self._db.execute("SELECT count(*) FROM routed").fetchone()
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from exc
        return int(count)

    def recipients(self, origin: str, alert_id: str) -> tuple[str, ...] | None:
        """Who received ``origin``'s alert ``alert_id``, or None if it was never routed."""
        db = self._open()
        try:
            row = db.execute(
                "SELECT list FROM routed WHERE alert_id = ? AND origin = ?", (alert_id, origin)
            ).fetchone()
            return None if row is None else self._partners_of(row[0])
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from exc

    def origins(self, alert_id: str) -> set[str]:
        """Every origin that has an alert with this id."""
        db = self._open()
        try:
            rows = db.execute("SELECT origin FROM routed WHERE alert_id = ?", (alert_id,))
            return {origin for (origin,) in rows}
        except sqlite3.Error as exc:
            raise self._failed("read", exc) from exc

    def _partners_of(self, list_id: int) -> tuple[str, ...]:
        partners = self._partners.get(list_id)
        if partners is None:
            assert self._db is not None
            (text,) = self._db.execute(
                "SELECT partners FROM lists WHERE id = ?", (list_id,)
            ).fetchone()
            partners = tuple(text.split(",")) if text else ()
            self._remember(partners, list_id)
        return partners

    # -- writing -------------------------------------------------------------------------------

    def add(self, origin: str, alert_id: str, recipients: Iterable[str]) -> None:
        self.add_many([(origin, alert_id, tuple(recipients))])

    def add_many(self, entries: Iterable[tuple[str, str, Iterable[str]]]) -> None:
        """Record (origin, alert id, recipients) entries in one SQLite transaction; an entry
        replaces what the store held for its (origin, alert id)."""
        db = self._open()
        try:
            rows = [(a, o, self._list_id(db, r)) for o, a, r in entries]
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO routed VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failed("write", exc) from exc

    def _failed(self, doing: str, exc: sqlite3.Error) -> StateStoreError:
        return StateStoreError(
            f"Could not {doing} the fan-out's state file {self.path} ({exc}); the fan-out "
            "stops, and rebuilds the file from bus.fanout.state when started again"
        )

    def _list_id(self, db: sqlite3.Connection, recipients: Iterable[str]) -> int:
        """The number of this recipient list, stored once as comma-separated partner ids
        (which the agreements and ``parse_state`` allow only as ``[a-z0-9-]``)."""
        partners = tuple(sorted(recipients))
        list_id = self._lists.get(partners)
        if list_id is None:
            text = ",".join(partners)
            db.execute("INSERT OR IGNORE INTO lists (partners) VALUES (?)", (text,))
            (list_id,) = db.execute("SELECT id FROM lists WHERE partners = ?", (text,)).fetchone()
            self._remember(partners, list_id)
        return list_id

    def _remember(self, partners: tuple[str, ...], list_id: int) -> None:
        if len(self._lists) >= LISTS_MEMO:
            self._lists.clear()
            self._partners.clear()
        self._lists[partners] = list_id
        self._partners[list_id] = partners

    # -- one transaction's view ----------------------------------------------------------------

    def overlay(self) -> Overlay:
        return Overlay(parent=self)

    def merge(self, overlay: Overlay) -> None:
        """Record a committed transaction's additions, in one write."""
        self.add_many(overlay.entries())

    def file_bytes(self) -> int:
        """The size of the file on disk (0 before first use)."""
        return self.path.stat().st_size if self.path is not None else 0


def _remove_leftovers(directory: Path) -> None:
    """Delete the state files of processes that ended without closing theirs: a file nobody
    holds a lock on. Never read: what they held is rebuilt from Kafka."""
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue  # gone meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use by a live fan-out
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        finally:
            os.close(fd)
