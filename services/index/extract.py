"""What the joint index keeps of an alert: one entry per tokenised person, and nothing personal.

An entry names the token, the owner (origin), the alert, the person's role in it, when and where,
and the agency to contact. Names, dates of birth, documents, markers and free text stay with the
owner: a requester who gets a hit asks the owner for them.

    indexed = IndexedAlert.of(alert)   # what the store needs of one verified alert, plain data
    indexed.entries                    # rows of the entries table, one per (token, role)

``IndexedAlert`` is made of tuples and strings only, so that the processes that decode and
verify ingress can hand it to the one that writes the database cheaply (it pickles small and
fast, unlike the alert model it is taken from).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from bus.models import (
    Alert,
    AlertStatus,
    CitizenAssistance,
    ForeignFighterTravel,
    IrregularCrossing,
    PersonRef,
    Readmission,
    TraffickingArrest,
)
from bus.models._common import to_epoch_millis
from services.index.indicators import alert_facts

#: A row of the entries table: token, owner, alert id, alert type, role, occurred on (ISO date),
#: place, contact, expires at (ms since the epoch, UTC; None for never).
EntryRow = tuple[str, str, str, str, str, str, str | None, str, int | None]
#: A row of the facts table: origin, alert id, indicator, month, dims (JSON array), value.
FactRow = tuple[str, str, str, str, str, int]


class Entry(NamedTuple):
    """One person reference of one alert, by token: a row of the entries table, by name."""

    token: str
    owner: str
    alert_id: str
    alert_type: str
    role: str
    occurred_on: str
    place: str | None
    contact: str
    #: When the alert expires, in ms since the epoch (UTC); None for never.
    expires_at_ms: int | None


class IndexedAlert(NamedTuple):
    """What the store folds in of one verified alert: its lineage and its rows."""

    origin: str
    alert_id: str
    #: ALERT, UPDATE or CANCEL.
    msg_type: str
    #: False for EXERCISE and TEST: such an alert adds no entries and no facts.
    actual: bool
    references: tuple[str, ...]
    entries: tuple[EntryRow, ...]
    facts: tuple[FactRow, ...]

    @classmethod
    def of(cls, alert: Alert) -> IndexedAlert:
        h = alert.header
        origin, aid = h.origin, str(h.alert_id)
        facts = tuple(
            (origin, aid, f.indicator, f.month, json.dumps(f.dims), f.value)
            for f in alert_facts(alert)
        )
        return cls(origin, aid, h.msg_type.value, h.status is AlertStatus.ACTUAL,
                   tuple(str(r) for r in h.references), entry_rows(alert), facts)  # fmt: skip


def _people(alert: Alert) -> tuple[list[tuple[str, PersonRef]], str | None]:
    """(role, person) pairs and the place of an alert, by type."""
    if isinstance(alert, IrregularCrossing):
        people = [("migrant", p) for p in alert.persons]
        if alert.suspected_facilitator is not None:
            people.append(("facilitator", alert.suspected_facilitator))
        return people, alert.crossing_point or alert.border_section
    if isinstance(alert, TraffickingArrest):
        return [("suspect", p) for p in alert.suspects], f"{alert.place} ({alert.place_country})"
    if isinstance(alert, ForeignFighterTravel):
        place = alert.legs[-1].to_country if alert.legs else alert.origin
        return [("traveller", alert.person)], place
    if isinstance(alert, Readmission):
        return [("returnee", p) for p in alert.persons], alert.transfer_point or (
            alert.requested_state
        )
    if isinstance(alert, CitizenAssistance):
        return [("citizen", p) for p in alert.persons], alert.crisis_country
    return [], None


def entry_rows(alert: Alert) -> tuple[EntryRow, ...]:
    """The entries of ``alert`` as table rows: one per (token, role), persons without a token
    left out. Plain tuples: an alert may name hundreds of persons."""
    header = alert.header
    people, place = _people(alert)
    expires = to_epoch_millis(header.expires_at) if header.expires_at else None
    alert_id, occurred_on = str(header.alert_id), header.occurred_at.date().isoformat()
    origin, alert_type, contact = header.origin, alert.alert_type, header.issuing_agency
    seen: set[tuple[str, str]] = set()
    rows: list[EntryRow] = []
    for role, person in people:
        token = person.identity_token
        if not token or (token, role) in seen:
            continue
        seen.add((token, role))
        rows.append((token, origin, alert_id, alert_type, role, occurred_on, place, contact,
                     expires))  # fmt: skip
    return tuple(rows)


def index_entries(alert: Alert) -> list[Entry]:
    """The entries of ``alert``: one per (token, role), persons without a token left out."""
    return [Entry._make(row) for row in entry_rows(alert)]
