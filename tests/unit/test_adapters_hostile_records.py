"""A misbehaving member's records, through each country's own format and mapping, without Kafka:
numbers no alert field holds, records nested thousands of levels deep, errors nobody foresaw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bus import BusSettings, Publisher, generate_keypair
from services.adapters.adapter import Adapter
from services.adapters.errors import FeedRejected, RecordRejected
from services.adapters.feeds import FeedRecord
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import load_mapping
from services.adapters.settings import AdapterSettings
from tests.hostile_feeds import FIELDS, NESTING, deep_file, numbers_file, sample_records
from tests.unit.test_adapters_countries import LIMITS, context

HUGE = [3_000_000_000, 10**20]


def map_all(cc: str, data: bytes) -> list[Any]:
    """Each record's alert, or its ``RecordRejected``."""
    mapping = load_mapping(cc)
    out: list[Any] = []
    for record in mapping.feed.parse(data, LIMITS):
        try:
            out.append(mapping.map(record, context(mapping)))
        except RecordRejected as exc:
            out.append(exc)
    return out


@pytest.mark.parametrize("cc", sorted(FIELDS))
def test_a_head_count_no_avro_int_holds_is_rejected_naming_the_native_field(cc: str) -> None:
    outcomes = map_all(cc, numbers_file(cc, HUGE))
    good, hostile = outcomes[: sample_records(cc)], outcomes[sample_records(cc) :]
    assert not any(isinstance(o, RecordRejected) for o in good)
    assert len(hostile) == len(HUGE)
    for rejected, count in zip(hostile, HUGE, strict=True):
        assert isinstance(rejected, RecordRejected)
        assert rejected.field is not None
        assert rejected.field.endswith(FIELDS[cc].head_count)
        assert rejected.reason == (
            f"expected a number of at most 2147483647 (the largest Avro int), got {count}"
        )


@pytest.mark.parametrize("levels", [5_000, 100_000])
@pytest.mark.parametrize("cc", ["ba", "me"])
def test_a_record_nested_thousands_deep_is_the_only_one_rejected(cc: str, levels: int) -> None:
    outcomes = map_all(cc, deep_file(cc, levels))
    assert len(outcomes) == sample_records(cc) + 1
    assert not any(isinstance(o, RecordRejected) for o in outcomes[:-1])
    assert isinstance(outcomes[-1], RecordRejected)
    assert outcomes[-1].reason == "nested deeper than 32 levels"


@pytest.mark.parametrize("levels", [5_000, 100_000])
@pytest.mark.parametrize("cc", ["gr", "mk"])
def test_a_json_document_nested_thousands_deep_is_rejected_whole(cc: str, levels: int) -> None:
    mapping = load_mapping(cc)
    with pytest.raises(FeedRejected, match="nested deeper than 256 levels"):
        mapping.feed.parse(deep_file(cc, levels), LIMITS)


def test_every_nesting_format_is_covered() -> None:
    assert sorted(NESTING) == sorted(
        cc for cc in FIELDS if load_mapping(cc).feed.suffixes != (".csv",)
    )


def test_an_error_the_mapping_did_not_foresee_rejects_the_record_with_its_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mapping = load_mapping("rs")
    record = mapping.feed.parse(numbers_file("rs", []), LIMITS)[0]

    def broken(*_: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(type(mapping), "to_alert", broken)
    with pytest.raises(RecordRejected) as info:
        mapping.map(record, context(mapping))
    assert info.value.reason == "unexpected ZeroDivisionError: division by zero"
    assert isinstance(info.value.unexpected, ZeroDivisionError)


# -- The adapter prepares each record on its own: one that cannot be encoded is set aside -------


@pytest.fixture
async def offline_adapter(keys_dir: Path, offline_settings: BusSettings) -> Adapter:
    generate_keypair(keys_dir, "rs")
    # Not entered: preparing needs no broker.
    return Adapter(offline_settings, load_mapping("rs"), identity=IdentityHasher.development())


def rs_records() -> list[FeedRecord]:
    return load_mapping("rs").feed.parse(numbers_file("rs", []), LIMITS)


async def test_an_alert_that_does_not_encode_is_set_aside_and_the_rest_prepared(
    offline_adapter: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = rs_records()[:3]
    real_prepare = Publisher.prepare
    calls = 0

    def flaky(self: Publisher, alert: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # as fastavro does for an int over 64 bits
            raise OverflowError("Python int too large to convert to C long")
        return real_prepare(self, alert)

    monkeypatch.setattr(Publisher, "prepare", flaky)
    first, second, third = await offline_adapter.prepare_all(records)
    assert not isinstance(first, RecordRejected)
    assert not isinstance(third, RecordRejected)
    assert isinstance(second, RecordRejected)
    assert second.reason == "unexpected OverflowError: Python int too large to convert to C long"


async def test_a_record_whose_alert_is_too_large_for_kafka_is_set_aside(
    keys_dir: Path, offline_settings: BusSettings
) -> None:
    generate_keypair(keys_dir, "rs")
    adapter = Adapter(
        offline_settings,
        load_mapping("rs"),
        identity=IdentityHasher.development(),
        config=AdapterSettings(max_alert_bytes=300),
    )
    for outcome in await adapter.prepare_all(rs_records()[:2]):
        assert isinstance(outcome, RecordRejected)
        assert "at most 300 (BUS_ADAPTER_MAX_ALERT_BYTES)" in outcome.reason


async def test_an_alert_avro_cannot_carry_is_set_aside_naming_why(
    offline_adapter: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Should a model ever let through a number Avro cannot carry, the codec's OverflowError
    # becomes this record's rejection naming the field; the records around it are published.
    from bus.models import Alert, IrregularCrossing

    real_map = Adapter.map

    def too_big(self: Adapter, record: FeedRecord) -> Alert:
        alert = real_map(self, record)
        if isinstance(alert, IrregularCrossing):  # model_copy does not validate: as a lax model
            return alert.model_copy(update={"head_count": 10**20})
        return alert

    monkeypatch.setattr(Adapter, "map", too_big)
    outcomes = await offline_adapter.prepare_all(rs_records())
    rejected = [o for o in outcomes if isinstance(o, RecordRejected)]
    assert len(rejected) == 15  # the sample's irregular crossings; the 25 others are prepared
    for outcome in rejected:
        assert outcome.reason.startswith(
            "the alert cannot be encoded: irregular-crossing record does not match v1.avsc: "
            "field head_count: OverflowError"
        )
        assert outcome.field == "alert.head_count"
