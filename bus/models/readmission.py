"""``readmission``: persons handed back under a readmission agreement, or a joint return."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from bus.models._common import CountryCode, Int32, UtcDatetime
from bus.models.base import Alert
from bus.models.person import PersonRef


class ReadmissionStage(StrEnum):
    """Stage of the readmission procedure."""

    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    TRANSFER_SCHEDULED = "TRANSFER_SCHEDULED"
    TRANSFERRED = "TRANSFERRED"
    UNKNOWN = "UNKNOWN"


class Readmission(Alert):
    """A readmission request and its progress, e.g. Serbia asking North Macedonia."""

    alert_type: ClassVar[str] = "readmission"
    avro_name: ClassVar[str] = "eu.balkanalertbus.Readmission"

    requesting_state: CountryCode
    requested_state: CountryCode
    person_count: Int32 = Field(ge=0)
    persons: list[PersonRef] = Field(default_factory=list)
    legal_basis: str
    stage: ReadmissionStage
    transfer_at: UtcDatetime | None = None
    transfer_point: str | None = None
    joint_return_operation: str | None = None
