"""Who receives an alert, and without which fields: the sharing rules as pure code.

    for decision in decide(alert, agreements):
        if decision.deliver:
            copy = redact_alert(alert, decision.redact) if decision.redact else alert
            ...  # to partner.<decision.partner_id>.inbox
        audit(decision)  # delivered or denied, under which agreements, why

The rules (DESIGN.md, "Sharing agreements"), deny by default:

1. The origin never gets its own alert back (a partner whose ``country`` is the origin).
2. An alert whose ``expires_at`` has passed when it is routed reaches nobody (``expired``).
3. An agreement *matches* partner P when it names the alert's origin, P and its type, is valid
   on the UTC date of ``header.occurred_at``, allows the alert's TLP
   (CLEAR < GREEN < AMBER < AMBER_STRICT < RED) and carries its status (``ACTUAL`` unless the
   agreement's ``statuses`` name ``EXERCISE`` or ``TEST`` too). No matching agreement: denied.
4. A non-empty ``header.explicit_recipients`` narrows delivery to those of the entitled partners.
5. TLP:RED goes only to explicit recipients that a matching agreement allows at RED, so a RED
   alert naming no explicit recipient reaches nobody.
6. A field is removed when every matching agreement removes it (or a field around it).
7. An UPDATE or CANCEL follows the same rules. A partner that received the alert(s) it
   references (``referenced_recipients``, same origin only) and whom the rules deny the
   follow-up gets a withdrawal notice instead (``notice``): identifiers, no content.

``decide`` is called for every alert and every partner, so it looks agreements up in the index
``Agreements`` builds by origin and alert type instead of scanning them all; ``Decider`` goes
further and decides once for every alert of the same shape (origin, type, TLP, status, day,
explicit recipients, earlier recipients), which is what the rules look at.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from bus.agreements import Agreement, Agreements
from bus.models import Alert, MessageType, Tlp
from bus.redact import covers, minimal_paths


@dataclass(frozen=True)
class Decision:
    """What one partner gets for one alert: a copy (without ``redact``), a withdrawal notice, or
    nothing, and why."""

    partner_id: str
    deliver: bool
    #: The agreements the decision rests on, sorted: those that match (for a denial by
    #: ``explicit_recipients`` or TLP:RED, those that would have allowed it); empty when none.
    agreement_ids: tuple[str, ...]
    #: Field paths to remove from this partner's copy, sorted, none covering another.
    redact: tuple[str, ...]
    reason: str
    #: Instead of the content: a withdrawal notice (identifiers only) for an earlier recipient
    #: of the alert this follow-up updates or cancels, whom the rules deny the follow-up.
    notice: bool = False
    #: Denied because the alert's ``expires_at`` had passed when it was routed.
    expired: bool = False
    #: Which rule decided, in one word of ``RULES`` (``reason`` says it in full): bounded, so
    #: that denials can be counted by it.
    rule: str = "covered"

    @property
    def outcome(self) -> str:
        """``delivered``, ``notice``, ``expired`` or ``denied``: the audit's word for it."""
        if self.deliver:
            return "delivered"
        if self.notice:
            return "notice"
        return "expired" if self.expired else "denied"


#: The rules a decision names: ``covered`` for a delivery, the others for a denial.
RULES = (
    "covered", "origin", "expired", "no-agreement", "not-in-force", "status", "tlp",
    "red-needs-explicit", "not-explicit-recipient",
)  # fmt: skip


def decide(
    alert: Alert,
    agreements: Agreements,
    *,
    referenced_recipients: frozenset[str] | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """The decision for every partner in ``agreements.partners``, sorted by partner id.

    ``now`` is when the alert is routed (default: the current time); an alert whose
    ``expires_at`` is not after it reaches nobody.

    ``referenced_recipients`` is, for an UPDATE or CANCEL, the set of partners that received the
    alert(s) it references; the policy has no memory, so the caller (the fan-out, from its
    state) supplies it, and only for alerts of the follow-up's own origin. The follow-up itself
    obeys the rules like any alert: an earlier recipient gets its content only when the rules
    allow that follow-up now (its TLP, status, explicit recipients, expiry, the agreements in
    force and the removals they require). An earlier recipient the rules deny gets a withdrawal
    notice instead (``notice``), so that nobody keeps acting on withdrawn information and nobody
    receives content the rules would deny. The origin still gets nothing back. For an ALERT
    ``referenced_recipients`` is ignored.
    """
    header = alert.header
    routed_at = now if now is not None else datetime.now(UTC)
    expired = header.expires_at is not None and header.expires_at <= routed_at
    referenced = (
        referenced_recipients
        if referenced_recipients is not None and header.msg_type is not MessageType.ALERT
        else frozenset()
    )
    covering = agreements.covering(header.origin, alert.alert_type)
    decisions: list[Decision] = []
    for pid, partner in agreements.partners.items():
        if partner.country == header.origin:
            decisions.append(
                _deny(pid, (), "origin: the origin does not receive its own alert", "origin")
            )
            continue
        decision = _decide_one(alert, pid, covering, expired, routed_at)
        if pid in referenced:
            decision = _follow_up(decision)
        decisions.append(decision)
    return decisions


class Decider:
    """``decide``, remembering the decisions for each shape of alert the rules distinguish.

        decider = Decider(agreements)
        decisions = decider.decide(alert, referenced_recipients=..., now=...)

    An alert that has expired is decided afresh (its reason names the times). The memory is
    bounded: it starts again empty after ``max_shapes`` shapes.
    """

    def __init__(self, agreements: Agreements, *, max_shapes: int = 4096) -> None:
        self.agreements = agreements
        self._max_shapes = max_shapes
        self._known: dict[Hashable, list[Decision]] = {}

    def decide(
        self,
        alert: Alert,
        *,
        referenced_recipients: frozenset[str] | None = None,
        now: datetime | None = None,
    ) -> list[Decision]:
        header = alert.header
        routed_at = now if now is not None else datetime.now(UTC)
        if header.expires_at is not None and header.expires_at <= routed_at:
            return decide(alert, self.agreements, referenced_recipients=referenced_recipients,
                          now=routed_at)  # fmt: skip
        follow_up = header.msg_type is not MessageType.ALERT
        shape = (
            header.origin, alert.alert_type, header.tlp, header.status,
            header.occurred_at.astimezone(UTC).date(), tuple(header.explicit_recipients),
            referenced_recipients if follow_up and referenced_recipients else None,
        )  # fmt: skip
        known = self._known.get(shape)
        if known is None:
            if len(self._known) >= self._max_shapes:
                self._known.clear()
            known = self._known[shape] = decide(
                alert, self.agreements, referenced_recipients=referenced_recipients,
                now=routed_at,
            )  # fmt: skip
        return known


def _decide_one(
    alert: Alert, pid: str, covering: Sequence[Agreement], expired: bool, now: datetime
) -> Decision:
    """The rules for one partner (everything but the origin and the follow-up rule)."""
    header = alert.header
    tlp, status = header.tlp, header.status
    day = header.occurred_at.astimezone(UTC).date()
    explicit = header.explicit_recipients
    named = [a for a in covering if pid in a.recipients]
    matching = [a for a in named if a.valid_on(day) and a.allows(tlp) and a.carries(status)]
    if expired:
        assert header.expires_at is not None
        reason = f"expired at {header.expires_at.isoformat()}, before it was routed ({_iso(now)})"
        return Decision(pid, False, _ids(matching), (), reason, expired=True, rule="expired")
    if not matching:
        return _deny(pid, (), *_why_none(alert, pid, day, named))
    if tlp is Tlp.RED and not explicit:
        return _deny(pid, matching, _RED_NEEDS_EXPLICIT, "red-needs-explicit")
    if explicit and pid not in explicit:
        return _deny(pid, matching, "not an explicit recipient", "not-explicit-recipient")
    ids = _ids(matching)
    return Decision(pid, True, ids, _removed_by_all(matching), f"covered by {', '.join(ids)}")


_RED_NEEDS_EXPLICIT = "TLP:RED goes only to explicit recipients; the alert names none"


def _follow_up(decision: Decision) -> Decision:
    """An earlier recipient: the follow-up's content if the rules allow it, else a notice."""
    why = "received the alert this one updates or cancels"
    if decision.deliver:
        return replace(decision, reason=f"{why}; {decision.reason}")
    return replace(
        decision, notice=True, redact=(),
        reason=f"{why}, but the rules deny this follow-up ({decision.reason}): "
        "a withdrawal notice instead",
    )  # fmt: skip


def _removed_by_all(matching: Sequence[Agreement]) -> tuple[str, ...]:
    """The paths every agreement removes, itself or through a field around it.

    Each agreement removes whole subtrees; the intersection of two subtrees is the deeper one
    when one lies inside the other, else nothing, so the answer is among the listed paths.
    """
    if len(matching) == 1:
        return minimal_paths(matching[0].redact)
    candidates = {p for a in matching for p in a.redact}
    return minimal_paths(p for p in candidates if all(_removes(a.redact, p) for a in matching))


def _removes(paths: Iterable[str], path: str) -> bool:
    return any(covers(prefix, path) for prefix in paths)


def _why_none(alert: Alert, pid: str, day: date, named: Sequence[Agreement]) -> tuple[str, str]:
    """Why no agreement matches, in full and as the rule's word."""
    header = alert.header
    origin, alert_type, tlp, status = header.origin, alert.alert_type, header.tlp, header.status
    if not named:
        return f"no agreement shares {alert_type} from {origin} with {pid}", "no-agreement"
    in_force = [a for a in named if a.valid_on(day)]
    if not in_force:
        periods = ", ".join(f"{a.id} {a.valid_from}..{a.valid_until or ''}" for a in named)
        return f"no agreement in force on {day} ({periods})", "not-in-force"
    carrying = [a for a in in_force if a.carries(status)]
    if not carrying:
        kinds = ", ".join(f"{a.id} carries {'/'.join(sorted(a.statuses))}" for a in in_force)
        return f"a {status.value} alert, which no agreement in force carries ({kinds})", "status"
    limits = ", ".join(f"{a.id} up to {a.max_tlp.value}" for a in carrying)
    return f"TLP:{tlp.value} is above what the agreements allow ({limits})", "tlp"


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def _deny(pid: str, matching: Sequence[Agreement], reason: str, rule: str) -> Decision:
    return Decision(pid, False, _ids(matching), (), reason, rule=rule)


def _ids(agreements: Iterable[Agreement]) -> tuple[str, ...]:
    return tuple(sorted(a.id for a in agreements))
