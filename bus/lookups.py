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
    lid, raw = parser.entry(raw, _LOOKUP_KEYS, f"lookups[{i}]", "lookup agreement")
    requesters = parser.partner_refs(raw, "requesters", "requester", partners)
    owners = parser.countries(raw, "owners")
    for owner in sorted(owners - publishers):
        parser.fail(
            f"owner {owner!r} publishes nothing: no partner has country {owner!r}, so the index "
            "holds no entries of it"
        )
    valid_from, valid_until = parser.validity(raw)
    return LookupAgreement(
        id=lid,
        title=parser.text(raw, "title"),
        legal_basis=parser.text(raw, "legal_basis"),
        requesters=requesters,
        owners=owners,
        types=parser.types(parser.items(raw, "types")),
        purpose=parser.text(raw, "purpose"),
        valid_from=valid_from,
        valid_until=valid_until,
    )
