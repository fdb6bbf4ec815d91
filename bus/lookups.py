"""Lookup agreements: who may ask the joint index about whose persons, for which alert types.

The agreements file's optional ``lookups:`` section lists them; they are checked at start-up with
the rest of the file (``bus.agreements``). A lookup sees only the entries of the owners and types
that an agreement valid on the day of the lookup gives its requester; everything else answers
exactly as if absent.

    scope = agreements.lookup_scope("mk", today)     # {(owner, type): (agreement ids, ...)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bus.agreements import Partner, _Parser

_LOOKUP_KEYS = {
    "id": True, "title": True, "legal_basis": True, "requesters": True, "owners": True,
    "types": True, "purpose": True, "valid_from": True, "valid_until": True,
}  # fmt: skip

#: (owner, alert type) → the ids of the lookup agreements that show it, sorted.
LookupScope = Mapping[tuple[str, str], tuple[str, ...]]


@dataclass(frozen=True)
class LookupAgreement:
    """Requesters may learn hit/no-hit on the entries of ``owners`` of ``types``."""

    id: str
    title: str
    legal_basis: str
    requesters: frozenset[str]
    owners: frozenset[str]
    types: frozenset[str]
    purpose: str
    valid_from: date
    valid_until: date | None = None

    def valid_on(self, day: date) -> bool:
        """Whether ``day`` lies in the validity period, both ends included."""
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)


def lookup_scope(lookups: tuple[LookupAgreement, ...], requester: str, day: date) -> LookupScope:
    """What ``requester`` may see on ``day``: (owner, type) → agreement ids. Empty: nothing."""
    scope: dict[tuple[str, str], list[str]] = {}
    for agreement in lookups:
        if requester in agreement.requesters and agreement.valid_on(day):
            for owner in agreement.owners:
                for alert_type in agreement.types:
                    scope.setdefault((owner, alert_type), []).append(agreement.id)
    return {k: tuple(sorted(v)) for k, v in scope.items()}


def parse_lookups(
    parser: _Parser, raw: object, partners: Mapping[str, Partner]
) -> tuple[LookupAgreement, ...]:
    """Check the ``lookups:`` section (a list, or absent); errors name the lookup agreement."""
    parser.where = ""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        parser.fail(f"'lookups' must be a list of lookup agreements, got {type(raw).__name__}")
    publishers = {p.country for p in partners.values() if p.country}
    out: list[LookupAgreement] = []
    for i, item in enumerate(raw):
        agreement = _lookup(parser, i, item, partners, publishers)
        if any(a.id == agreement.id for a in out):
            parser.fail("duplicate lookup agreement id; each needs its own id")
        out.append(agreement)
    return tuple(out)


def _lookup(
    parser: _Parser, i: int, raw: Any, partners: Mapping[str, Partner], publishers: set[str]
) -> LookupAgreement:
    from bus.agreements import _ID, _did_you_mean

    parser.where = f"lookups[{i}]: "
    if not isinstance(raw, dict):
        parser.fail(f"expected a mapping with {', '.join(_LOOKUP_KEYS)}, got {raw!r}")
    lid = raw.get("id")
    if isinstance(lid, str) and _ID.fullmatch(lid):
        parser.where = f"lookup agreement {lid!r}: "
    parser.check_keys(raw, _LOOKUP_KEYS)
    if not isinstance(lid, str) or not _ID.fullmatch(lid):
        parser.fail(f"id must be lower-case letters, digits and dashes, got {lid!r}")
    requesters = parser.items(raw, "requesters")
    for pid in requesters:
        if not isinstance(pid, str) or pid not in partners:
            hint = _did_you_mean(str(pid), partners)
            parser.fail(f"requester {pid!r} is not a partner in 'partners'{hint}")
    owners = frozenset(parser.country(o, "owners") for o in parser.items(raw, "owners"))
    for owner in sorted(owners - publishers):
        parser.fail(
            f"owner {owner!r} publishes nothing: no partner has country {owner!r}, so the index "
            "holds no entries of it"
        )
    valid_from = parser.date(raw["valid_from"], "valid_from")
    valid_until = raw["valid_until"]
    if valid_until is not None:
        valid_until = parser.date(valid_until, "valid_until")
        if valid_until < valid_from:
            parser.fail(f"valid_until {valid_until} is before valid_from {valid_from}")
    return LookupAgreement(
        id=lid,
        title=parser.text(raw, "title"),
        legal_basis=parser.text(raw, "legal_basis"),
        requesters=frozenset(requesters),
        owners=owners,
        types=parser.types(parser.items(raw, "types")),
        purpose=parser.text(raw, "purpose"),
        valid_from=valid_from,
        valid_until=valid_until,
    )
