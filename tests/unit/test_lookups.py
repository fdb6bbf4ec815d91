"""Lookup agreements (the ``lookups:`` section) and the lookup records of the partner contract."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
import yaml

from bus import AlertCodec, PolicyError, SchemaRegistry
from bus.agreements import load_agreements, parse_agreements
from bus.codec import DecodedNotice
from bus.errors import DecodeError, ValidationError
from bus.models import Hit, HitNotice, LookupAnswer, LookupRequest, TokenResult
from tests.conftest import REPO
from tests.unit.test_models import disagreements, walk

REGISTRY = SchemaRegistry.load(REPO / "schemas")
CODEC = AlertCodec(REGISTRY)
EXAMPLE = REPO / "examples" / "agreements.yaml"
TOKEN = "it1." + "ab" * 16
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _example_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text("utf-8"))
    return data


def test_the_example_lookups_load_and_scope_by_requester_and_date() -> None:
    agreements = load_agreements(EXAMPLE, schemas=REGISTRY)
    europol = agreements.lookup_scope("europol", date(2026, 1, 1))
    assert ("rs", "trafficking-arrest") in europol
    assert ("gr", "trafficking-arrest") in europol
    tabanovce = agreements.lookup_scope("jc-tabanovce", date(2026, 1, 1))
    assert {owner for owner, _ in tabanovce} == {"rs", "mk"}
    assert agreements.lookup_scope("frontex", date(2026, 1, 1)) == {}
    # Before the Sarajevo conference, the Balkan-route lookups were not in force.
    assert agreements.lookup_scope("at", date(2018, 7, 4)) == {}
    assert agreements.lookup_scope("at", date(2018, 7, 5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lk: lk.update(requesters=["nobody"]), r"requester 'nobody' is not a partner"),
        (lambda lk: lk.update(owners=["zz"]), r"owner 'zz' publishes nothing"),
        (lambda lk: lk.update(types=["crossing"]), r"unknown alert type 'crossing'"),
        (lambda lk: lk.pop("purpose"), r"missing key\(s\) purpose"),
        (lambda lk: lk.update(colour="red"), r"unknown key\(s\) colour"),
        (lambda lk: lk.update(valid_until=date(2000, 1, 1)), r"valid_until .* before"),
        (lambda lk: lk.update(id="Bad Id"), r"id must be lower-case"),
    ],
)
def test_a_bad_lookup_agreement_stops_start_up_naming_it(change: Any, message: str) -> None:
    data = copy.deepcopy(_example_data())
    change(data["lookups"][1])
    with pytest.raises(PolicyError, match=message) as info:
        parse_agreements(data, source="x.yaml", schemas=REGISTRY)
    assert str(info.value).startswith("x.yaml: ")


def test_a_duplicate_lookup_id_is_refused() -> None:
    data = _example_data()
    data["lookups"].append(dict(data["lookups"][0]))
    with pytest.raises(PolicyError, match="duplicate lookup agreement id"):
        parse_agreements(data, source="x.yaml", schemas=REGISTRY)


def test_the_lookups_section_is_optional() -> None:
    data = _example_data()
    del data["lookups"]
    assert parse_agreements(data, source="x.yaml", schemas=REGISTRY).lookups == ()


@pytest.mark.parametrize(
    ("record_type", "model"),
    [("hit-notice", HitNotice), ("lookup-request", LookupRequest), ("lookup-answer", LookupAnswer)],
)
def test_the_models_agree_with_the_schemas_and_every_field_is_documented(
    record_type: str, model: Any
) -> None:
    schema = json.loads((REPO / "schemas" / record_type / "v1.avsc").read_text("utf-8"))
    assert disagreements(schema, model) == []
    assert [n["name"] for n in walk(schema) if not n.get("doc", "").strip()] == []
    assert record_type not in REGISTRY.alert_types


def test_a_hit_notice_round_trips_as_an_inbox_notice() -> None:
    notice = HitNotice.for_owner(
        "rs", requester="europol", lookup_id=uuid.uuid4(), agreement_ids=["b", "a"],
        alert_ids=[uuid.uuid4()], now=NOW,
    )  # fmt: skip
    decoded = CODEC.decode_message(CODEC.encode_notice(notice))
    assert isinstance(decoded, DecodedNotice)
    assert decoded.notice == notice
    assert notice.agreement_ids == ["a", "b"]


def test_an_answer_round_trips_and_a_request_is_not_an_inbox_record() -> None:
    hit = Hit(owner="rs", alert_id=uuid.uuid4(), alert_type="trafficking-arrest", role="suspect",
              occurred_on=date(2014, 6, 13), place="Vranje", contact="MUP")  # fmt: skip
    answer = LookupAnswer(
        request_id=uuid.uuid4(), requester="europol", answered_at=NOW,
        results=[TokenResult(token=TOKEN, hit=True, hits=[hit])],
    )  # fmt: skip
    _, record = CODEC.decode_record(CODEC.encode_record("lookup-answer", answer.to_avro()))
    assert LookupAnswer.from_avro(record) == answer
    request = LookupRequest(request_id=uuid.uuid4(), requester="mk", tokens=[TOKEN])
    value = CODEC.encode_record("lookup-request", request.to_avro())
    with pytest.raises(DecodeError, match="lookup-request"):
        CODEC.decode_message(value)


@pytest.mark.parametrize("tokens", [[], ["Petrović"], ["it1." + "AB" * 16], [TOKEN] * 1001])
def test_a_request_with_bad_tokens_is_refused_without_repeating_them(tokens: list[str]) -> None:
    with pytest.raises(ValidationError, match="tokens") as info:
        LookupRequest.from_avro({"request_id": str(uuid.uuid4()), "requester": "mk",
                                 "tokens": tokens})  # fmt: skip
    assert "Petrović" not in str(info.value)
