"""What the fan-out remembers between batches and restarts: who received which alert.

An alert is identified by (origin, alert id): one country's alert id can never shadow, suppress
or redirect another country's. ``Routed`` (``services.fanout.routed``, a local file) maps each
routed alert to the partners that received its content; it is rebuilt at every start from the
compacted topic ``bus.fanout.state``, its changelog:

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
from services.fanout.routed import Overlay, Routed, RoutedView, StateStoreError

__all__ = [
    "Overlay", "Restorer", "Routed", "RoutedView", "StateError", "StateRecord", "StateStoreError",
    "parse_audit_head", "parse_state", "state_key", "state_value",
]  # fmt: skip

_COUNTRY = re.compile(r"[a-z]{2}")
_PARTNER = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_HASH = re.compile(r"[0-9a-f]{64}")


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

    async def routed(self, into: Routed) -> None:
        """Fold ``bus.fanout.state`` into ``into``, one write per fetched batch.

        What it writes is committed state, so a read cut short by a broker failure leaves
        ``into`` with true entries only; the next read completes it.
        """
        async for batch in iter_records(self._settings, self._settings.topics.fanout_state):
            self.fold(batch, into)

    def fold(self, records: Iterable[Any], into: Routed) -> None:
        """Write the ``bus.fanout.state`` records that parse into ``into``, in one go; report
        the others."""
        entries = []
        for record in records:
            try:
                parsed = parse_state(record.key, record.value)
            except StateError as problem:
                self._report(record, problem)
                continue
            if parsed is not None:
                entries.append((parsed.origin, parsed.alert_id, parsed.recipients))
        into.add_many(entries)

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
