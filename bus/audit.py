"""The audit log: delivery decisions, hash-chained so that tampering shows.

The fan-out writes one record per alert, holding every decision for it (``decisions``: one
entry per partner, or one ``duplicate`` or ``refused`` entry); ``decisions`` lists them one by
one, each with its alert's fields. Records from before an alert's decisions were gathered held
one decision each and are listed as they are.

Each record carries its ``index`` (0, 1, 2, … in log order), the ``prev_hash`` of the record
before it (64 zeros for the first) and its own ``hash``: SHA-256 over ``prev_hash`` and the
canonical JSON of every other field. A record changed, removed, inserted or moved breaks the chain
at that index, and ``verify_chain`` names the first index where it breaks.

The fan-out keeps one chain per shard (``chain`` = k, in partition k of ``bus.audit``), each
written by the one instance that owns the shard; ``verify_chains`` checks each of them.

    chain = AuditChain(chain=0)                     # or AuditChain.resume(last_record, chain=0)
    record = chain.append({"alert_id": ..., "partner": "europol", "decision": "delivered"})
    verify_chain(records)                           # ChainVerdict(ok=True, count=..., ...)
    verify_chains(records)                          # {0: ChainVerdict(...), 1: ...}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64
_CHAIN_FIELDS = ("index", "prev_hash", "hash")
#: The field naming the chain a record belongs to (absent: chain 0, as before chains were split).
CHAIN_FIELD = "chain"


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same data in any language."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_value(value: Any) -> bytes:
    """One value as ``canonical_json`` writes it inside a record."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


#: Stands for a pre-encoded field while the rest of a record is serialised (see append_json):
#: a key names it, and no field the bus writes holds a NUL character.
_SPLICE = "\x00spliced\x00"
_SPLICE_JSON = canonical_value(_SPLICE)


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """The hash of a record: SHA-256 of ``prev_hash`` (hex) followed by its canonical JSON."""
    content = {k: v for k, v in body.items() if k != "hash"}
    return hashlib.sha256(prev_hash.encode() + canonical_json(content)).hexdigest()


class AuditChain:
    """Appends records to the chain; keeps the index and hash of the last one.

    With ``chain`` set, every record names it (``"chain": k``), inside what is hashed.
    """

    def __init__(
        self, next_index: int = 0, head_hash: str = GENESIS_HASH, *, chain: int | None = None
    ) -> None:
        self.next_index = next_index
        self.head_hash = head_hash
        self.chain = chain

    @classmethod
    def resume(cls, last: Mapping[str, Any] | None, *, chain: int | None = None) -> AuditChain:
        """Continue after ``last`` (the newest record in the log), or start a new chain."""
        if last is None:
            return cls(chain=chain)
        return cls(int(last["index"]) + 1, str(last["hash"]), chain=chain)

    def append(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The record for ``body``, chained to the previous one; advances the head."""
        record = {k: v for k, v in body.items() if k not in _CHAIN_FIELDS}
        if self.chain is not None:
            record[CHAIN_FIELD] = self.chain
        record["index"] = self.next_index
        record["prev_hash"] = self.head_hash
        record["hash"] = record_hash(self.head_hash, record)
        self.next_index += 1
        self.head_hash = record["hash"]
        return record

    def append_json(
        self, body: Mapping[str, Any], *, encoded: Mapping[str, bytes] | None = None
    ) -> bytes:
        """Like ``append``, but return the record as UTF-8 JSON, serialising it only once.

        The bytes are the canonical JSON that was hashed with ``"hash"`` added as the last key.
        ``encoded`` gives fields already in canonical JSON (``canonical_value``), spliced in as
        they are: what repeats from record to record is serialised once.
        """
        record = {k: v for k, v in body.items() if k not in _CHAIN_FIELDS}
        if self.chain is not None:
            record[CHAIN_FIELD] = self.chain
        record["index"] = self.next_index
        record["prev_hash"] = self.head_hash
        if encoded:
            for name in encoded:
                record[name] = _SPLICE
            content = canonical_json(record)
            for name, value in encoded.items():
                marker = b"".join((b'"', name.encode(), b'":', _SPLICE_JSON))
                at = content.index(marker) + len(marker) - len(_SPLICE_JSON)
                content = b"".join((content[:at], value, content[at + len(_SPLICE_JSON) :]))
        else:
            content = canonical_json(record)
        digest = hashlib.sha256(self.head_hash.encode() + content).hexdigest()
        self.next_index += 1
        self.head_hash = digest
        return content[:-1] + b',"hash":"' + digest.encode() + b'"}'

    def copy(self) -> AuditChain:
        return AuditChain(self.next_index, self.head_hash, chain=self.chain)


@dataclass(frozen=True)
class ChainVerdict:
    """What ``bus audit verify`` reports."""

    ok: bool
    count: int
    first_broken: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.count} audit record(s), chain intact"
        if self.first_broken is None:
            return f"BROKEN: {self.reason}"
        return f"BROKEN at index {self.first_broken}: {self.reason}"


def verify_chain(records: Iterable[Mapping[str, Any]], *, start_index: int = 0) -> ChainVerdict:
    """Check every link; report the position of the first record that does not fit."""
    prev_hash = GENESIS_HASH
    position = start_index - 1
    for position, record in enumerate(records, start=start_index):
        try:
            index, claimed_prev, claimed_hash = (record[f] for f in _CHAIN_FIELDS)
        except KeyError as exc:
            return ChainVerdict(False, position, position, f"record lacks the field {exc}")
        if index != position:
            return ChainVerdict(
                False, position, position,
                f"record says index {index}; expected {position} (a record was removed, "
                "inserted or moved)",
            )  # fmt: skip
        if position > start_index and claimed_prev != prev_hash:
            return ChainVerdict(
                False, position, position, "prev_hash does not match the previous record's hash"
            )
        if position == start_index:
            if start_index == 0 and claimed_prev != GENESIS_HASH:
                return ChainVerdict(
                    False, position, position, "the first record must start the chain"
                )
            prev_hash = str(claimed_prev)
        if record_hash(prev_hash, record) != claimed_hash:
            return ChainVerdict(
                False,
                position,
                position,
                "content does not match its hash (the record was changed)",
            )
        prev_hash = str(claimed_hash)
    return ChainVerdict(True, position - start_index + 1)


def chain_of(record: Mapping[str, Any]) -> int:
    """The chain a record names; a record from before chains were split belongs to chain 0."""
    chain = record.get(CHAIN_FIELD, 0)
    return chain if isinstance(chain, int) and not isinstance(chain, bool) else -1


def verify_chains(records: Iterable[Mapping[str, Any]]) -> dict[int, ChainVerdict]:
    """Verify every chain in ``records`` (in log order within each chain), by chain number.

    A record whose ``chain`` is not a number is reported as chain -1, which never verifies.
    """
    by_chain: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        by_chain.setdefault(chain_of(record), []).append(record)
    verdicts = {k: verify_chain(rs) for k, rs in sorted(by_chain.items())}
    if -1 in verdicts:
        verdicts[-1] = ChainVerdict(False, len(by_chain[-1]), None, "its chain is not a number")
    return verdicts


def decisions(records: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every decision in ``records``, one dict each: the decision's fields over its record's.

    for d in decisions(records):
        print(d["alert_id"], d["partner"], d["decision"], d["reason"])
    """
    for record in records:
        entries = record.get("decisions")
        if not isinstance(entries, list):
            yield dict(record)
            continue
        alert = {k: v for k, v in record.items() if k != "decisions"}
        for entry in entries:
            yield {**alert, **entry} if isinstance(entry, Mapping) else alert
