"""The header every alert carries: identity, origin, timing, status and handling."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from bus.models._common import CountryCode, Int32, Record, UtcDatetime


class AlertStatus(StrEnum):
    """Whether an alert is real; an unknown newer symbol reads as ``TEST``."""

    ACTUAL = "ACTUAL"
    EXERCISE = "EXERCISE"
    TEST = "TEST"


class MessageType(StrEnum):
    """A new alert, or an update or cancellation of the alerts in ``references``."""

    ALERT = "ALERT"
    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


class Tlp(StrEnum):
    """Traffic Light Protocol 2.0 label; an unknown newer symbol reads as ``RED``."""

    CLEAR = "CLEAR"
    GREEN = "GREEN"
    AMBER = "AMBER"
    AMBER_STRICT = "AMBER_STRICT"
    RED = "RED"


class HandlingCode(StrEnum):
    """SIENA-style handling code (H0 none … H3 other restrictions)."""

    H0 = "H0"
    H1 = "H1"
    H2 = "H2"
    H3 = "H3"


class SourceReliability(StrEnum):
    """Source reliability of the 4x4 evaluation; ``X`` cannot be assessed."""

    A = "A"
    B = "B"
    C = "C"
    X = "X"


class AlertHeader(Record):
    """Identity, origin, timing and handling of one alert (after CAP 1.2, SIENA and TLP 2.0).

    >>> header = AlertHeader(
    ...     alert_id="0b6c7a8e-3f1d-4c52-9a0e-5d2f4b7c9e11", origin="RS",
    ...     issuing_agency="Border Police Administration",
    ...     issued_at="2014-07-29T10:15:00Z", occurred_at="2014-07-29T04:40:00+02:00",
    ...     status="ACTUAL", msg_type="ALERT", tlp="AMBER",
    ...     source_reliability="B", information_accuracy=2,
    ... )
    >>> header.origin, header.occurred_at.isoformat()
    ('rs', '2014-07-29T02:40:00+00:00')
    """

    alert_id: uuid.UUID
    origin: CountryCode
    issuing_agency: str
    issued_at: UtcDatetime
    occurred_at: UtcDatetime
    status: AlertStatus
    msg_type: MessageType
    references: list[uuid.UUID] = Field(default_factory=list)
    case_ref: str | None = None
    tlp: Tlp
    handling_codes: list[HandlingCode] = Field(default_factory=list)
    source_reliability: SourceReliability
    information_accuracy: Int32 = Field(ge=1, le=4)
    expires_at: UtcDatetime | None = None
    explicit_recipients: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if self.msg_type is not MessageType.ALERT and not self.references:
            raise ValueError(
                f"a {self.msg_type.value} must name the alerts it refers to in 'references', "
                f"got none; send an ALERT for a new event"
            )
        if self.alert_id in self.references:
            raise ValueError(f"alert {self.alert_id} lists itself in 'references'")
        if self.expires_at is not None and self.expires_at <= self.issued_at:
            raise ValueError(
                f"expected 'expires_at' after 'issued_at' ({self.issued_at.isoformat()}), "
                f"got {self.expires_at.isoformat()}"
            )
        return self
