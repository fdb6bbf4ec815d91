"""The indicators of ``docs/statistics.md``: their definitions, and the facts one alert adds.

Every indicator counts, per month of ``occurred_at`` (UTC), a unit (events, persons, requests) by
its dimensions. An alert contributes facts; the store keeps only the facts of the latest version
of each alert, removes those of a cancelled one and never takes an EXERCISE or TEST. A missing
value is the explicit dimension value ``unknown``.

    for fact in alert_facts(alert): ...       # Fact(indicator, month, dims, value)
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.models import (
    Alert,
    CitizenAssistance,
    ForeignFighterTravel,
    IrregularCrossing,
    Readmission,
    TraffickingArrest,
)

UNKNOWN = "unknown"
#: Victims of an arrest whose alert names several nationalities without a count for each.
MIXED = "mixed"


@dataclass(frozen=True)
class Indicator:
    id: str
    title: str
    unit: str
    alert_type: str
    dimensions: tuple[str, ...]


INDICATORS: tuple[Indicator, ...] = (
    Indicator("irregular-crossing-events", "Irregular crossings detected (events)", "events",
              "irregular-crossing", ("reporting_country", "border_section", "direction")),
    Indicator("irregular-crossing-persons", "Persons detected crossing irregularly", "persons",
              "irregular-crossing",
              ("reporting_country", "nationality", "border_section", "direction")),
    Indicator("asylum-requests-at-detection", "Asylum requests made at detection", "requests",
              "irregular-crossing", ("reporting_country", "border_section")),
    Indicator("readmission-requests", "Readmission requests", "requests", "readmission",
              ("requesting_state", "requested_state", "stage")),
    Indicator("readmission-persons", "Persons in readmission requests", "persons", "readmission",
              ("requesting_state", "requested_state", "stage")),
    Indicator("trafficking-arrests", "Trafficking and smuggling arrests (events)", "events",
              "trafficking-arrest", ("reporting_country", "place_country")),
    Indicator("trafficking-suspects", "Suspects arrested for trafficking or smuggling",
              "persons", "trafficking-arrest", ("reporting_country", "nationality")),
    Indicator("trafficking-victims", "Victims found at trafficking arrests", "persons",
              "trafficking-arrest", ("reporting_country", "nationality")),
    Indicator("trafficking-routes", "Trafficking arrests by route", "events",
              "trafficking-arrest", ("route",)),
    Indicator("foreign-fighter-travel", "Foreign-fighter travel reported", "persons",
              "foreign-fighter-travel", ("reporting_country", "travel_status")),
    Indicator("citizen-assistance-requests", "Citizen-assistance requests", "requests",
              "citizen-assistance", ("crisis_country", "citizen_nationality", "requested_action")),
    Indicator("citizen-assistance-citizens", "Citizens concerned by assistance requests",
              "persons", "citizen-assistance",
              ("crisis_country", "citizen_nationality", "requested_action")),
)  # fmt: skip
BY_ID = {i.id: i for i in INDICATORS}


@dataclass(frozen=True)
class Fact:
    """``value`` units of ``indicator`` in ``month`` (YYYY-MM) for one combination of ``dims``."""

    indicator: str
    month: str
    dims: tuple[str, ...]
    value: int


def _text(value: str | None) -> str:
    value = (value or "").strip()
    return value or UNKNOWN


def alert_facts(alert: Alert) -> list[Fact]:
    """The facts ``alert`` contributes; zero counts are left out."""
    month = alert.header.occurred_at.strftime("%Y-%m")
    origin = alert.origin
    out: list[tuple[str, tuple[str, ...], int]] = []
    if isinstance(alert, IrregularCrossing):
        section = _text(alert.border_section)
        direction = f"{alert.direction_from}-{alert.direction_to}"
        out.append(("irregular-crossing-events", (origin, section, direction), 1))
        named = 0
        by_nationality: dict[str, int] = {}
        for row in alert.nationality_breakdown:
            by_nationality[row.nationality] = by_nationality.get(row.nationality, 0) + row.count
            named += row.count
        if alert.head_count > named:
            by_nationality[UNKNOWN] = by_nationality.get(UNKNOWN, 0) + alert.head_count - named
        for nationality, count in sorted(by_nationality.items()):
            out.append(("irregular-crossing-persons", (origin, nationality, section, direction),
                        count))  # fmt: skip
        out.append(("asylum-requests-at-detection", (origin, section), alert.asylum_requests))
    elif isinstance(alert, Readmission):
        dims: tuple[str, ...] = (
            alert.requesting_state,
            alert.requested_state,
            alert.stage.value.lower(),
        )
        out.append(("readmission-requests", dims, 1))
        out.append(("readmission-persons", dims, alert.person_count))
    elif isinstance(alert, TraffickingArrest):
        out.append(("trafficking-arrests", (origin, alert.place_country), 1))
        for suspect in alert.suspects:
            out.append(("trafficking-suspects", (origin, suspect.nationality or UNKNOWN), 1))
        nationalities = sorted(set(alert.victim_nationalities))
        victims = (nationalities[0] if len(nationalities) == 1
                   else MIXED if nationalities else UNKNOWN)  # fmt: skip
        out.append(("trafficking-victims", (origin, victims), alert.victim_count))
        route = ">".join(alert.route) if alert.route else UNKNOWN
        out.append(("trafficking-routes", (route,), 1))
    elif isinstance(alert, ForeignFighterTravel):
        status = alert.travel_status.value.lower()
        out.append(("foreign-fighter-travel", (origin, status), 1))
    elif isinstance(alert, CitizenAssistance):
        dims = (alert.crisis_country, alert.citizen_nationality,
                alert.requested_action.value.lower())  # fmt: skip
        out.append(("citizen-assistance-requests", dims, 1))
        out.append(("citizen-assistance-citizens", dims, alert.estimated_citizens))
    merged: dict[tuple[str, tuple[str, ...]], int] = {}
    for indicator, dims, value in out:
        merged[(indicator, dims)] = merged.get((indicator, dims), 0) + value
    return [Fact(i, month, d, v) for (i, d), v in merged.items() if v > 0]
