"""The embedded database of the index and the statistics: SQLite, one transaction per batch.

Why SQLite: it ships with Python, its WAL journal lets lookups read a consistent snapshot while
a batch is being written, and one ``BEGIN IMMEDIATE … COMMIT`` holds a batch's entries, facts and
the Kafka offsets it consumed, so a restart (even after ``kill -9``) resumes exactly where the
last commit ended: nothing lost, nothing counted twice. The workload is point lookups by token
and small group-bys, where SQLite is at home; DuckDB's column store would help only large scans.

    store = IndexStore.open(data_dir / "index.sqlite3")
    store.apply_batch(alerts, {("ingress.rs.readmission", 0): 42}, now_ms=...)
    store.offsets()                              # {(topic, partition): next offset}
    store.entries_for(["it1.…"], now_ms=...)     # Entry rows, expired ones left out
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from bus.models import Alert, MessageType
from services.index.extract import Entry, EntryRow, FactRow, IndexedAlert

SCHEMA_VERSION = "1"
#: The page cache of each connection, in KiB.
CACHE_KIB = 64 * 1024
_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
-- Every alert id seen, and what it resolves to: state is active, excluded (EXERCISE or TEST),
-- superseded (by current_id), cancelled, or cancel (a CANCEL message itself).
CREATE TABLE IF NOT EXISTS alerts (
    origin TEXT NOT NULL, alert_id TEXT NOT NULL, current_id TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (origin, alert_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerts_current ON alerts (origin, current_id);
CREATE TABLE IF NOT EXISTS entries (
    token TEXT NOT NULL, owner TEXT NOT NULL, alert_id TEXT NOT NULL, alert_type TEXT NOT NULL,
    role TEXT NOT NULL, occurred_on TEXT NOT NULL, place TEXT, contact TEXT NOT NULL,
    expires_at INTEGER);
CREATE INDEX IF NOT EXISTS entries_token ON entries (token);
CREATE INDEX IF NOT EXISTS entries_alert ON entries (owner, alert_id);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS facts (
    origin TEXT NOT NULL, alert_id TEXT NOT NULL, indicator TEXT NOT NULL, month TEXT NOT NULL,
    dims TEXT NOT NULL, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS facts_alert ON facts (origin, alert_id);
CREATE INDEX IF NOT EXISTS facts_indicator ON facts (indicator, month);
"""


class IndexStore:
    """Entries, facts, alert lineage and consumed offsets in one SQLite file."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        # Rows of the batch being applied, not yet written (``_flush``).
        self._entries: list[EntryRow] = []
        self._facts: list[FactRow] = []

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> IndexStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        # Identity tokens are hashes, so each entry lands on a random page of the token index:
        # a page cache that holds the index's upper levels and hot leaves saves most reads
        # (SQLite's default is 2 MiB).
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        if not readonly:
            # WAL: readers see the last commit while a batch is written. NORMAL: a commit
            # survives the process being killed (not a power cut, after which Kafka, the
            # source of truth, still holds everything from the last checkpoint on).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_DDL)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                         (SCHEMA_VERSION,))  # fmt: skip
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    # -- writing -------------------------------------------------------------------------------

    def apply_batch(
        self,
        alerts: Iterable[Alert | IndexedAlert],
        offsets: dict[tuple[str, int], int],
        *,
        now_ms: int,
    ) -> int:
        """Fold ``alerts`` in and record ``offsets`` (next offset per partition) atomically;
        drop entries expired at ``now_ms``. Returns how many alerts changed the store."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            changed = 0
            for alert in alerts:
                changed += self._apply(alert if isinstance(alert, IndexedAlert)
                                       else IndexedAlert.of(alert))  # fmt: skip
            self._flush()
            c.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in offsets.items()],
            )
            c.execute("DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
                      (now_ms,))  # fmt: skip
            c.execute("COMMIT")
        except BaseException:
            self._entries.clear()
            self._facts.clear()
            c.execute("ROLLBACK")
            raise
        return changed

    def _apply(self, alert: IndexedAlert) -> bool:
        origin, aid = alert.origin, alert.alert_id
        if self._row(origin, aid) is not None:
            return False  # a duplicate, or an alert a follow-up already superseded or cancelled
        if alert.msg_type == MessageType.CANCEL.value:
            for ref in alert.references:
                self._cancel(origin, ref)
            self._insert_alert(origin, aid, aid, "cancel")
            return True
        cancelled = False
        if alert.msg_type == MessageType.UPDATE.value:
            for ref in alert.references:
                cancelled |= self._supersede(origin, ref, aid)
        state = "cancelled" if cancelled else "active" if alert.actual else "excluded"
        self._insert_alert(origin, aid, aid, state)
        if state == "active":
            # Written in one statement per batch (``_flush``): most alerts are new ones.
            self._entries += alert.entries
            self._facts += alert.facts
        return True

    def _flush(self) -> None:
        """Write the entries and facts gathered so far; before anything reads or drops them."""
        if self._entries:
            self.conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                  self._entries)  # fmt: skip
            self._entries.clear()
        if self._facts:
            self.conn.executemany("INSERT INTO facts VALUES (?, ?, ?, ?, ?, ?)", self._facts)
            self._facts.clear()

    def _row(self, origin: str, alert_id: str) -> tuple[str, str] | None:
        row = self.conn.execute(
            "SELECT current_id, state FROM alerts WHERE origin = ? AND alert_id = ?",
            (origin, alert_id),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def _insert_alert(self, origin: str, alert_id: str, current: str, state: str) -> None:
        self.conn.execute("INSERT INTO alerts VALUES (?, ?, ?, ?)",
                          (origin, alert_id, current, state))  # fmt: skip

    def _supersede(self, origin: str, ref: str, new_id: str) -> bool:
        """``new_id`` replaces ``ref``'s lineage; True when that lineage was cancelled."""
        row = self._row(origin, ref)
        if row is None:  # the follow-up came first: the alert, when it comes, counts no more
            self._insert_alert(origin, ref, new_id, "superseded")
            return False
        current = row[0]
        current_row = self._row(origin, current)
        if current_row is not None and current_row[1] == "cancelled":
            return True
        self._drop_content(origin, current)
        self.conn.execute(
            "UPDATE alerts SET current_id = ?, state = 'superseded' "
            "WHERE origin = ? AND current_id = ?",
            (new_id, origin, current),
        )
        return False

    def _cancel(self, origin: str, ref: str) -> None:
        row = self._row(origin, ref)
        if row is None:
            self._insert_alert(origin, ref, ref, "cancelled")
            return
        current = row[0]
        self._drop_content(origin, current)
        self.conn.execute(
            "UPDATE alerts SET state = 'cancelled' WHERE origin = ? AND current_id = ?",
            (origin, current),
        )

    def _drop_content(self, origin: str, alert_id: str) -> None:
        self._flush()  # the content may be this batch's
        self.conn.execute("DELETE FROM entries WHERE owner = ? AND alert_id = ?",
                          (origin, alert_id))  # fmt: skip
        self.conn.execute("DELETE FROM facts WHERE origin = ? AND alert_id = ?",
                          (origin, alert_id))  # fmt: skip

    # -- reading -------------------------------------------------------------------------------

    def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.conn.execute("SELECT topic, partition, next_offset FROM offsets")
        return {(t, p): o for t, p, o in rows}

    def entries_for(self, tokens: Sequence[str], *, now_ms: int) -> list[Entry]:
        """Every unexpired entry with one of ``tokens``."""
        if not tokens:
            return []
        marks = ",".join("?" * len(tokens))
        rows = self.conn.execute(
            f"SELECT token, owner, alert_id, alert_type, role, occurred_on, place, contact, "
            f"expires_at FROM entries WHERE token IN ({marks}) "
            f"AND (expires_at IS NULL OR expires_at > ?)",
            (*tokens, now_ms),
        )
        return [Entry._make(row) for row in rows]

    def facts(
        self, indicator: str, *, first_month: str | None = None, last_month: str | None = None
    ) -> Iterator[tuple[str, tuple[str, ...], int]]:
        """(month, dims, value) of every fact of ``indicator`` in the month range."""
        rows = self.conn.execute(
            "SELECT month, dims, value FROM facts WHERE indicator = ? AND month >= ? "
            "AND month <= ? ORDER BY month",
            (indicator, first_month or "0000-00", last_month or "9999-99"),
        )
        for month, dims, value in rows:
            yield month, tuple(json.loads(dims)), value

    @classmethod
    def entry_count(cls, path: Path) -> int:
        """Entries in the index at ``path``, read through a connection of its own (any thread)."""
        store = cls.open(path, readonly=True)
        try:
            return int(store.conn.execute("SELECT count(*) FROM entries").fetchone()[0])
        finally:
            store.close()

    def counts(self) -> dict[str, int]:
        """Rows per table, for logs and tests."""
        return {t: self.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("alerts", "entries", "facts", "offsets")}  # fmt: skip

    def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        """The whole content in a canonical order (to compare two stores in tests)."""
        out: dict[str, list[tuple[object, ...]]] = {}
        for table in ("alerts", "entries", "facts"):
            out[table] = sorted(self.conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        return out
