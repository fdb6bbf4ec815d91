"""The wire format: Avro single-object encoding that any Avro library can read."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import avro.io
import avro.schema
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import AlertCodec, DecodeError, SchemaRegistry, ValidationError
from bus.avro_unions import UnionHints
from bus.codec import MAGIC
from bus.models import ALERT_TYPES, Alert
from tests.conftest import REPO
from tests.factories import example_alert
from tests.strategies import alerts

REGISTRY = SchemaRegistry.load(REPO / "schemas")
CODEC = AlertCodec(REGISTRY)


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_value_is_magic_then_reference_fingerprint_then_avro_body(alert_type: str) -> None:
    alert = example_alert(alert_type)
    value = CODEC.encode(alert)
    path = REPO / "schemas" / alert_type / "v1.avsc"
    reference = avro.schema.parse(path.read_text())  # Apache Avro's own implementation

    assert value[:2] == MAGIC == b"\xc3\x01"
    assert value[2:10] == reference.fingerprint("CRC-64-AVRO")
    body = avro.io.DatumReader(reference).read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))
    assert type(alert).from_avro(body) == alert


def test_every_schema_has_the_same_fingerprint_in_fastavro_and_apache_avro() -> None:
    for sv in REGISTRY:
        reference = avro.schema.parse(json.dumps(sv.schema_json))
        assert sv.canonical_form == reference.canonical_form, sv.path
        assert sv.fingerprint == reference.fingerprint("CRC-64-AVRO"), sv.path


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alerts())
def test_any_alert_of_any_type_round_trips(alert: Alert) -> None:
    decoded = CODEC.decode(CODEC.encode(alert))
    assert decoded.alert == alert
    assert decoded.alert_type == alert.alert_type


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alerts())
def test_naming_union_branches_writes_the_same_bytes_as_fastavro_choosing_them(
    alert: Alert,
) -> None:
    # encode() hands fastavro each nullable record in tuple notation; encode_record() lets
    # fastavro pick the branch by validating. The bytes must be identical.
    assert CODEC.encode(alert) == CODEC.encode_record(alert.alert_type, alert.to_avro())


def test_union_hints_find_every_nullable_record_including_nested_and_in_arrays() -> None:
    paths = dict(UnionHints(REGISTRY.latest("irregular-crossing").parsed).paths)
    assert paths == {
        ("persons", "*", "travel_document"): "eu.balkanalertbus.TravelDocument",
        ("suspected_facilitator",): "eu.balkanalertbus.PersonRef",
        ("suspected_facilitator", "travel_document"): "eu.balkanalertbus.TravelDocument",
    }
    record = example_alert("irregular-crossing").to_avro()
    UnionHints(REGISTRY.latest("irregular-crossing").parsed).mark(record)
    name, facilitator = record["suspected_facilitator"]
    assert name == "eu.balkanalertbus.PersonRef"
    assert facilitator["travel_document"][0] == "eu.balkanalertbus.TravelDocument"
    documents = [p["travel_document"] for p in record["persons"]]
    assert any(d is not None for d in documents)
    assert all(d is None or d[0] == "eu.balkanalertbus.TravelDocument" for d in documents)


@settings(max_examples=2000)
@given(st.binary(max_size=600))
def test_random_bytes_raise_decode_error_and_nothing_else(data: bytes) -> None:
    with pytest.raises(DecodeError):
        CODEC.decode(data)


@settings(max_examples=1000)
@given(st.sampled_from(ALERT_TYPES), st.binary(max_size=400))
def test_a_known_fingerprint_with_random_body_raises_decode_error(
    alert_type: str, body: bytes
) -> None:
    value = MAGIC + REGISTRY.latest(alert_type).fingerprint + body
    # DecodeError is the usual outcome; a random body that happens to be a valid alert is fine.
    with contextlib.suppress(DecodeError):
        CODEC.decode(value)


@settings(max_examples=300)
@given(st.sampled_from(ALERT_TYPES), st.data())
def test_every_truncation_of_a_valid_value_raises_decode_error(
    alert_type: str, data: st.DataObject
) -> None:
    value = CODEC.encode(example_alert(alert_type))
    cut = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    with pytest.raises(DecodeError):
        CODEC.decode(value[:cut])


def test_errors_name_the_problem() -> None:
    value = CODEC.encode(example_alert("readmission"))
    with pytest.raises(DecodeError, match="c3 01"):
        CODEC.decode(b"{}" + value[2:])
    with pytest.raises(DecodeError, match="Unknown writer schema fingerprint 0000000000000000"):
        CODEC.decode(MAGIC + bytes(8) + value[10:])
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode(value + b"\x00")


@pytest.mark.parametrize("wrong", [2**63, -(2**63) - 1, 10**20, "many", None])
def test_a_record_fastavro_cannot_write_raises_validation_error_and_nothing_else(
    wrong: object,
) -> None:
    # fastavro raises OverflowError for an int beyond 64 bits, TypeError or ValueError for others.
    record = example_alert("irregular-crossing").to_avro()
    record["head_count"] = wrong
    with pytest.raises(ValidationError, match=r"irregular-crossing record does not match v1\.avsc"):
        CODEC.encode_record("irregular-crossing", record)


def test_older_writer_version_resolves_to_the_current_reader(tmp_path: Path) -> None:
    # Make a v2 of readmission with one more field (with a default), as a real evolution would.
    schemas = tmp_path / "schemas"
    for sv in REGISTRY:
        target = schemas / sv.alert_type
        target.mkdir(parents=True, exist_ok=True)
        (target / "v1.avsc").write_text(json.dumps(sv.schema_json))
    v2 = json.loads(json.dumps(REGISTRY.latest("readmission").schema_json))
    v2["fields"].append(
        {"name": "escort_count", "type": ["null", "int"], "default": None, "doc": "Escorts."}
    )
    (schemas / "readmission" / "v2.avsc").write_text(json.dumps(v2))
    registry = SchemaRegistry.load(schemas)
    assert registry.compatibility_problems() == []

    alert = example_alert("readmission")
    old_value = CODEC.encode(alert)  # written with v1
    writer, record = AlertCodec(registry).decode_record(old_value)
    assert writer.version == 1
    assert record["escort_count"] is None  # filled from the v2 reader's default
    assert {k: v for k, v in record.items() if k != "escort_count"} == _plain(alert)


def _plain(alert: Alert) -> dict[str, object]:
    buf = io.BytesIO()
    parsed = REGISTRY.latest(alert.alert_type).parsed
    fastavro.schemaless_writer(buf, parsed, alert.to_avro())
    buf.seek(0)
    record: dict[str, object] = fastavro.schemaless_reader(buf, parsed, None)
    return record
