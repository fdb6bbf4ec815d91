"""A person named in an alert; every field is nullable so that a redacted copy stays valid."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from bus.models._common import CountryCode, IsoDate, Record


class TravelDocumentKind(StrEnum):
    """Kind of travel or identity document; an unknown newer symbol reads as ``OTHER``."""

    PASSPORT = "PASSPORT"
    IDENTITY_CARD = "IDENTITY_CARD"
    RESIDENCE_PERMIT = "RESIDENCE_PERMIT"
    REFUGEE_TRAVEL_DOCUMENT = "REFUGEE_TRAVEL_DOCUMENT"
    EMERGENCY_TRAVEL_DOCUMENT = "EMERGENCY_TRAVEL_DOCUMENT"
    OTHER = "OTHER"


class OriginalScript(StrEnum):
    """Script of the ``*_original`` names."""

    LATIN = "LATIN"
    CYRILLIC = "CYRILLIC"
    GREEK = "GREEK"
    ARABIC = "ARABIC"
    OTHER = "OTHER"


class Sex(StrEnum):
    """Sex as recorded in the person's document (ICAO 9303)."""

    F = "F"
    M = "M"
    X = "X"
    UNKNOWN = "UNKNOWN"


class WarningMarker(StrEnum):
    """A warning for officers who meet the person."""

    ARMED = "ARMED"
    VIOLENT = "VIOLENT"
    ESCAPE_RISK = "ESCAPE_RISK"
    SUICIDE_RISK = "SUICIDE_RISK"
    HEALTH_RISK = "HEALTH_RISK"
    OTHER = "OTHER"


class TravelDocument(Record):
    """A travel or identity document; all but its kind is personal data."""

    kind: TravelDocumentKind
    number: str | None = None
    issuing_country: CountryCode | None = None
    expires_on: IsoDate | None = None


class PersonRef(Record):
    """A person, with names in Latin script and in the script of their documents.

    >>> PersonRef(family_name="Petrović", family_name_original="Петровић",
    ...           original_script="CYRILLIC", nationality="RS").nationality
    'rs'
    """

    identity_token: str | None = None
    family_name: str | None = None
    given_names: str | None = None
    family_name_original: str | None = None
    given_names_original: str | None = None
    original_script: OriginalScript | None = None
    date_of_birth: IsoDate | None = None
    nationality: CountryCode | None = None
    sex: Sex | None = None
    travel_document: TravelDocument | None = None
    warning_markers: list[WarningMarker] = Field(default_factory=list)
