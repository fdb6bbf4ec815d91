"""``foreign-fighter-travel``: a suspected foreign fighter travelling to or from a conflict zone."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from bus.models._common import CountryCode, Record, UtcDatetime
from bus.models.base import Alert
from bus.models.person import PersonRef, TravelDocument


class TravelStatus(StrEnum):
    """Where the person is in their travel."""

    PLANNED = "PLANNED"
    DEPARTED = "DEPARTED"
    IN_TRANSIT = "IN_TRANSIT"
    IN_CONFLICT_ZONE = "IN_CONFLICT_ZONE"
    RETURNING = "RETURNING"
    RETURNED = "RETURNED"
    DETAINED = "DETAINED"
    UNKNOWN = "UNKNOWN"


class HitAction(StrEnum):
    """What an officer who meets the person is asked to do; unknown reads as ``INFORM``."""

    INFORM = "INFORM"
    DISCREET_CHECK = "DISCREET_CHECK"
    SPECIFIC_CHECK = "SPECIFIC_CHECK"
    ARREST = "ARREST"
    REFUSE_ENTRY = "REFUSE_ENTRY"


class TravelLeg(Record):
    """One leg of the journey, from one country to the next."""

    from_country: CountryCode
    to_country: CountryCode
    departed_at: UtcDatetime | None = None
    via: str | None = None
    document_used: TravelDocument | None = None


class ForeignFighterTravel(Alert):
    """A person travelling, e.g. from Bosnia and Herzegovina via Turkey towards Syria."""

    alert_type: ClassVar[str] = "foreign-fighter-travel"
    avro_name: ClassVar[str] = "eu.balkanalertbus.ForeignFighterTravel"

    person: PersonRef
    travel_status: TravelStatus
    legs: list[TravelLeg] = Field(default_factory=list)
    conflict_zone: str
    is_minor: bool
    action_on_hit: HitAction
