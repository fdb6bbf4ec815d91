"""Routing one ingress record: verify, identify, apply the rules, and say what to write.

No Kafka here: ``Router.route`` turns one consumed record into the records one transaction must
write for it (partner copies, withdrawal notices, its one audit record with every decision, the
state record, or a dead letter), each tagged with what it is for, so that the transaction can
tell which alert a refused write belongs to. What repeats from alert to alert (the decisions for
one shape of alert, their audit entries, an inbox's name) is worked out once.

Alert identity is (origin, alert id). A follow-up (UPDATE or CANCEL) follows up only alerts of
its own origin: one that references an alert only another origin published is refused to
``bus.dlq`` (stage ``policy``); one that references an alert the bus has never routed is routed
under the ordinary rules, and the audit says the reference was unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from bus.agreements import Agreements
from bus.audit import AuditChain, canonical_value
from bus.codec import AlertCodec
from bus.dlq import DeadLetter
from bus.envelope import H_SIGNATURE, ReceivedAlert, RecordError, notice_headers, open_record
from bus.errors import PolicyError
from bus.keys import KeyRing, Signer
from bus.models import Alert, MessageType, WithdrawalNotice
from bus.policy import Decider, Decision
from bus.redact import partner_copy
from bus.topics import TopicNames
from services.fanout.state import RoutedView, state_key, state_value
from services.fanout.transaction import Output

#: Dead-letter source and the stage of a refused follow-up or an undeliverable copy.
SOURCE = "bus-fanout"
STAGE_POLICY = "policy"
STAGE_DELIVER = "deliver"


@dataclass
class Counts:
    alerts: int = 0
    duplicates: int = 0
    delivered: int = 0
    notices: int = 0
    denied: int = 0
    expired: int = 0
    refused: int = 0
    failed: int = 0
    dead_lettered: int = 0
    #: By label, for the metrics: copies and notices per partner, denials per rule, dead
    #: letters per stage.
    copies_to: Counter[str] = field(default_factory=Counter)
    notices_to: Counter[str] = field(default_factory=Counter)
    denied_by: Counter[str] = field(default_factory=Counter)
    dead_letters_by: Counter[str] = field(default_factory=Counter)

    def add(self, other: Counts) -> None:
        for name in _TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _BY_LABEL:
            getattr(self, name).update(getattr(other, name))  # in place: runs for every record


_BY_LABEL = ("copies_to", "notices_to", "denied_by", "dead_letters_by")
_TOTALS = tuple(name for name in Counts.__dataclass_fields__ if name not in _BY_LABEL)


@dataclass(frozen=True)
class _Plan:
    """What the decisions for one shape of alert turn into, but for the alert's own bytes."""

    decisions: list[Decision]  # held, so that its id is not reused while the plan is kept
    actions: tuple[Decision, ...]  # copies and notices, in partner order
    delivered: tuple[str, ...]
    noticed: tuple[str, ...]
    denied: int
    expired: int
    denied_by: tuple[tuple[str, int], ...]  # (rule, how many), for the metrics
    entries: dict[str, bytes]  # the audit's ``decisions``, canonical JSON


@dataclass
class Routing:
    """What one ingress record turned into."""

    outputs: list[Output] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)


class Router:
    """Turns ingress records into outputs under the agreements; holds no Kafka client."""

    def __init__(
        self, *, agreements: Agreements, codec: AlertCodec, keyring: KeyRing, hub: Signer,
        names: TopicNames, clock: Callable[[Alert], datetime] | None = None,
    ) -> None:  # fmt: skip
        #: When an alert counts as routed, for expiry; wall time unless a replay sets it.
        self.clock = clock
        self.agreements = agreements
        self.codec = codec
        self.keyring = keyring
        self.hub = hub
        self.names = names
        self.decider = Decider(agreements)
        self._inboxes = {pid: names.inbox(pid) for pid in agreements.partners}
        #: By the id of a list of decisions (``Decider`` repeats them): what it turns into.
        self._plans: dict[int, _Plan] = {}

    def route(
        self,
        record: ConsumerRecord,
        routed: RoutedView,
        chain: AuditChain,
        *,
        now: datetime,
        undeliverable: Mapping[str, str] | None = None,
        counts: Counts | None = None,
    ) -> Routing:
        """The outputs for ``record``; ``routed`` (a batch overlay) and ``chain`` move on.

        ``undeliverable`` maps partners whose inbox refused this alert's copy for good to the
        reason: they get no copy, the audit says ``failed`` and the alert is dead-lettered.
        ``counts``, when given, is added to (a batch's) rather than a new one started.
        """
        out = Routing(counts=counts if counts is not None else Counts())
        source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        try:
            received = open_record(
                self.codec, self.keyring, names=self.names, topic=record.topic,
                partition=record.partition, offset=record.offset, key=record.key,
                value=record.value, headers=record.headers,
            )  # fmt: skip
        except RecordError as exc:
            out.counts.dead_lettered += 1
            out.counts.dead_letters_by[exc.stage] += 1
            out.outputs.append(self._dead_letter(record, exc.error, exc.stage))
            return out
        alert = received.alert
        header = alert.header
        if self.clock is not None:
            now = self.clock(alert)
        origin, alert_id = alert.origin, str(alert.alert_id)
        base: dict[str, Any] = {
            "alert_id": alert_id, "origin": origin, "alert_type": received.alert_type,
            "msg_type": header.msg_type.value, "status": header.status.value,
            "tlp": header.tlp.value, "occurred_at": header.occurred_at.isoformat(),
            "source": source,
        }  # fmt: skip
        if routed.recipients(origin, alert_id) is not None:
            out.counts.duplicates += 1
            reason = "this alert (origin and id) was routed before; not delivered again"
            out.outputs.append(self._audit(chain, base, [_entry(None, "duplicate", reason)]))
            return out

        held: dict[str, list[str]] = {}  # partner → the referenced alerts it received
        unknown: list[str] = []  # references the bus has never routed
        foreign: dict[str, list[str]] = {}  # references only other origins published
        if header.msg_type is not MessageType.ALERT:
            for ref in map(str, header.references):
                recipients = routed.recipients(origin, ref)
                if recipients is not None:
                    for pid in recipients:
                        held.setdefault(pid, []).append(ref)
                elif owners := routed.origins(ref):
                    foreign[ref] = sorted(owners)
                else:
                    unknown.append(ref)
        if foreign:
            return self._refuse(record, chain, base, foreign, out)
        unrouted = ""
        if unknown:
            base["references_unknown"] = unknown
            unrouted = (
                f"references alert(s) of {origin} the bus has not routed: {', '.join(unknown)}"
            )

        out.counts.alerts += 1
        decisions = self.decider.decide(alert, referenced_recipients=frozenset(held), now=now)
        plan = self._plan(decisions)
        copies: dict[tuple[str, ...], tuple[bytes, list[tuple[str, bytes]]]] = {}
        failed = undeliverable or {}
        gave_up: list[str] = []
        outputs, counts = out.outputs, out.counts
        for decision in plan.actions:
            pid = decision.partner_id
            if decision.deliver:
                if pid in failed:
                    gave_up.append(pid)
                    continue
                value, headers = self._copy(received, decision, copies)
                outputs.append(Output(self._inboxes[pid], record.key, value, headers, pid))
            else:
                notice = WithdrawalNotice.for_partner(
                    alert, partner_id=pid, alert_ids=held[pid], now=now
                )
                value = self.codec.encode_notice(notice)
                key = str(notice.alert_ids[0]).encode()
                headers = notice_headers(notice, self.hub.sign(value))
                outputs.append(Output(self._inboxes[pid], key, value, headers, pid))
        counts.delivered += len(plan.delivered) - len(gave_up)
        counts.notices += len(plan.noticed)
        counts.denied += plan.denied
        counts.expired += plan.expired
        counts.failed += len(gave_up)
        counts.copies_to.update(plan.delivered)
        if gave_up:
            counts.copies_to.subtract(gave_up)
        counts.notices_to.update(plan.noticed)
        for rule, n in plan.denied_by:
            counts.denied_by[rule] += n
        delivered = plan.delivered
        if gave_up or unknown:
            # The uncommon case: the audit entries differ from the shape's.
            entries = [self._entry_for(d, failed, unrouted) for d in decisions]
            outputs.append(self._audit(chain, base, entries))
            delivered = tuple(pid for pid in delivered if pid not in failed)
        else:
            outputs.append(self._audit(chain, base, encoded=plan.entries))
        routed.add(origin, alert_id, delivered)
        outputs.append(Output(
            self.names.fanout_state, state_key(origin, alert_id),
            state_value(origin, alert_id, received.alert_type, delivered, plan.noticed), [],
        ))  # fmt: skip
        if gave_up:
            reasons = "; ".join(f"{pid}: {failed[pid]}" for pid in gave_up)
            error = PolicyError(
                f"Alert {alert_id} from {origin} could not be delivered to every entitled "
                f"partner ({reasons}); the others received it"
            )
            out.outputs.append(self._dead_letter(record, error, STAGE_DELIVER))
            out.counts.dead_lettered += 1
            out.counts.dead_letters_by[STAGE_DELIVER] += 1
        return out

    def _refuse(
        self, record: ConsumerRecord, chain: AuditChain, base: dict[str, Any],
        foreign: dict[str, list[str]], out: Routing,
    ) -> Routing:  # fmt: skip
        origin, kind = base["origin"], base["msg_type"]
        owners = sorted({o for os in foreign.values() for o in os})
        refs = ", ".join(f"{r} (of {'/'.join(os)})" for r, os in sorted(foreign.items()))
        reason = (
            f"refused: an {kind} from {origin} references alert(s) that only "
            f"{', '.join(owners)} published: {refs}; a follow-up may only update or cancel "
            f"alerts of its own origin"
        )
        out.counts.refused += 1
        out.counts.dead_lettered += 1
        out.counts.dead_letters_by[STAGE_POLICY] += 1
        out.outputs.append(self._dead_letter(record, PolicyError(reason), STAGE_POLICY))
        out.outputs.append(self._audit(chain, base, [_entry(None, "refused", reason)]))
        return out

    def _copy(
        self,
        received: ReceivedAlert,
        decision: Decision,
        copies: dict[tuple[str, ...], tuple[bytes, list[tuple[str, bytes]]]],
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The partner's value and headers: the original byte for byte, or a re-signed copy."""
        cached = copies.get(decision.redact)
        if cached is None:
            copy = partner_copy(
                received.alert, received.value, received.headers[H_SIGNATURE], received.key_id,
                decision.redact, codec=self.codec, hub=self.hub,
            )  # fmt: skip
            cached = copies[decision.redact] = (copy.value, copy.headers)
        return cached

    def _plan(self, decisions: list[Decision]) -> _Plan:
        """What this list of decisions turns into, worked out once: ``Decider`` hands out the
        same list for every alert of one shape."""
        plan = self._plans.get(id(decisions))
        if plan is not None and plan.decisions is decisions:
            return plan
        if len(self._plans) >= 4096:
            self._plans.clear()
        entries = [self._entry_for(d, {}, "") for d in decisions]
        plan = self._plans[id(decisions)] = _Plan(
            decisions=decisions,
            actions=tuple(d for d in decisions if d.deliver or d.notice),
            delivered=tuple(sorted(d.partner_id for d in decisions if d.deliver)),
            noticed=tuple(sorted(d.partner_id for d in decisions if d.notice)),
            denied=sum(1 for d in decisions if d.outcome == "denied"),
            expired=sum(1 for d in decisions if d.expired),
            denied_by=tuple(Counter(
                d.rule for d in decisions if not (d.deliver or d.notice)
            ).items()),
            entries={"decisions": canonical_value(entries)},
        )  # fmt: skip
        return plan

    def _entry_for(
        self, decision: Decision, failed: Mapping[str, str], unrouted: str
    ) -> dict[str, Any]:
        """A decision as the audit lists it: ``failed`` when the partner's inbox refused the
        copy for good, and naming the unknown references of a follow-up."""
        pid, outcome = decision.partner_id, decision.outcome
        if decision.deliver and pid in failed:
            reason = f"{failed[pid]}; the copy was not delivered"
            return _entry(pid, "failed", reason, decision.agreement_ids)
        reason = f"{decision.reason} ({unrouted})" if unrouted else decision.reason
        return _entry(
            pid, outcome, reason, decision.agreement_ids,
            decision.redact if outcome == "delivered" else (),
            self._inboxes[pid] if outcome in ("delivered", "notice") else None,
        )  # fmt: skip

    def _audit(
        self, chain: AuditChain, base: dict[str, Any],
        decisions: list[dict[str, Any]] | None = None, *, encoded: dict[str, bytes] | None = None,
    ) -> Output:  # fmt: skip
        """The alert's one audit record: every decision for it, in one link of the chain
        (``decisions``, or already encoded in ``encoded``)."""
        body = {**base, "decided_at": datetime.now(UTC).isoformat()}
        if encoded is None:
            body["decisions"] = decisions or []
        value = chain.append_json(body, encoded=encoded)
        return Output(self.names.audit, base["alert_id"].encode(), value, [],
                      partition=chain.chain or 0)  # fmt: skip

    def _dead_letter(self, record: ConsumerRecord, error: Exception, stage: str) -> Output:
        letter = DeadLetter(
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, headers=list(record.headers or ()),
            error=error, stage=stage, source=SOURCE,
        )  # fmt: skip
        return Output(self.names.dlq, record.key, record.value, letter.kafka_headers())


def _entry(
    partner: str | None, decision: str, reason: str, agreements: Iterable[str] = (),
    redacted: Iterable[str] = (), inbox: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "partner": partner, "decision": decision, "reason": reason,
        "agreements": list(agreements), "redacted": list(redacted), "inbox": inbox,
    }  # fmt: skip
