"""Answering a lookup: hit or no-hit per token, as the requester's lookup agreements allow.

    engine = LookupEngine(store, agreements)
    outcome = engine.lookup("europol", tokens, lookup_id=uuid4(), channel="http", now=now)
    outcome.answer        # LookupAnswer: one TokenResult per token, in order
    outcome.notices       # one HitNotice per owner whose entries matched
    outcome.audit         # the body of the audit record

A requester sees only entries of the owners and types that a lookup agreement valid on the day
gives it, never its own country's (it asks about persons other countries reported); everything
else answers exactly as if absent, so a no-hit says nothing about what the agreements hide.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bus.agreements import Agreements
from bus.errors import BusError, ValidationError
from bus.models import HitNotice, LookupAnswer, LookupRequest
from bus.models._common import to_epoch_millis
from bus.models.lookup import MAX_TOKENS
from services.index.store import IndexStore


class LookupRefused(BusError):
    """A lookup that cannot be answered: the message names the problem (never a token)."""


class TooManyTokens(LookupRefused):
    """A batch of more tokens than one lookup may hold (HTTP answers 413)."""


@dataclass(frozen=True)
class LookupOutcome:
    answer: LookupAnswer
    notices: list[HitNotice]
    audit: dict[str, Any]


def check_tokens(requester: str, tokens: Sequence[object]) -> list[str]:
    """The tokens, checked like a ``LookupRequest``; ``LookupRefused`` names what is wrong."""
    if len(tokens) > MAX_TOKENS:
        raise TooManyTokens(
            f"{len(tokens)} tokens in one lookup; at most {MAX_TOKENS} are allowed: split the batch"
        )
    try:
        request = LookupRequest.model_validate(
            {"request_id": uuid.uuid4(), "requester": requester, "tokens": list(tokens)}
        )
    except Exception as exc:
        raise LookupRefused(_first_error(exc)) from None
    return request.tokens


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}"
    return str(exc)


class LookupEngine:
    """Answers lookups from the store; pure apart from reading it."""

    def __init__(
        self,
        store: IndexStore,
        agreements: Agreements,
        *,
        expiry_clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``expiry_clock`` says when entries count as expired: the wall clock unless given
        (only a replay of history, such as the demo's 2014 samples, sets it)."""
        self.store = store
        self.agreements = agreements
        self._expiry_clock = expiry_clock or (lambda: datetime.now(UTC))

    def check_requester(self, requester: str) -> None:
        if requester not in self.agreements.partners:
            raise LookupRefused(
                f"Unknown requester {requester!r}: not a partner of the agreements file"
            )

    def lookup(
        self,
        requester: str,
        tokens: Sequence[object],
        *,
        lookup_id: uuid.UUID,
        channel: str,
        now: datetime,
    ) -> LookupOutcome:
        self.check_requester(requester)
        checked = check_tokens(requester, tokens)
        scope = self.agreements.lookup_scope(requester, now.astimezone(UTC).date())
        own = self.agreements.partners[requester].country
        entries = self.store.entries_for(
            sorted(set(checked)), now_ms=to_epoch_millis(self._expiry_clock())
        )
        # The answer is validated in one call into pydantic-core, from plain dicts, rather
        # than model by model: on a batch of 100 tokens that was most of the engine's time.
        by_token: dict[str, list[dict[str, Any]]] = {}
        matched: dict[str, set[str]] = {}
        used: dict[str, set[str]] = {}
        for e in entries:
            allowed = scope.get((e.owner, e.alert_type))
            if not allowed or e.owner == own:
                continue  # exactly as if absent
            by_token.setdefault(e.token, []).append({
                "owner": e.owner, "alert_id": e.alert_id, "alert_type": e.alert_type,
                "role": e.role, "occurred_on": e.occurred_on, "place": e.place,
                "contact": e.contact,
            })  # fmt: skip
            matched.setdefault(e.owner, set()).add(e.alert_id)
            used.setdefault(e.owner, set()).update(allowed)
        results = []
        for token in checked:
            hits = by_token.get(token, [])
            if len(hits) > 1:
                hits = sorted(hits, key=lambda h: (h["owner"], h["occurred_on"], h["alert_id"],
                                                   h["role"]))  # fmt: skip
            results.append({"token": token, "hit": bool(hits), "hits": hits})
        answer = LookupAnswer.model_validate({"request_id": lookup_id, "requester": requester,
                                              "answered_at": now, "results": results})  # fmt: skip
        notices = [
            HitNotice.for_owner(owner, requester=requester, lookup_id=lookup_id,
                                agreement_ids=used[owner], alert_ids=map(uuid.UUID, ids),
                                now=now)
            for owner, ids in sorted(matched.items())
        ]  # fmt: skip
        audit = {
            "kind": "lookup", "lookup_id": str(lookup_id), "requester": requester,
            "channel": channel, "at": now.astimezone(UTC).isoformat(),
            "agreements_in_force": sorted({a for ids in scope.values() for a in ids}),
            "agreements": sorted({a for ids in used.values() for a in ids}),
            "tokens": len(checked), "hits": sum(r.hit for r in answer.results),
            "matches": sum(len(r.hits) for r in answer.results),
            "owners_notified": sorted(matched),
        }  # fmt: skip
        return LookupOutcome(answer, notices, audit)

    def refusal(
        self, requester: str, request_id: uuid.UUID | None, error: str, now: datetime
    ) -> LookupAnswer:
        """The answer to a request that cannot be answered, naming why."""
        return LookupAnswer(request_id=request_id, requester=requester, answered_at=now,
                            error=error, results=[])  # fmt: skip


def parse_request(engine: LookupEngine, requester: str, record: dict[str, Any]) -> LookupRequest:
    """A decoded ``lookup-request`` checked against the topic's requester."""
    try:
        request = LookupRequest.from_avro(record)
    except ValidationError as exc:
        raise LookupRefused(str(exc)) from None
    if request.requester != requester:
        raise LookupRefused(
            f"The request names requester {request.requester!r} but was written to the "
            f"requests topic of {requester!r}; a partner asks only as itself"
        )
    return request
