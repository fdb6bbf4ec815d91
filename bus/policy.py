"""Who receives an alert, and without which fields: the sharing rules as pure code.

    for decision in decide(alert, agreements):
        if decision.deliver:
            copy = redact_alert(alert, decision.redact) if decision.redact else alert
            ...  # to partner.<decision.partner_id>.inbox
        audit(decision)  # delivered or denied, under which agreements, why

The rules (DESIGN.md, "Sharing agreements"), deny by default:

1. The origin never gets its own alert back (a partner whose ``country`` is the origin).
2. An agreement *matches* partner P when it names the alert's origin, P and its type, is valid
   on the UTC date of ``header.occurred_at``, and allows the alert's TLP
   (CLEAR < GREEN < AMBER < AMBER_STRICT < RED). No matching agreement: denied.
3. A non-empty ``header.explicit_recipients`` narrows delivery to those of the entitled partners.
4. TLP:RED goes only to explicit recipients that a matching agreement allows at RED, so a RED
   alert naming no explicit recipient reaches nobody.
5. A field is removed when every matching agreement removes it (or a field around it).
6. An UPDATE or CANCEL reaches every partner that received the alert(s) it references, when
   the caller says who that was (``referenced_recipients``); see ``decide``.

``decide`` is called for every alert and every partner, so it looks agreements up in the index
``Agreements`` builds by origin and alert type instead of scanning them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date

from bus.agreements import TLP_RANK, Agreement, Agreements
from bus.models import Alert, MessageType, Tlp
from bus.redact import covers, minimal_paths, removable_paths


@dataclass(frozen=True)
class Decision:
    """What one partner gets for one alert: a copy (without ``redact``) or nothing, and why."""

    partner_id: str
    deliver: bool
    #: The agreements the decision rests on, sorted: those that match (for a denial by
    #: ``explicit_recipients`` or TLP:RED, those that would have allowed it); empty when none.
    agreement_ids: tuple[str, ...]
    #: Field paths to remove from this partner's copy, sorted, none covering another.
    redact: tuple[str, ...]
    reason: str


def decide(
    alert: Alert,
    agreements: Agreements,
    *,
    referenced_recipients: frozenset[str] | None = None,
) -> list[Decision]:
    """The decision for every partner in ``agreements.partners``, sorted by partner id.

    ``referenced_recipients`` is, for an UPDATE or CANCEL, the set of partners that received the
    alert(s) it references; the policy has no memory, so the caller (the fan-out, from its
    audit) supplies it. Each of those partners receives the UPDATE or CANCEL whatever its TLP,
    date or explicit recipients, so that nobody keeps acting on stale or withdrawn information;
    the origin still gets nothing back. Its copy is redacted as the agreements that match the
    update require, when some do. When none does (the update is RED, later than an agreement's
    end, or the agreement is gone), the policy cannot know which agreement carried the original,
    so it takes the most restrictive choice: every path that any agreement naming the origin,
    the partner and the type removes (their union), or, when no agreement names them at all any
    more, every field that can be removed. ``agreement_ids`` then lists the agreements whose
    paths were used. Partners not in ``referenced_recipients`` follow the normal rules, and for
    an ALERT ``referenced_recipients`` is ignored.
    """
    header = alert.header
    origin, alert_type, tlp = header.origin, alert.alert_type, header.tlp
    day = header.occurred_at.astimezone(UTC).date()
    explicit = frozenset(header.explicit_recipients)
    referenced = (
        referenced_recipients
        if referenced_recipients is not None and header.msg_type is not MessageType.ALERT
        else frozenset()
    )
    covering = agreements.covering(origin, alert_type)
    decisions: list[Decision] = []
    for pid, partner in agreements.partners.items():
        if partner.country == origin:
            decisions.append(_deny(pid, (), "origin: the origin does not receive its own alert"))
            continue
        named = [a for a in covering if pid in a.recipients]
        matching = [a for a in named if a.valid_on(day) and TLP_RANK[tlp] <= TLP_RANK[a.max_tlp]]
        if pid in referenced:
            decisions.append(_follow_up(pid, alert_type, named, matching))
        elif not matching:
            decisions.append(_deny(pid, (), _why_none(pid, origin, alert_type, tlp, day, named)))
        elif tlp is Tlp.RED and not explicit:
            decisions.append(
                _deny(
                    pid, matching, "TLP:RED goes only to explicit recipients; the alert names none"
                )
            )
        elif explicit and pid not in explicit:
            decisions.append(_deny(pid, matching, "not an explicit recipient"))
        else:
            ids = _ids(matching)
            decisions.append(
                Decision(pid, True, ids, _removed_by_all(matching), f"covered by {', '.join(ids)}")
            )
    return decisions


def _follow_up(
    pid: str, alert_type: str, named: Sequence[Agreement], matching: Sequence[Agreement]
) -> Decision:
    why = "received the alert this one updates or cancels"
    if matching:
        ids = _ids(matching)
        return Decision(
            pid, True, ids, _removed_by_all(matching), f"{why}; covered by {', '.join(ids)}"
        )
    if named:
        ids = _ids(named)
        paths = minimal_paths(p for a in named for p in a.redact)
        reason = f"{why}; no agreement matches now, so all removals of {', '.join(ids)} apply"
        return Decision(pid, True, ids, paths, reason)
    paths = minimal_paths(removable_paths(alert_type))
    reason = f"{why}; no agreement names it any more, so every removable field is removed"
    return Decision(pid, True, (), paths, reason)


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


def _why_none(
    pid: str, origin: str, alert_type: str, tlp: Tlp, day: date, named: Sequence[Agreement]
) -> str:
    if not named:
        return f"no agreement shares {alert_type} from {origin} with {pid}"
    in_force = [a for a in named if a.valid_on(day)]
    if not in_force:
        periods = ", ".join(f"{a.id} {a.valid_from}..{a.valid_until or ''}" for a in named)
        return f"no agreement in force on {day} ({periods})"
    limits = ", ".join(f"{a.id} up to {a.max_tlp.value}" for a in in_force)
    return f"TLP:{tlp.value} is above what the agreements allow ({limits})"


def _deny(pid: str, matching: Sequence[Agreement], reason: str) -> Decision:
    return Decision(pid, False, _ids(matching), (), reason)


def _ids(agreements: Iterable[Agreement]) -> tuple[str, ...]:
    return tuple(sorted(a.id for a in agreements))
