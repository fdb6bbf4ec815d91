"""``citizen-assistance``: one country's mission helping another's citizens in a crisis zone."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from bus.models._common import CountryCode, Int32, Record
from bus.models.base import Alert
from bus.models.person import PersonRef


class AssistanceAction(StrEnum):
    """Kind of assistance requested or offered."""

    CONSULAR_SUPPORT = "CONSULAR_SUPPORT"
    EVACUATION = "EVACUATION"
    SHELTER = "SHELTER"
    INFORMATION = "INFORMATION"
    OTHER = "OTHER"


class LocalisedText(Record):
    """A text in one language, tagged BCP 47 (``sr``, ``mk``, ``sq``, ``en``)."""

    language: str = Field(min_length=2)
    text: str


class CitizenAssistance(Alert):
    """Assistance in a crisis, e.g. Serbia's embassy in Baghdad helping Macedonian citizens."""

    alert_type: ClassVar[str] = "citizen-assistance"
    avro_name: ClassVar[str] = "eu.balkanalertbus.CitizenAssistance"

    crisis_country: CountryCode
    citizen_nationality: CountryCode
    estimated_citizens: Int32 = Field(ge=0)
    persons: list[PersonRef] = Field(default_factory=list)
    assisting_mission: str
    represented_country: CountryCode
    requested_action: AssistanceAction
    crisis_centre_contact: str | None = None
    texts: list[LocalisedText] = Field(default_factory=list)
