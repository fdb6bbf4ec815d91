"""The sharing rules: one example per rule, then random agreements and alerts checked against a
second, independently written reference, and no delivered copy holding a field to remove."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import AlertCodec, SchemaRegistry
from bus.agreements import Agreement, Agreements, load_agreements, parse_agreements
from bus.models import ALERT_MODELS, ALERT_TYPES, Alert, AlertHeader
from bus.policy import RULES, Decider, Decision, decide
from bus.redact import field_kinds, redact, removable_paths
from tests.conftest import REPO
from tests.factories import make_alert
from tests.strategies import model_dicts

REGISTRY = SchemaRegistry.load(REPO / "schemas")
CODEC = AlertCodec(REGISTRY)

# --- Examples, one rule at a time ---------------------------------------------------------------

PARTNERS: dict[str, Any] = {
    "rs": {"name": "Serbia", "country": "rs", "public_key": "rs.pub"},
    "mk": {"name": "North Macedonia", "country": "mk", "public_key": "mk.pub"},
    "hr": {"name": "Croatia", "country": "hr", "public_key": None},
    "europol": {"name": "Europol", "country": None, "public_key": None},
    "frontex": {"name": "Frontex", "country": None, "public_key": None},
    "jc-tabanovce": {"name": "Joint centre Tabanovce", "country": None, "public_key": None},
}


def _agreement(aid: str, **fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": aid, "title": aid, "legal_basis": "test", "origins": ["rs", "mk"],
        "recipients": ["rs", "mk", "jc-tabanovce"], "types": ["irregular-crossing"],
        "max_tlp": "AMBER", "redact": [], "valid_from": date(2014, 1, 1), "valid_until": None,
    }  # fmt: skip
    raw.update(fields)
    return raw


def _agreements(*raw: dict[str, Any]) -> Agreements:
    return parse_agreements(
        {"partners": PARTNERS, "agreements": list(raw)}, source="test", schemas=REGISTRY
    )


def _crossing(origin: str = "rs", **header: Any) -> Alert:
    """The sample irregular crossing (9 January 2014), with no explicit recipients unless given."""
    header.setdefault("explicit_recipients", [])
    header.setdefault("expires_at", None)
    header.setdefault("occurred_at", "2014-01-09T02:15:00Z")
    header.setdefault("issued_at", "2014-01-09T05:30:00Z")
    return make_alert("irregular-crossing", origin, **header)


def _by_partner(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.partner_id: d for d in decisions}


def _delivered(decisions: list[Decision]) -> set[str]:
    return {d.partner_id for d in decisions if d.deliver}


TABANOVCE = _agreements(_agreement("tabanovce"))


def test_one_decision_per_partner_sorted_by_id() -> None:
    decisions = decide(_crossing(), TABANOVCE)
    assert [d.partner_id for d in decisions] == sorted(PARTNERS)


def test_the_origin_never_gets_its_own_alert_back() -> None:
    d = _by_partner(decide(_crossing("rs", explicit_recipients=["rs", "mk"]), TABANOVCE))
    assert not d["rs"].deliver
    assert d["rs"].reason.startswith("origin")
    assert d["rs"].agreement_ids == ()
    assert d["mk"].deliver
    assert d["mk"].agreement_ids == ("tabanovce",)
    assert d["mk"].redact == ()


def test_deny_by_default_a_partner_no_agreement_names() -> None:
    d = _by_partner(decide(_crossing(), TABANOVCE))
    assert _delivered(list(d.values())) == {"mk", "jc-tabanovce"}
    assert d["europol"].reason == "no agreement shares irregular-crossing from rs with europol"
    assert d["europol"].agreement_ids == ()


def test_an_origin_or_type_the_agreement_does_not_name_is_denied() -> None:
    assert _delivered(decide(_crossing("hr"), TABANOVCE)) == set()
    readmission = make_alert("readmission", "rs", explicit_recipients=[])
    assert _delivered(decide(readmission, TABANOVCE)) == set()


@pytest.mark.parametrize(
    ("occurred_at", "delivered"),
    [
        ("2013-12-31T23:59:59Z", False),
        ("2014-01-01T00:00:00Z", True),  # the first day is included
        ("2014-01-01T00:30:00+01:00", False),  # 31 December in UTC
        ("2014-06-30T23:59:59Z", True),  # so is the last
        ("2014-07-01T00:00:00Z", False),
    ],
)
def test_an_agreement_counts_on_the_utc_date_the_event_occurred(
    occurred_at: str, delivered: bool
) -> None:
    agreements = _agreements(_agreement("tabanovce", valid_until=date(2014, 6, 30)))
    alert = _crossing(occurred_at=occurred_at, issued_at="2014-07-02T00:00:00Z")
    d = _by_partner(decide(alert, agreements))["mk"]
    assert d.deliver is delivered
    if not delivered:
        assert d.reason.startswith("no agreement in force on ")
        assert "tabanovce 2014-01-01..2014-06-30" in d.reason


@pytest.mark.parametrize(
    ("tlp", "delivered"),
    [("CLEAR", True), ("GREEN", True), ("AMBER", True), ("AMBER_STRICT", False)],
)
def test_a_tlp_above_the_agreements_maximum_is_denied(tlp: str, delivered: bool) -> None:
    d = _by_partner(decide(_crossing(tlp=tlp), TABANOVCE))["mk"]
    assert d.deliver is delivered
    if not delivered:
        assert (
            d.reason
            == "TLP:AMBER_STRICT is above what the agreements allow (tabanovce up to AMBER)"
        )


def test_explicit_recipients_narrow_delivery_to_entitled_partners() -> None:
    alert = _crossing(explicit_recipients=["jc-tabanovce", "europol"])
    d = _by_partner(decide(alert, TABANOVCE))
    assert _delivered(list(d.values())) == {"jc-tabanovce"}  # europol is named but not entitled
    assert d["mk"].reason == "not an explicit recipient"
    assert d["mk"].agreement_ids == ("tabanovce",)
    assert d["europol"].reason.startswith("no agreement shares")


def test_red_goes_only_to_explicit_recipients_an_agreement_allows_at_red() -> None:
    agreements = _agreements(
        _agreement("tabanovce"),
        _agreement("europol-red", recipients=["europol", "mk"], max_tlp="RED"),
    )
    nobody = decide(_crossing(tlp="RED"), agreements)
    assert _delivered(nobody) == set()
    assert _by_partner(nobody)["europol"].reason == (
        "TLP:RED goes only to explicit recipients; the alert names none"
    )

    named = _by_partner(
        decide(_crossing(tlp="RED", explicit_recipients=["europol", "jc-tabanovce"]), agreements)
    )
    assert _delivered(list(named.values())) == {"europol"}
    assert named["europol"].agreement_ids == ("europol-red",)
    assert named["jc-tabanovce"].reason.startswith("TLP:RED is above")  # tabanovce: up to AMBER
    assert named["mk"].reason == "not an explicit recipient"


def test_a_field_is_removed_only_when_every_matching_agreement_removes_it() -> None:
    agreements = _agreements(
        _agreement("a", redact=["persons", "suspected_facilitator", "crossing_point"]),
        _agreement("b", redact=["persons.family_name", "crossing_point"]),
        _agreement("c", recipients=["europol"], redact=["persons.family_name", "persons"]),
    )
    d = _by_partner(decide(_crossing(), agreements))
    # a removes all of persons, b only their family names: the names go, the rest stays.
    assert d["mk"].agreement_ids == ("a", "b")
    assert d["mk"].redact == ("crossing_point", "persons.family_name")
    # One agreement: its paths, without those inside another.
    assert d["europol"].redact == ("persons",)


def test_an_agreement_removing_nothing_means_nothing_is_removed() -> None:
    agreements = _agreements(
        _agreement("a", redact=["persons"]), _agreement("b", recipients=["mk"], redact=[])
    )
    d = _by_partner(decide(_crossing(), agreements))
    assert d["mk"].redact == ()
    assert d["jc-tabanovce"].redact == ("persons",)


FOLLOW_UP_AGREEMENTS = _agreements(
    _agreement("tabanovce", valid_until=date(2014, 6, 30), redact=["suspected_facilitator"]),
    _agreement("tabanovce-people", recipients=["mk"], redact=["persons"], max_tlp="GREEN"),
    _agreement("europol", recipients=["europol"], types=["readmission"], redact=["persons"]),
)


def _update(msg_type: str = "UPDATE", **header: Any) -> Alert:
    return _crossing(msg_type=msg_type, references=[str(uuid.uuid4())], **header)


@pytest.mark.parametrize("msg_type", ["UPDATE", "CANCEL"])
def test_an_earlier_recipient_the_rules_deny_gets_a_withdrawal_notice(msg_type: str) -> None:
    # Later than the agreement's end, RED, and naming only frontex: by the rules nobody.
    alert = _update(
        msg_type, occurred_at="2015-01-01T00:00:00Z", tlp="RED", explicit_recipients=["frontex"]
    )
    assert _delivered(decide(alert, FOLLOW_UP_AGREEMENTS)) == set()

    referenced = frozenset({"mk", "jc-tabanovce", "europol", "rs", "not-a-partner"})
    d = _by_partner(decide(alert, FOLLOW_UP_AGREEMENTS, referenced_recipients=referenced))
    assert _delivered(list(d.values())) == set()  # no content to anyone
    assert {p for p, x in d.items() if x.notice} == {"mk", "jc-tabanovce", "europol"}
    assert not d["rs"].notice  # still never back to the origin
    assert not d["frontex"].notice  # named, but never received the alert: nothing
    for pid in ("mk", "jc-tabanovce", "europol"):
        assert d[pid].outcome == "notice"
        assert d[pid].redact == ()
        assert "withdrawal notice" in d[pid].reason


def test_a_red_follow_up_reaches_with_content_only_the_explicit_recipients_allowed_at_red() -> None:
    agreements = _agreements(
        _agreement("tabanovce"),
        _agreement("europol-red", recipients=["europol", "mk"], max_tlp="RED"),
    )
    alert = _update(tlp="RED", explicit_recipients=["europol"])
    earlier = frozenset({"mk", "jc-tabanovce", "europol"})
    d = _by_partner(decide(alert, agreements, referenced_recipients=earlier))
    assert _delivered(list(d.values())) == {"europol"}
    assert d["europol"].reason.startswith("received the alert this one updates or cancels; ")
    assert d["mk"].notice
    assert d["mk"].reason.find("not an explicit recipient") > 0
    assert d["jc-tabanovce"].notice
    assert "TLP:RED is above" in d["jc-tabanovce"].reason


def test_an_update_uses_the_matching_agreements_redaction_when_some_match() -> None:
    alert = _update(tlp="GREEN", explicit_recipients=["jc-tabanovce", "mk"])
    d = _by_partner(decide(alert, FOLLOW_UP_AGREEMENTS, referenced_recipients=frozenset({"mk"})))
    assert d["mk"].deliver
    assert d["mk"].agreement_ids == ("tabanovce", "tabanovce-people")
    assert d["mk"].redact == ()  # tabanovce removes the facilitator, tabanovce-people the persons
    assert d["jc-tabanovce"].deliver  # not referenced: the normal rules, and it is named
    assert d["jc-tabanovce"].redact == ("suspected_facilitator",)


def test_an_exercise_goes_only_where_an_agreement_carries_exercises() -> None:
    agreements = _agreements(
        _agreement("tabanovce"),
        _agreement("drill", recipients=["europol"], statuses=["ACTUAL", "EXERCISE"]),
    )
    exercise = _by_partner(decide(_crossing(status="EXERCISE"), agreements))
    assert _delivered(list(exercise.values())) == {"europol"}
    assert exercise["mk"].reason == (
        "a EXERCISE alert, which no agreement in force carries (tabanovce carries ACTUAL)"
    )
    test = decide(_crossing(status="TEST"), agreements)
    assert _delivered(test) == set()
    assert _delivered(decide(_crossing(), agreements)) == {"mk", "jc-tabanovce", "europol"}


def test_an_expired_alert_reaches_nobody_but_its_follow_ups_still_reach_earlier_recipients() -> (
    None
):
    routed = datetime(2014, 1, 10, tzinfo=UTC)
    alert = _crossing(expires_at="2014-01-09T12:00:00Z")
    d = _by_partner(decide(alert, TABANOVCE, now=routed))
    assert _delivered(list(d.values())) == set()
    assert d["mk"].outcome == "expired"
    assert d["mk"].reason.startswith("expired at 2014-01-09T12:00:00+00:00")
    assert _delivered(decide(alert, TABANOVCE, now=datetime(2014, 1, 9, tzinfo=UTC))) == {
        "mk", "jc-tabanovce",
    }  # fmt: skip
    cancel = _update("CANCEL")  # its own expires_at is None
    earlier = frozenset({"mk"})
    assert _delivered(decide(cancel, TABANOVCE, referenced_recipients=earlier, now=routed)) == {
        "mk", "jc-tabanovce",
    }  # fmt: skip
    stale = _update("CANCEL", expires_at="2014-01-09T12:00:00Z")
    d = _by_partner(decide(stale, TABANOVCE, referenced_recipients=earlier, now=routed))
    assert d["mk"].notice  # an expired follow-up still tells earlier recipients
    assert d["jc-tabanovce"].outcome == "expired"


def test_referenced_recipients_do_not_matter_for_a_new_alert() -> None:
    alert = _crossing(explicit_recipients=["jc-tabanovce"])
    with_refs = decide(alert, TABANOVCE, referenced_recipients=frozenset({"mk", "europol"}))
    assert with_refs == decide(alert, TABANOVCE)


def test_each_decision_names_its_rule_in_one_word() -> None:
    """The word that denials are counted by (``bus_denials_total{reason}``), one per rule."""
    agreements = _agreements(
        _agreement("tabanovce", valid_until=date(2014, 12, 31)),
        _agreement("red", recipients=["europol"], max_tlp="RED"),
    )
    now = datetime(2014, 6, 1, tzinfo=UTC)

    def rules(alert: Alert) -> dict[str, str]:
        return {d.partner_id: d.rule for d in decide(alert, agreements, now=now)}

    assert rules(_crossing()) == {
        "rs": "origin", "mk": "covered", "jc-tabanovce": "covered", "europol": "covered",
        "hr": "no-agreement", "frontex": "no-agreement",
    }  # fmt: skip
    assert rules(_crossing(tlp="AMBER_STRICT"))["mk"] == "tlp"
    assert rules(_crossing(occurred_at="2015-03-01T10:00:00Z"))["mk"] == "not-in-force"
    assert rules(_crossing(status="EXERCISE"))["mk"] == "status"
    assert rules(_crossing(tlp="RED"))["europol"] == "red-needs-explicit"
    assert rules(_crossing(explicit_recipients=["mk"]))["jc-tabanovce"] == "not-explicit-recipient"
    assert rules(_crossing(expires_at="2014-02-01T00:00:00Z"))["mk"] == "expired"
    every = {r for alert in (_crossing(), _crossing(tlp="RED")) for r in rules(alert).values()}
    assert every <= set(RULES)


def test_the_shipped_agreements_send_frontex_crossings_without_personal_data() -> None:
    agreements = load_agreements(REPO / "examples" / "agreements.yaml", schemas=REGISTRY)
    alert = _crossing("rs", occurred_at="2019-03-01T10:00:00Z", issued_at="2019-03-01T11:00:00Z")
    d = _by_partner(decide(alert, agreements))
    assert d["frontex"].deliver
    assert d["frontex"].redact == ("persons", "suspected_facilitator")
    copy = alert.model_validate(redact(alert.to_avro(), d["frontex"].redact))
    assert copy.persons == []  # type: ignore[attr-defined]
    assert copy.suspected_facilitator is None  # type: ignore[attr-defined]
    assert copy.nationality_breakdown == alert.nationality_breakdown  # type: ignore[attr-defined]
    assert {"hr", "me", "jc-trebinje", "ba", "mk", "jc-tabanovce"} <= _delivered(list(d.values()))
    assert d["hr"].agreement_ids == ("balkan-route-2018",)
    assert not d["rs"].deliver


# --- The property: random agreements and alerts against an independent reference --------------

TLPS = ["CLEAR", "GREEN", "AMBER", "AMBER_STRICT", "RED"]
STATUSES = ["ACTUAL", "EXERCISE", "TEST"]
POOL = ("rs", "mk", "al", "hr", "europol", "frontex", "jc-tabanovce", "jeg-de")
ORIGINS = ("rs", "mk", "al")
DAY0 = date(2014, 1, 1)
FAVOURITE_PATHS = frozenset({
    "persons", "persons.family_name", "persons.travel_document",
    "persons.travel_document.number", "suspected_facilitator", "suspected_facilitator.family_name",
    "suspects", "suspects.family_name", "suspects.travel_document.number", "person.family_name",
    "person.travel_document", "person.travel_document.number", "legs", "legs.document_used",
    "legs.document_used.number", "summary", "crossing_point", "transfer_point", "texts",
})  # fmt: skip


@st.composite
def random_agreements(draw: st.DrawFn, alert_type: str | None = None) -> Agreements:
    """Random partners and agreements; most agreements cover ``alert_type`` when it is given."""
    pids = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    partners = {
        pid: {"name": pid, "country": draw(st.none() | st.sampled_from((*ORIGINS, "hr"))),
              "public_key": None}
        for pid in pids
    }  # fmt: skip
    raw = []
    for i in range(draw(st.integers(0, 7))):
        if draw(st.integers(0, 3)) == 0:
            kinds = sorted(ALERT_TYPES)
            types = ["*"]
        else:
            kinds = draw(
                st.lists(st.sampled_from(ALERT_TYPES), min_size=1, max_size=2, unique=True)
            )
            if alert_type is not None and alert_type not in kinds and draw(st.integers(0, 3)):
                kinds = [alert_type, *kinds[1:]]
            types = kinds
        common = sorted(set.intersection(*(set(removable_paths(t)) for t in kinds)))
        # Mostly from a short list of nested paths, so that agreements overlap and nest.
        favourites = [p for p in common if p in FAVOURITE_PATHS]
        vocabulary = draw(st.sampled_from([favourites, favourites, common])) or common
        valid_from = DAY0 + timedelta(days=draw(st.integers(0, 20)))
        length = draw(st.none() | st.integers(0, 60))
        raw.append({
            "id": f"a{i}", "title": "t", "legal_basis": "b",
            "origins": draw(st.lists(st.sampled_from(ORIGINS), min_size=2, unique=True)),
            "recipients": draw(st.lists(st.sampled_from(pids), min_size=1, unique=True)),
            "types": types,
            "max_tlp": draw(st.sampled_from([*TLPS, "RED"])),  # RED is where rules differ
            "redact": draw(
                st.lists(st.sampled_from(vocabulary), min_size=draw(st.sampled_from([0, 1, 1])),
                         max_size=4, unique=True)
            ) if vocabulary else [],
            "valid_from": valid_from,
            "valid_until": None if length is None else valid_from + timedelta(days=length),
        })  # fmt: skip
        statuses = draw(st.none() | st.lists(st.sampled_from(STATUSES), min_size=1, unique=True))
        if statuses is not None:
            raw[-1]["statuses"] = statuses
    return parse_agreements({"partners": partners, "agreements": raw}, source="random")


@st.composite
def random_alerts(draw: st.DrawFn, alert_type: str | None = None) -> Alert:
    """Any alert, with the header fields the rules read drawn where the agreements live."""
    model = ALERT_MODELS[alert_type or draw(st.sampled_from(ALERT_TYPES))]
    data = draw(model_dicts(model))
    msg_type = draw(st.sampled_from(["ALERT", "UPDATE", "CANCEL"]))
    day = DAY0 + timedelta(days=draw(st.integers(-2, 70)))
    occurred = datetime.combine(day, draw(st.times()), tzinfo=UTC)
    issued = occurred + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
    lifetime = draw(st.none() | st.integers(1, 10 * 24 * 60))
    data["header"] |= {
        "origin": draw(st.sampled_from(ORIGINS)),
        "occurred_at": occurred,
        "issued_at": issued,
        "expires_at": None if lifetime is None else issued + timedelta(minutes=lifetime),
        "status": draw(st.sampled_from(["ACTUAL", "ACTUAL", *STATUSES])),
        "tlp": draw(st.sampled_from([*TLPS, "RED"])),
        "msg_type": msg_type,
        "references": [str(draw(st.uuids()))] if msg_type != "ALERT" else [],
        "explicit_recipients": draw(
            st.just([]) | st.lists(st.sampled_from((*POOL, "nobody")), min_size=1, max_size=3)
        ),
    }
    return model.model_validate(data)


@dataclass
class Expected:
    partner_id: str
    deliver: bool
    agreement_ids: tuple[str, ...]
    redact: tuple[str, ...]
    #: The agreements whose removals this partner's copy must honour.
    honoured: list[Agreement]
    notice: bool = False


def reference(
    alert: Alert, agreements: Agreements, referenced: frozenset[str] | None, now: datetime
) -> list[Expected]:
    """The rules of DESIGN.md written out naively: every partner against every agreement."""
    h = alert.header
    day = h.occurred_at.astimezone(UTC).date()
    universe = field_kinds(alert.alert_type, REGISTRY)
    expired = h.expires_at is not None and not h.expires_at > now
    out = []
    for pid in sorted(agreements.partners):
        partner = agreements.partners[pid]
        if partner.country is not None and partner.country == h.origin:
            out.append(Expected(pid, False, (), (), []))
            continue
        matching = []
        for a in agreements.agreements:
            if h.origin not in a.origins:
                continue
            if pid not in a.recipients:
                continue
            if alert.alert_type not in a.types:
                continue
            if day < a.valid_from:
                continue
            if a.valid_until is not None and day > a.valid_until:
                continue
            if TLPS.index(h.tlp.value) > TLPS.index(a.max_tlp.value):
                continue
            if h.status.value not in {s.value for s in a.statuses}:
                continue
            matching.append(a)
        ids = tuple(sorted(a.id for a in matching))
        # RED goes only to explicit recipients; other TLPs to them when the alert names any.
        narrowed = h.tlp.value == "RED" or len(h.explicit_recipients) > 0
        if expired or len(matching) == 0 or (narrowed and pid not in h.explicit_recipients):
            # Denied. An earlier recipient of what this follow-up refers to is told, no more.
            told = h.msg_type.value != "ALERT" and referenced is not None and pid in referenced
            out.append(Expected(pid, False, ids if matching else (), (), [], notice=told))
        else:
            out.append(Expected(pid, True, ids, _every(matching, universe), matching))
    return out


def _under(path: str, removed: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of ``removed`` or inside one of them, by walking its ancestors."""
    parts = path.split(".")
    return any(".".join(parts[:n]) in removed for n in range(1, len(parts) + 1))


def _every(matching: list[Agreement], universe: Any) -> tuple[str, ...]:
    """Every field of the type that all matching agreements remove, reduced to the topmost."""
    return _tops({p for p in universe if all(_under(p, a.redact) for a in matching)})


def _tops(paths: set[str]) -> tuple[str, ...]:
    """The paths in ``paths`` none of whose ancestors is in ``paths``."""
    tops = []
    for p in paths:
        parts = p.split(".")
        if not any(".".join(parts[:n]) in paths for n in range(1, len(parts))):
            tops.append(p)
    return tuple(sorted(tops))


def _values(record: Any, path: str) -> list[Any]:
    nodes = [record]
    for name in path.split("."):
        nodes = [
            item[name]
            for node in nodes
            for item in (node if isinstance(node, list) else [node])
            if item is not None
        ]
    return nodes


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[Agreements, Alert, frozenset[str] | None, datetime]:
    """Agreements, an alert most of them cover, and who received what it refers to (if known)."""
    alert_type = draw(st.sampled_from(ALERT_TYPES))
    agreements = draw(random_agreements(alert_type))
    alert = draw(random_alerts(alert_type))
    referenced = draw(st.none() | st.frozensets(st.sampled_from((*POOL, "not-a-partner"))))
    now = alert.header.issued_at + timedelta(minutes=draw(st.integers(0, 12 * 24 * 60)))
    return agreements, alert, referenced, now


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_decisions_equal_the_reference_and_copies_hold_no_removed_field(
    scenario: tuple[Agreements, Alert, frozenset[str] | None, datetime],
) -> None:
    agreements, alert, referenced, now = scenario
    decisions = decide(alert, agreements, referenced_recipients=referenced, now=now)
    expected = reference(alert, agreements, referenced, now)

    got = [(d.partner_id, d.deliver, d.notice, d.agreement_ids, d.redact) for d in decisions]
    assert got == [(e.partner_id, e.deliver, e.notice, e.agreement_ids, e.redact) for e in expected]

    record = alert.to_avro()
    for decision, exp in zip(decisions, expected, strict=True):
        if not decision.deliver:
            assert decision.redact == ()
            continue
        copy = redact(record, decision.redact)
        CODEC.encode_record(alert.alert_type, copy)  # still valid against the same schema
        for a in exp.honoured:
            for path in a.redact:
                if all(_under(path, b.redact) for b in exp.honoured):
                    assert all(v in (None, []) for v in _values(copy, path)), (
                        decision.partner_id, path,
                    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALERT_TYPES), st.data())
def test_overlapping_removals_keep_only_what_every_agreement_removes(
    alert_type: str, data: st.DataObject
) -> None:
    removable = sorted(removable_paths(alert_type))
    nested = [p for p in removable if p in FAVOURITE_PATHS] or removable
    sets = data.draw(
        st.lists(
            st.lists(st.sampled_from(data.draw(st.sampled_from([nested, removable]))),
                     min_size=1, max_size=5, unique=True),
            min_size=1, max_size=4,
        )
    )  # fmt: skip
    raw = [
        _agreement(f"a{i}", types=[alert_type], recipients=["europol"], max_tlp="RED", redact=paths)
        for i, paths in enumerate(sets)
    ]
    agreements = _agreements(*raw)
    alert = make_alert(alert_type, "rs", tlp="AMBER", explicit_recipients=[], expires_at=None)
    europol = _by_partner(decide(alert, agreements))["europol"]
    universe = field_kinds(alert_type, REGISTRY)
    assert europol.deliver
    assert europol.redact == _every(list(agreements.agreements), universe)
    copy = redact(alert.to_avro(), europol.redact)
    for path in universe:
        if all(_under(path, a.redact) for a in agreements.agreements):
            assert all(v in (None, []) for v in _values(copy, path)), path
        elif not any(_under(r, (path,)) for r in europol.redact):  # not around a removed field
            assert _values(copy, path) == _values(alert.to_avro(), path), path


def test_the_index_gives_the_same_decisions_as_a_full_scan_for_the_example() -> None:
    agreements = load_agreements(REPO / "examples" / "agreements.yaml", schemas=REGISTRY)
    for alert_type in ALERT_TYPES:
        for origin in ("rs", "mk", "al", "ba", "me", "xk", "hr", "gr", "at", "si", "de", "fr"):
            for tlp in TLPS:
                alert = make_alert(alert_type, origin, tlp=tlp, explicit_recipients=[])
                for when in ("2014-08-01", "2019-01-01"):
                    dated = _redate(alert, datetime.combine(date.fromisoformat(when), time(12)))
                    now = dated.header.issued_at + timedelta(hours=1)
                    got = [
                        (d.partner_id, d.deliver, d.agreement_ids, d.redact)
                        for d in decide(dated, agreements, now=now)
                    ]
                    want = [
                        (e.partner_id, e.deliver, e.agreement_ids, e.redact)
                        for e in reference(dated, agreements, None, now)
                    ]
                    assert got == want


def _redate(alert: Alert, when: datetime) -> Alert:
    when = when.replace(tzinfo=UTC)
    header = AlertHeader.model_validate(
        alert.header.model_dump()
        | {"occurred_at": when, "issued_at": when + timedelta(hours=1), "expires_at": None}
    )
    return type(alert).model_validate(alert.model_dump() | {"header": header})


# --- Decider: the same decisions, worked out once per shape of alert ---------------------------


def test_the_decider_decides_exactly_as_decide_for_every_shape_of_alert() -> None:
    """Few values of each thing the rules look at, so that shapes recur across alerts that
    differ in the rest: leaving anything out of the shape would hand an alert another's."""
    agreements = load_agreements(REPO / "examples" / "agreements.yaml", schemas=REGISTRY)
    decider = Decider(agreements)
    partners = sorted(agreements.partners)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(8)
    for _ in range(600):
        occurred = rng.choice((datetime(2011, 6, 1, tzinfo=UTC), datetime(2019, 6, 1, tzinfo=UTC)))
        header: dict[str, Any] = {
            "tlp": rng.choice(("GREEN", "AMBER_STRICT", "RED")),
            "occurred_at": occurred, "issued_at": occurred,
            "explicit_recipients": rng.choice(([], partners[:4])),
            "expires_at": rng.choice((None, occurred + timedelta(days=1))),
            "status": rng.choice(("ACTUAL", "EXERCISE")),
        }  # fmt: skip
        refs = None
        if rng.random() < 0.5:
            header |= {"msg_type": "UPDATE", "references": [str(uuid.uuid4())]}
            refs = rng.choice((frozenset(), frozenset(partners[::3])))
        alert = make_alert(
            rng.choice(("irregular-crossing", "trafficking-arrest")), rng.choice(("rs", "al")),
            **header,
        )  # fmt: skip
        want = decide(alert, agreements, referenced_recipients=refs, now=now)
        assert decider.decide(alert, referenced_recipients=refs, now=now) == want


def test_an_expired_alert_is_decided_afresh_with_its_own_times() -> None:
    decider = Decider(TABANOVCE)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = _crossing(expires_at="2015-01-01T00:00:00Z")
    second = _crossing(expires_at="2016-01-01T00:00:00Z")
    assert "2015-01-01" in _by_partner(decider.decide(first, now=now))["mk"].reason
    assert "2016-01-01" in _by_partner(decider.decide(second, now=now))["mk"].reason
