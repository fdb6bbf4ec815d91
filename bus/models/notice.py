"""The withdrawal notice: what an earlier recipient gets when a follow-up is not shared with it.

An UPDATE or CANCEL obeys the sharing rules like any alert. A partner that received the alert it
supersedes or withdraws, but whom the rules deny the follow-up itself, must still stop acting on
what it holds: the bus writes it this notice instead, signed by ``hub``. It names identifiers
only (origin, alert ids, message type, times), never a field of the follow-up's content.

    notice = WithdrawalNotice.for_partner(follow_up, partner_id="mk", alert_ids=[...], now=now)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Self

import pydantic

from bus.models._common import ContractRecord, CountryCode, UtcDatetime
from bus.models.base import Alert

#: Notice ids are UUIDv5 in this namespace over (origin, follow-up id, partner id).
_NOTICE_NAMESPACE = uuid.UUID("6f1c0d52-3a8e-5b47-9c21-7e0f4d2a9b63")


class FollowUpType(StrEnum):
    """The kind of follow-up a notice stands for; an unknown newer symbol reads as ``CANCEL``."""

    UPDATE = "UPDATE"
    CANCEL = "CANCEL"


class WithdrawalNotice(ContractRecord):
    """``schemas/withdrawal-notice/v1.avsc``, field for field."""

    record_type: ClassVar[str] = "withdrawal-notice"
    avro_name: ClassVar[str] = "eu.balkanalertbus.WithdrawalNotice"

    notice_id: uuid.UUID
    origin: CountryCode
    alert_ids: list[uuid.UUID] = pydantic.Field(min_length=1)
    follow_up_id: uuid.UUID
    msg_type: FollowUpType
    issued_at: UtcDatetime
    noticed_at: UtcDatetime

    @classmethod
    def for_partner(
        cls, follow_up: Alert, *, partner_id: str, alert_ids: Iterable[str], now: datetime
    ) -> Self:
        """The notice ``partner_id`` gets for ``follow_up``, naming the alerts it received."""
        header = follow_up.header
        key = f"{header.origin}:{header.alert_id}:{partner_id}"
        return cls(
            notice_id=uuid.uuid5(_NOTICE_NAMESPACE, key),
            origin=header.origin,
            alert_ids=sorted(uuid.UUID(a) for a in alert_ids),
            follow_up_id=header.alert_id,
            msg_type=FollowUpType(header.msg_type.value),
            issued_at=header.issued_at,
            noticed_at=now,
        )
