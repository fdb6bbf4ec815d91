"""Country mappings on their sample feeds, without Kafka: types, ids, times, rejections."""

# ruff: noqa: RUF001  (Cyrillic and Greek letters are meant)

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bus.models import Alert, MessageType, PersonRef
from services.adapters.errors import AdapterError, RecordRejected
from services.adapters.feeds import FeedRecord, Limits, json_record
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import (
    CountryMapping,
    MappingContext,
    alert_id_for,
    available_countries,
    load_mapping,
)
from tests.conftest import REPO

FEEDS = REPO / "examples" / "feeds"
LIMITS = Limits(max_field_chars=4096)

#: What each sample feed holds: alerts per type (every record of the samples is valid).
EXPECTED_TYPES: dict[str, dict[str, int]] = {
    "al": {"irregular-crossing": 12, "readmission": 9, "trafficking-arrest": 13},
    "ba": {"citizen-assistance": 4, "foreign-fighter-travel": 4, "irregular-crossing": 15,
           "readmission": 9},
    "gr": {"irregular-crossing": 12, "readmission": 8, "trafficking-arrest": 13},
    "me": {"irregular-crossing": 12, "readmission": 8, "trafficking-arrest": 11},
    "mk": {"citizen-assistance": 5, "foreign-fighter-travel": 4, "irregular-crossing": 13,
           "readmission": 9},
    "rs": {"citizen-assistance": 5, "foreign-fighter-travel": 5, "irregular-crossing": 15,
           "readmission": 8, "trafficking-arrest": 7},
}  # fmt: skip


def sample_feed(cc: str) -> Path:
    [path] = sorted((FEEDS / cc).iterdir())
    return path


def context(mapping: CountryMapping) -> MappingContext:
    return MappingContext(mapping.cc, mapping.conventions.language, IdentityHasher.development())


def map_feed(cc: str) -> list[Alert]:
    mapping = load_mapping(cc)
    records = mapping.feed.parse(sample_feed(cc).read_bytes(), LIMITS)
    return [mapping.map(r, context(mapping)) for r in records]


def persons(alert: Alert) -> list[PersonRef]:
    found: list[PersonRef] = []
    for name in ("persons", "suspects"):
        found += getattr(alert, name, [])
    for name in ("person", "suspected_facilitator"):
        if getattr(alert, name, None) is not None:
            found.append(getattr(alert, name))
    return found


def test_there_are_six_countries_each_with_a_sample_feed() -> None:
    assert available_countries() == sorted(EXPECTED_TYPES)
    for cc in available_countries():
        mapping = load_mapping(cc)
        assert mapping.cc == cc
        assert sample_feed(cc).name.endswith(mapping.feed.suffixes)
    with pytest.raises(AdapterError, match="No adapter mapping for country 'zz'"):
        load_mapping("zz")


@pytest.mark.parametrize("cc", sorted(EXPECTED_TYPES))
def test_each_sample_feed_maps_every_record_to_the_expected_types(cc: str) -> None:
    alerts = map_feed(cc)
    assert Counter(a.alert_type for a in alerts) == EXPECTED_TYPES[cc]
    assert all(a.origin == cc for a in alerts)
    # Each sample has updates and withdrawals, and they refer to the version before.
    kinds = Counter(a.header.msg_type for a in alerts)
    assert kinds[MessageType.UPDATE] >= 1
    assert kinds[MessageType.CANCEL] >= 1
    ids = {a.alert_id for a in alerts}
    assert len(ids) == len(alerts)
    for alert in alerts:
        if alert.header.msg_type is not MessageType.ALERT:
            assert set(alert.header.references) <= ids


def test_alert_ids_are_deterministic() -> None:
    first, second = map_feed("rs"), map_feed("rs")
    assert [a.alert_id for a in first] == [a.alert_id for a in second]
    assert first == second
    assert first[0].alert_id == alert_id_for("rs", "МУП-2014-00118", 1)
    assert alert_id_for("rs", "МУП-2014-00118", 2) != first[0].alert_id
    assert alert_id_for("mk", "МУП-2014-00118", 1) != first[0].alert_id


def test_the_same_person_gets_one_token_in_every_countrys_feed() -> None:
    tokens: dict[str, set[str]] = {}
    spellings: set[str] = set()
    for cc in EXPECTED_TYPES:
        for alert in map_feed(cc):
            for p in persons(alert):
                if p.date_of_birth and p.date_of_birth.isoformat() == "1984-03-15":
                    assert p.identity_token is not None
                    tokens.setdefault(cc, set()).add(p.identity_token)
                    spellings.add(p.family_name_original or p.family_name or "")
    # Петровић (rs, ba, me), Петровиќ (mk), Petroviq (al), Πέτροβιτς (gr): one token.
    assert set(tokens) == set(EXPECTED_TYPES)
    assert len(set().union(*tokens.values())) == 1
    assert {"Петровић", "Петровиќ", "Petroviq", "Πέτροβιτς"} <= spellings


def test_serbian_cyrillic_and_greek_records_of_one_person_share_the_token() -> None:
    def token_of(cc: str, family_original: str) -> str:
        for alert in map_feed(cc):
            for p in persons(alert):
                if p.family_name_original == family_original and p.identity_token:
                    return p.identity_token
        raise AssertionError(f"{family_original} not in the {cc} feed")

    assert token_of("rs", "Петровић") == token_of("gr", "Πέτροβιτς")
    assert token_of("rs", "Пападопулос") == token_of("gr", "Παπαδόπουλος")
    assert token_of("rs", "Петровић") != token_of("rs", "Пападопулос")


def rs_row(**changes: str) -> FeedRecord:
    """The first record of the Serbian sample, changed."""
    mapping = load_mapping("rs")
    record = mapping.feed.parse(sample_feed("rs").read_bytes(), LIMITS)[0]
    return FeedRecord(1, "line 2", {**record.data, **changes}, record.raw)


def map_rs(record: FeedRecord) -> Alert:
    mapping = load_mapping("rs")
    return mapping.map(record, context(mapping))


def test_local_times_become_utc_with_summer_time() -> None:
    winter = map_rs(rs_row(датум="08.03.2014.", време="06:40", унето="08.03.2014. 10:41"))
    assert winter.header.occurred_at == datetime(2014, 3, 8, 5, 40, tzinfo=UTC)
    summer = map_rs(
        rs_row(датум="08.07.2014.", време="06:40", унето="08.07.2014. 10:41", важи_до="")
    )
    assert summer.header.occurred_at == datetime(2014, 7, 8, 4, 40, tzinfo=UTC)
    assert summer.header.issued_at == datetime(2014, 7, 8, 8, 41, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"орган": ""}, "орган", "is missing"),
        ({"датум": "31.02.2014."}, "датум", "expected a date like 31.12.2014. (dd.mm.yyyy.)"),
        ({"време": "25:61"}, "време", "expected a time like 23:59"),
        ({"правац_из": "Нарнија"}, "правац_из", "unknown country 'Нарнија'"),
        ({"држављанство": "Атлантида"}, "држављанство", "unknown country"),
        ({"ознака_тајности": "тајно"}, "ознака_тајности", "unknown value 'тајно'"),
        ({"број_лица": "много"}, "број_лица", "expected a whole number"),
        ({"број_лица": "-3"}, "број_лица", "at least 0"),
        ({"врста": "пожар"}, "врста", "unknown value 'пожар'; expected one of"),
        ({"верзија": "0"}, "верзија", "at least 1"),
        ({"датум_рођења": "01.01.2999."}, "date of birth", "in the future"),
        ({"држављанства": "Сирија 12"}, "држављанства", "expected 'country: count' items"),
    ],
)
def test_a_broken_record_is_rejected_naming_the_native_field(
    changes: dict[str, str], field: str, reason: str
) -> None:
    with pytest.raises(RecordRejected) as info:
        map_rs(rs_row(**changes))
    assert info.value.field == field
    assert reason in info.value.reason


def test_nested_fields_are_named_with_their_path() -> None:
    mapping = load_mapping("mk")
    document = json.loads(sample_feed("mk").read_text("utf-8"))
    record: dict[str, Any] = next(
        r for r in document["записи"] if r["тип"] == "реадмисија" and r["лица"]
    )
    record["лица"][0]["датум_на_раѓање"] = "1990-01-01"
    with pytest.raises(RecordRejected) as info:
        mapping.map(json_record(record, 1, "body[0]", LIMITS), context(mapping))
    assert info.value.field == "лица[0].датум_на_раѓање"
    assert "dd.mm.yyyy" in info.value.reason


def test_a_withdrawn_first_version_is_refused() -> None:
    with pytest.raises(RecordRejected, match="version of at least 2"):
        map_rs(rs_row(статус="повучен", верзија="1"))


def test_a_record_of_an_unforeseen_shape_is_rejected_not_a_crash() -> None:
    mapping = load_mapping("gr")
    weird: dict[str, Any] = {"κατηγορία": ["not", "text"]}
    with pytest.raises(RecordRejected, match="expected text, got list"):
        mapping.map(json_record(weird, 1, "body[0]", LIMITS), context(mapping))
    with pytest.raises(RecordRejected, match="expected a JSON object"):
        mapping.map(json_record([1, 2], 1, "body[0]", LIMITS), context(mapping))
