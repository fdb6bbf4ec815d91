"""What the fan-out remembers between batches and restarts: who received which alert.

An alert is identified by (origin, alert id): one country's alert id can never shadow, suppress
or redirect another country's. ``Routed`` maps each routed alert to the partners that received
its content; it is rebuilt at every start from the compacted topic ``bus.fanout.state``:

    key    b"<origin>:<alert id>"
    value  {"origin": "rs", "alert_id": "…", "alert_type": "irregular-crossing",
            "recipients": ["jc-tabanovce", "mk"], "notices": ["europol"]}

State read back is input like any other: a record that does not parse is reported (log and
counter, with its topic, partition and offset) and skipped, and the service carries on with what
it can trust. Restoring folds the topic in fetched batches and never holds it as records.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bus.audit import AuditChain, chain_of
from bus.kafka import ReadWindow, iter_records
from bus.settings import BusSettings

_COUNTRY = re.compile(r"[a-z]{2}")
_PARTNER = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_HASH = re.compile(r"[0-9a-f]{64}")

#: (origin, the partners that received the content) for one alert id.
_Entry = tuple[str, tuple[str, ...]]


class Routed:
    """(origin, alert id) → the partners that received the alert's content.

    Almost every alert id belongs to one origin, so the index keeps a tuple of entries per id:
    small in memory, and ``origins`` answers "whose alert is this id?" without a scan.
    ``overlay()`` gives a view for one batch whose additions reach this index only on ``merge``.
    """

    def __init__(self, parent: Routed | None = None) -> None:
        self._by_id: dict[str, tuple[_Entry, ...]] = {}
        self._parent = parent

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_id.values())

    def recipients(self, origin: str, alert_id: str) -> tuple[str, ...] | None:
        """Who received ``origin``'s alert ``alert_id``, or None if it was never routed."""
        for entry_origin, recipients in self._by_id.get(alert_id, ()):
            if entry_origin == origin:
                return recipients
        return self._parent.recipients(origin, alert_id) if self._parent is not None else None

    def origins(self, alert_id: str) -> set[str]:
        """Every origin that has an alert with this id."""
        found = {origin for origin, _ in self._by_id.get(alert_id, ())}
        return found | self._parent.origins(alert_id) if self._parent is not None else found

    def add(self, origin: str, alert_id: str, recipients: Iterable[str]) -> None:
        others = tuple(e for e in self._by_id.get(alert_id, ()) if e[0] != origin)
        self._by_id[alert_id] = (*others, (origin, tuple(sorted(recipients))))

    def overlay(self) -> Routed:
        return Routed(parent=self)

    def merge(self, overlay: Routed) -> None:
        for alert_id, entries in overlay._by_id.items():
            for origin, recipients in entries:
                self.add(origin, alert_id, recipients)


class StateError(ValueError):
    """A state or audit record that cannot be trusted, and why."""


@dataclass(frozen=True)
class StateRecord:
    origin: str
    alert_id: str
    recipients: tuple[str, ...]


def state_key(origin: str, alert_id: str) -> bytes:
    return f"{origin}:{alert_id}".encode()


def state_value(
    origin: str, alert_id: str, alert_type: str, recipients: Iterable[str], notices: Iterable[str]
) -> bytes:
    """The state record's JSON, written directly: every part is a checked token (a country
    code, a UUID, an alert type of the schemas, partner ids of the agreements) that needs no
    escaping, and this runs once per alert."""
    return (
        f'{{"origin":"{origin}","alert_id":"{alert_id}","alert_type":"{alert_type}",'
        f'"recipients":[{_quoted(recipients)}],"notices":[{_quoted(notices)}]}}'
    ).encode()


def _quoted(ids: Iterable[str]) -> str:
    return ",".join(f'"{i}"' for i in sorted(ids))


def parse_state(key: bytes | None, value: bytes | None) -> StateRecord | None:
    """One ``bus.fanout.state`` record; None for a tombstone; ``StateError`` if malformed.

    Records written before alerts were keyed by origin have the bare alert id as their key;
    their origin is read from the value.
    """
    if key is None:
        raise StateError("no key")
    if value is None:
        return None
    try:
        text_key = key.decode()
        data = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"not UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise StateError(f"expected a JSON object, got {type(data).__name__}")
    key_origin, _, alert_id = text_key.rpartition(":")
    origin: object = key_origin or data.get("origin")
    if not isinstance(origin, str) or not _COUNTRY.fullmatch(origin):
        raise StateError(f"origin {origin!r} is not a country code")
    if data.get("origin", origin) != origin:
        raise StateError(f"the key names origin {origin!r}, the value {data.get('origin')!r}")
    try:
        alert_id = str(uuid.UUID(alert_id))
    except ValueError:
        raise StateError(f"alert id {alert_id[:40]!r} is not a UUID") from None
    recipients = data.get("recipients")
    if not isinstance(recipients, list) or not all(
        isinstance(p, str) and _PARTNER.fullmatch(p) for p in recipients
    ):
        raise StateError("recipients is not a list of partner ids")
    return StateRecord(origin, alert_id, tuple(recipients))


def parse_audit_head(value: bytes | None, chain: int = 0) -> Mapping[str, Any]:
    """An audit record of ``chain`` good enough to continue it after; ``StateError`` otherwise."""
    try:
        record = json.loads(value or b"")
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"not UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(record, dict):
        raise StateError(f"expected a JSON object, got {type(record).__name__}")
    index, digest = record.get("index"), record.get("hash")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise StateError(f"index {index!r} is not a non-negative integer")
    if not isinstance(digest, str) or not _HASH.fullmatch(digest):
        raise StateError("hash is not 64 hex digits")
    if chain_of(record) != chain:
        raise StateError(f"it names chain {record.get('chain')!r}, in chain {chain}'s partition")
    return record


class Restorer:
    """Rebuilds ``Routed`` and the audit head from Kafka, reporting what cannot be trusted."""

    def __init__(
        self, settings: BusSettings, log: Any, malformed: set[tuple[str, int, int]] | None = None
    ) -> None:
        self._settings = settings
        self._log = log
        #: Records skipped because they did not parse, by (topic, partition, offset); shared
        #: by the restores of one service, so each is reported once.
        self.malformed: set[tuple[str, int, int]] = set() if malformed is None else malformed

    def _report(self, record: Any, problem: StateError) -> None:
        where = (record.topic, record.partition, record.offset)
        if where in self.malformed:
            return
        self.malformed.add(where)
        self._log.error(
            "state_record_malformed", topic=record.topic, partition=record.partition,
            offset=record.offset, error=str(problem),
        )  # fmt: skip

    async def routed(self) -> Routed:
        routed = Routed()
        async for batch in iter_records(self._settings, self._settings.topics.fanout_state):
            for record in batch:
                try:
                    parsed = parse_state(record.key, record.value)
                except StateError as problem:
                    self._report(record, problem)
                    continue
                if parsed is not None:
                    routed.add(parsed.origin, parsed.alert_id, parsed.recipients)
        return routed

    async def chain(self, shard: int) -> AuditChain:
        """Chain ``shard`` (partition ``shard`` of the audit topic) continued after its newest
        record that parses.

        The newest record sits before at least one transaction marker, and possibly behind
        aborted or malformed records: look further back until a good committed one shows up.
        """
        back = 16
        while True:
            newest: Mapping[str, Any] | None = None
            window = ReadWindow()
            async for batch in iter_records(
                self._settings, self._settings.topics.audit, from_offset_back=back, window=window,
                partitions=[shard],
            ):  # fmt: skip
                for record in batch:
                    try:
                        newest = parse_audit_head(record.value, shard)
                    except StateError as problem:
                        self._report(record, problem)
            if newest is not None or window.from_start:
                return AuditChain.resume(newest, chain=shard)
            back *= 64
