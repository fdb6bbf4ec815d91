"""The lookup engine without Kafka: agreements decide what a requester sees, and what it may not
see answers exactly as if absent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus import SchemaRegistry
from bus.agreements import load_agreements
from bus.models import Alert
from services.index.lookup import LookupEngine, LookupRefused
from services.index.store import IndexStore
from tests.conftest import REPO
from tests.factories import make_alert

AGREEMENTS = load_agreements(REPO / "examples" / "agreements.yaml",
                             schemas=SchemaRegistry.load(REPO / "schemas"))  # fmt: skip
NOW = datetime.now(UTC)
TOKEN = "it1." + "5" * 32


def arrest(origin: str, **header: object) -> Alert:
    alert = make_alert("trafficking-arrest", origin, **header)
    suspects = [alert.suspects[0].model_copy(update={"identity_token": TOKEN})]  # type: ignore[attr-defined]
    return alert.model_copy(update={"suspects": suspects})


@pytest.fixture
def engine(tmp_path: Path) -> LookupEngine:
    store = IndexStore.open(tmp_path / "i.sqlite3")
    store.apply_batch([arrest("rs"), arrest("gr"), arrest("mk")], {}, now_ms=0)
    return LookupEngine(store, AGREEMENTS)


def ask(engine: LookupEngine, requester: str, *tokens: str) -> list[dict[str, object]]:
    outcome = engine.lookup(requester, list(tokens), lookup_id=uuid.uuid4(), channel="test",
                            now=NOW)  # fmt: skip
    return [r.model_dump(mode="json") for r in outcome.answer.results]


def test_owners_and_types_come_from_the_lookup_agreements(engine: LookupEngine) -> None:
    assert {h["owner"] for h in ask(engine, "europol", TOKEN)[0]["hits"]} == {"rs", "gr", "mk"}  # type: ignore[union-attr]
    assert {h["owner"] for h in ask(engine, "jc-tabanovce", TOKEN)[0]["hits"]} == {"rs", "mk"}  # type: ignore[union-attr]


def test_what_is_not_agreed_answers_exactly_like_an_unknown_token(engine: LookupEngine) -> None:
    unknown = "it1." + "6" * 32
    hidden, absent = ask(engine, "frontex", TOKEN, unknown)
    assert {**hidden, "token": ""} == {**absent, "token": ""} == {"token": "", "hit": False,
                                                                   "hits": []}  # fmt: skip


def test_a_country_does_not_find_its_own_alerts(tmp_path: Path) -> None:
    store = IndexStore.open(tmp_path / "i.sqlite3")
    for origin in ("rs", "gr"):
        alert = make_alert("irregular-crossing", origin)
        persons = [alert.persons[0].model_copy(update={"identity_token": TOKEN})]  # type: ignore[attr-defined]
        store.apply_batch([alert.model_copy(update={"persons": persons})], {}, now_ms=0)
    hits = ask(LookupEngine(store, AGREEMENTS), "rs", TOKEN)[0]["hits"]
    assert [h["owner"] for h in hits] == ["gr"]  # type: ignore[union-attr]


def test_hits_make_one_notice_per_owner_and_an_audit_without_tokens(engine: LookupEngine) -> None:
    outcome = engine.lookup("europol", [TOKEN], lookup_id=uuid.uuid4(), channel="t", now=NOW)
    assert [n.owner for n in outcome.notices] == ["gr", "mk", "rs"]
    assert all(n.requester == "europol" for n in outcome.notices)
    assert outcome.audit["tokens"] == 1
    assert outcome.audit["hits"] == 1
    assert outcome.audit["matches"] == 3
    assert TOKEN not in repr(outcome.audit)


def test_expired_entries_are_gone(tmp_path: Path) -> None:
    store = IndexStore.open(tmp_path / "i.sqlite3")
    expires = NOW + timedelta(hours=1)
    store.apply_batch([arrest("rs", expires_at=expires)], {}, now_ms=0)
    later = LookupEngine(store, AGREEMENTS, expiry_clock=lambda: expires)
    assert ask(later, "europol", TOKEN)[0]["hit"] is False
    sooner = LookupEngine(store, AGREEMENTS, expiry_clock=lambda: NOW)
    assert ask(sooner, "europol", TOKEN)[0]["hit"] is True


@pytest.mark.parametrize(
    ("requester", "tokens", "problem"),
    [
        ("nobody", [TOKEN], "Unknown requester 'nobody'"),
        ("europol", ["Петровић Марко"], "expected an identity token"),
        ("europol", [TOKEN] * 1001, "1001 tokens in one lookup; at most 1000"),
        ("europol", [], "at least 1 item"),
    ],
)
def test_bad_lookups_name_the_problem(
    engine: LookupEngine, requester: str, tokens: list[str], problem: str
) -> None:
    with pytest.raises(LookupRefused, match=problem) as info:
        engine.lookup(requester, tokens, lookup_id=uuid.uuid4(), channel="t", now=NOW)
    assert "Петровић" not in str(info.value)
