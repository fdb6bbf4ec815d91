"""Typed alerts (pydantic), one model per ``schemas/<alert-type>/`` record, field for field.

>>> from bus.models import ALERT_MODELS
>>> ALERT_MODELS["readmission"].avro_name
'eu.balkanalertbus.Readmission'
"""

from __future__ import annotations

from bus.models._common import CountryCode, IsoDate, UtcDatetime
from bus.models.base import Alert
from bus.models.citizen_assistance import AssistanceAction, CitizenAssistance, LocalisedText
from bus.models.foreign_fighter_travel import (
    ForeignFighterTravel,
    HitAction,
    TravelLeg,
    TravelStatus,
)
from bus.models.header import (
    AlertHeader,
    AlertStatus,
    HandlingCode,
    MessageType,
    SourceReliability,
    Tlp,
)
from bus.models.irregular_crossing import CrossingOutcome, IrregularCrossing, NationalityCount
from bus.models.lookup import Hit, HitNotice, LookupAnswer, LookupRequest, TokenResult
from bus.models.notice import FollowUpType, WithdrawalNotice
from bus.models.person import (
    OriginalScript,
    PersonRef,
    Sex,
    TravelDocument,
    TravelDocumentKind,
    WarningMarker,
)
from bus.models.readmission import Readmission, ReadmissionStage
from bus.models.trafficking_arrest import TraffickingArrest

_MODELS: tuple[type[Alert], ...] = (
    CitizenAssistance,
    ForeignFighterTravel,
    IrregularCrossing,
    Readmission,
    TraffickingArrest,
)

#: Alert type (kebab-case, as in topic names) → its model, in alert-type order.
ALERT_MODELS: dict[str, type[Alert]] = {
    model.alert_type: model for model in sorted(_MODELS, key=lambda model: model.alert_type)
}

#: Every alert type, sorted.
ALERT_TYPES: tuple[str, ...] = tuple(ALERT_MODELS)

__all__ = [
    "ALERT_MODELS",
    "ALERT_TYPES",
    "Alert",
    "AlertHeader",
    "AlertStatus",
    "AssistanceAction",
    "CitizenAssistance",
    "CountryCode",
    "CrossingOutcome",
    "FollowUpType",
    "ForeignFighterTravel",
    "HandlingCode",
    "Hit",
    "HitAction",
    "HitNotice",
    "IrregularCrossing",
    "IsoDate",
    "LocalisedText",
    "LookupAnswer",
    "LookupRequest",
    "MessageType",
    "NationalityCount",
    "OriginalScript",
    "PersonRef",
    "Readmission",
    "ReadmissionStage",
    "Sex",
    "SourceReliability",
    "Tlp",
    "TokenResult",
    "TraffickingArrest",
    "TravelDocument",
    "TravelDocumentKind",
    "TravelLeg",
    "TravelStatus",
    "UtcDatetime",
    "WarningMarker",
    "WithdrawalNotice",
]
