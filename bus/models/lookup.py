"""The joint index's records: a lookup request, its answer, and the hit notice an owner gets.

A requester asks whether persons (by ``identity_token``) were reported by another country; the
bus answers hit or no-hit and, on a hit, which owner holds which alert and whom to contact, never
the person's data. Every owner whose entries matched gets a ``HitNotice`` in its inbox.

    request = LookupRequest(request_id=uuid.uuid4(), requester="mk", tokens=["it1.…"])
    notice = HitNotice.for_owner("rs", requester="mk", lookup_id=..., agreement_ids=[...],
                                 alert_ids=[...], now=now)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, Field

from bus.models._common import ContractRecord, CountryCode, IsoDate, Record, UtcDatetime

#: An identity token as the adapters make it: ``it1.`` and 32 lower-case hex digits.
TOKEN_PATTERN = re.compile(r"it1\.[0-9a-f]{32}")
#: The most tokens one lookup may carry (HTTP, Kafka and the command line alike).
MAX_TOKENS = 1000
#: Hit notice ids are UUIDv5 in this namespace over (lookup id, owner).
_HIT_NAMESPACE = uuid.UUID("2b7f4e0a-91c3-5d6e-8a14-3c5d7e9f0b21")
_PARTNER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _token(value: str) -> str:
    if not TOKEN_PATTERN.fullmatch(value):
        # The value is not repeated: a malformed token may be a name someone pasted.
        raise ValueError(
            "expected an identity token: 'it1.' followed by 32 lower-case hex digits, as the "
            f"adapters make them (got {len(value)} characters that are not one)"
        )
    return value


def _partner(value: str) -> str:
    if not _PARTNER_ID.fullmatch(value):
        raise ValueError(f"expected a partner id (a-z, 0-9, '-'), got {value!r}")
    return value


IdentityToken = Annotated[str, AfterValidator(_token)]
PartnerId = Annotated[str, AfterValidator(_partner)]


class LookupRequest(ContractRecord):
    """``schemas/lookup-request/v1.avsc``, field for field."""

    record_type: ClassVar[str] = "lookup-request"
    avro_name: ClassVar[str] = "eu.balkanalertbus.LookupRequest"

    request_id: uuid.UUID
    requester: PartnerId
    tokens: list[IdentityToken] = Field(min_length=1, max_length=MAX_TOKENS)


class Hit(Record):
    """One alert of one owner naming a person with the token looked up."""

    owner: CountryCode
    alert_id: uuid.UUID
    alert_type: str
    role: str
    occurred_on: IsoDate
    place: str | None = None
    contact: str


class TokenResult(Record):
    """Hit or no-hit for one token."""

    token: str
    hit: bool
    hits: list[Hit]


class LookupAnswer(ContractRecord):
    """``schemas/lookup-answer/v1.avsc``, field for field."""

    record_type: ClassVar[str] = "lookup-answer"
    avro_name: ClassVar[str] = "eu.balkanalertbus.LookupAnswer"

    request_id: uuid.UUID | None = None
    requester: str
    answered_at: UtcDatetime
    error: str | None = None
    results: list[TokenResult]


class HitNotice(ContractRecord):
    """``schemas/hit-notice/v1.avsc``, field for field."""

    record_type: ClassVar[str] = "hit-notice"
    avro_name: ClassVar[str] = "eu.balkanalertbus.HitNotice"

    notice_id: uuid.UUID
    owner: CountryCode
    requester: str
    agreement_ids: list[str]
    lookup_id: uuid.UUID
    looked_up_at: UtcDatetime
    alert_ids: list[uuid.UUID] = Field(min_length=1)

    @classmethod
    def for_owner(
        cls,
        owner: str,
        *,
        requester: str,
        lookup_id: uuid.UUID,
        agreement_ids: Iterable[str],
        alert_ids: Iterable[uuid.UUID],
        now: datetime,
    ) -> Self:
        """The notice ``owner`` gets for one lookup that matched its ``alert_ids``."""
        return cls(
            notice_id=uuid.uuid5(_HIT_NAMESPACE, f"{lookup_id}:{owner}"),
            owner=owner,
            requester=requester,
            agreement_ids=sorted(set(agreement_ids)),
            lookup_id=lookup_id,
            looked_up_at=now,
            alert_ids=sorted(set(alert_ids)),
        )
