"""``irregular-crossing``: an irregular border crossing, or an attempt, seen by border police."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from bus.models._common import CountryCode, Int32, Record, UtcDatetime
from bus.models.base import Alert
from bus.models.person import PersonRef


class CrossingOutcome(StrEnum):
    """What happened to the persons after detection."""

    APPREHENDED = "APPREHENDED"
    REFUSED_ENTRY = "REFUSED_ENTRY"
    RETURNED_UNDER_READMISSION = "RETURNED_UNDER_READMISSION"
    ASYLUM_PROCEDURE = "ASYLUM_PROCEDURE"
    NOT_INTERCEPTED = "NOT_INTERCEPTED"
    UNKNOWN = "UNKNOWN"


class NationalityCount(Record):
    """How many of the persons detected hold one nationality."""

    nationality: CountryCode
    count: Int32 = Field(ge=0)


class IrregularCrossing(Alert):
    """A group detected crossing, e.g. from North Macedonia into Serbia near Tabanovce."""

    alert_type: ClassVar[str] = "irregular-crossing"
    avro_name: ClassVar[str] = "eu.balkanalertbus.IrregularCrossing"

    detected_at: UtcDatetime
    border_section: str
    crossing_point: str | None = None
    direction_from: CountryCode
    direction_to: CountryCode
    head_count: Int32 = Field(ge=0)
    nationality_breakdown: list[NationalityCount] = Field(default_factory=list)
    persons: list[PersonRef] = Field(default_factory=list)
    suspected_facilitator: PersonRef | None = None
    asylum_requests: Int32 = Field(ge=0)
    outcome: CrossingOutcome
