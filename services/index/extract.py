"""What the joint index keeps of an alert: one entry per tokenised person, and nothing personal.

An entry names the token, the owner (origin), the alert, the person's role in it, when and where,
and the agency to contact. Names, dates of birth, documents, markers and free text stay with the
owner: a requester who gets a hit asks the owner for them.

    for entry in index_entries(alert): ...
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.models import (
    Alert,
    CitizenAssistance,
    ForeignFighterTravel,
    IrregularCrossing,
    PersonRef,
    Readmission,
    TraffickingArrest,
)
from bus.models._common import to_epoch_millis


@dataclass(frozen=True)
class Entry:
    """One person reference of one alert, by token."""

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

    def row(self) -> tuple[str, str, str, str, str, str, str | None, str, int | None]:
        return (self.token, self.owner, self.alert_id, self.alert_type, self.role,
                self.occurred_on, self.place, self.contact, self.expires_at_ms)  # fmt: skip


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


def index_entries(alert: Alert) -> list[Entry]:
    """The entries of ``alert``: one per (token, role), persons without a token left out."""
    header = alert.header
    people, place = _people(alert)
    expires = to_epoch_millis(header.expires_at) if header.expires_at else None
    # Computed once per alert: an alert may name hundreds of persons.
    alert_id, occurred_on = str(header.alert_id), header.occurred_at.date().isoformat()
    seen: set[tuple[str, str]] = set()
    entries = []
    for role, person in people:
        token = person.identity_token
        if not token or (token, role) in seen:
            continue
        seen.add((token, role))
        entries.append(Entry(token, header.origin, alert_id, alert.alert_type, role, occurred_on,
                             place, header.issuing_agency, expires))  # fmt: skip
    return entries
