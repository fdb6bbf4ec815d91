"""The wire format: Avro single-object encoding that any Avro library can read."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import AlertCodec, DecodeError, SchemaRegistry, ValidationError
from bus.avro_writer import AvroWriteError, UnsupportedSchema, compile_writer
from bus.codec import MAGIC
from bus.models import ALERT_TYPES, Alert
from bus.schemas import SchemaVersion
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


def _fastavro_body(alert_type: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, REGISTRY.latest(alert_type).parsed, record)
    return buf.getvalue()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alerts())
def test_the_compiled_writers_write_the_bytes_fastavro_writes(alert: Alert) -> None:
    expected = _fastavro_body(alert.alert_type, alert.to_avro())
    assert CODEC.encode(alert)[10:] == expected  # from the model
    assert CODEC.encode_record(alert.alert_type, alert.to_avro())[10:] == expected  # the dict


@pytest.mark.parametrize("schema", list(REGISTRY), ids=lambda sv: f"{sv.alert_type}-v{sv.version}")
def test_every_schema_is_written_as_fastavro_writes_it(schema: SchemaVersion) -> None:
    # Alerts, notices and lookups alike: random records of the schema, as fastavro makes them.
    random.seed(schema.fingerprint)
    write = compile_writer(schema.parsed)
    for record in generate_many(schema.parsed, 200):
        out = bytearray()
        write(out, record)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, record)
        assert bytes(out) == buf.getvalue()


MODEL_WRITERS = {t: compile_writer(REGISTRY.latest(t).parsed, from_model=True) for t in ALERT_TYPES}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(alerts())
def test_an_alert_is_written_from_its_model_as_from_its_to_avro_dict(alert: Alert) -> None:
    out = bytearray()
    MODEL_WRITERS[alert.alert_type](out, alert)  # no fallback here: it must write every alert
    assert bytes(out) == _fastavro_body(alert.alert_type, alert.to_avro())


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_a_value_the_model_writer_cannot_write_is_left_to_to_avro_which_names_the_field() -> None:
    # model_copy does not validate: a model holding a value no alert can hold.
    alert = example_alert("trafficking-arrest").model_copy(update={"price_per_person_eur": "12"})
    with pytest.raises(AvroWriteError, match="price_per_person_eur"):
        MODEL_WRITERS["trafficking-arrest"](bytearray(), alert)
    with pytest.raises(ValidationError, match="price_per_person_eur: expected null or double"):
        CODEC.encode(alert)


def test_an_infinite_price_is_written_from_the_model_as_to_avro_gives_it() -> None:
    alert = example_alert("trafficking-arrest").model_copy(
        update={"price_per_person_eur": float("inf")}
    )
    out = bytearray()
    MODEL_WRITERS["trafficking-arrest"](out, alert)
    assert bytes(out) == _fastavro_body("trafficking-arrest", alert.to_avro())


_EDGE_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "Edge", "fields": [
        {"name": "n", "type": "long"},
        {"name": "i", "type": ["null", "int"]},
        {"name": "s", "type": "string"},
        {"name": "d", "type": "double"},
        {"name": "od", "type": ["null", "double"]},
        {"name": "b", "type": "boolean"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "xs", "type": {"type": "array", "items": ["null", "string"]}},
        {"name": "m", "type": {"type": "map", "values": "long"}},
        {"name": "r", "type": ["null", {"type": "record", "name": "R", "fields": [
            {"name": "e2", "type": "E"}, {"name": "later", "type": "string", "default": "x"}]}]},
        {"name": "absent", "type": ["null", "string"]},
        {"name": "dflt", "type": "long", "default": 7},
    ],
})  # fmt: skip
_LONGS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-65, -64, 63, 64, 2**31, -(2**31) - 1])


@settings(max_examples=500)
@given(
    n=_LONGS,
    i=st.none() | st.integers(-(2**31), 2**31 - 1),
    s=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=90),
    d=st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
    od=st.none() | st.floats(allow_nan=False),
    b=st.booleans(),
    e=st.sampled_from("ABC"),
    xs=st.lists(st.none() | st.text(max_size=3), max_size=70),
    m=st.dictionaries(st.text(max_size=3), _LONGS, max_size=3),
    r=st.none() | st.builds(dict, e2=st.sampled_from("ABC")),
)
def test_the_compiled_writer_writes_fastavros_bytes_for_every_kind_of_value(**record: Any) -> None:
    out = bytearray()
    compile_writer(_EDGE_SCHEMA)(out, record)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _EDGE_SCHEMA, record)
    assert bytes(out) == buf.getvalue()


def test_a_schema_the_writer_does_not_take_is_refused_when_compiled() -> None:
    with pytest.raises(UnsupportedSchema, match="only null and one other branch"):
        compile_writer(fastavro.parse_schema({
            "type": "record", "name": "Two", "fields": [{"name": "v", "type": ["long", "string"]}],
        }))  # fmt: skip


@pytest.mark.parametrize(
    ("path", "wrong", "message"),
    [
        (
            ("persons", 0, "sex"),
            "Q",
            r"field persons\.0\.sex: expected null or one of the symbols F, M, X, UNKNOWN",
        ),
        (("head_count",), "many", r"field head_count: TypeError"),
        (
            ("suspected_facilitator",),
            "someone",
            r"field suspected_facilitator: expected null or record",
        ),
        (
            ("persons", 1, "travel_document", "number"),
            5,
            r"field persons\.1\.travel_document\.number: expected null or string, got int",
        ),
        (
            ("persons", 1, "travel_document", "kind"),
            "ID",
            r"field persons\.1\.travel_document\.kind: expected one of the symbols",
        ),
        (("header", "issuing_agency"), 5, r"field header\.issuing_agency: AttributeError"),
        (("header", "case_ref"), 7, r"field header\.case_ref: expected null or string, got int"),
    ],
)
def test_a_value_that_does_not_fit_names_its_field(
    path: tuple[str | int, ...], wrong: object, message: str
) -> None:
    record = example_alert("irregular-crossing").to_avro()
    node: Any = record
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = wrong
    with pytest.raises(ValidationError, match=message) as caught:
        CODEC.encode_record("irregular-crossing", record)
    assert caught.value.field == ".".join(str(step) for step in path)


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
