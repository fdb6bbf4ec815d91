"""The pydantic models agree with the .avsc contract field by field; the examples round-trip."""

from __future__ import annotations

import calendar
import copy
import io
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import fastavro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo

import bus.models
from bus.errors import BusError
from bus.errors import ValidationError as BusValidationError
from bus.models import (
    ALERT_MODELS,
    ALERT_TYPES,
    Alert,
    AlertHeader,
    IrregularCrossing,
    IsoDate,
    MessageType,
    OriginalScript,
    PersonRef,
    Readmission,
    ReadmissionStage,
    Sex,
    TraffickingArrest,
    TravelDocument,
    TravelDocumentKind,
    UtcDatetime,
    WarningMarker,
)
from bus.models._common import INT32_RANGE, INT64_RANGE, AvroIntRange, Int32, Int64
from bus.schemas import NOTICE_TYPES

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
EXAMPLES = REPO / "examples" / "alerts"
NAMESPACE = "eu.balkanalertbus"
SHARED_RECORDS = ("AlertHeader", "PersonRef")


def schema_json(alert_type: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((SCHEMAS / alert_type / "v1.avsc").read_text())
    return result


def parsed_schema(alert_type: str) -> Any:
    return fastavro.parse_schema(schema_json(alert_type))


def example(alert_type: str) -> Alert:
    return ALERT_MODELS[alert_type].model_validate_json(
        (EXAMPLES / f"{alert_type}.json").read_text()
    )


def fastavro_round_trip(alert: Alert) -> Alert:
    schema = parsed_schema(alert.alert_type)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, alert.to_avro())
    buffer.seek(0)
    record = fastavro.schemaless_reader(buffer, schema, schema)
    assert isinstance(record, dict)
    return type(alert).from_avro(record)


# --- The agreement checker --------------------------------------------------------------------

_PRIMITIVES: dict[str, type] = {
    "string": str,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "boolean": bool,
}
#: What a field doc must say of each rich model type, which Avro carries as a plain primitive
#: (the schemas use no logical types: implementations disagree on their canonical form).
MILLIS_DOC = "milliseconds since the Unix epoch, UTC"
DATE_DOC = "ISO 8601 calendar date 'YYYY-MM-DD'"
UUID_DOC = "UUID as canonical lower-case text"
_RICH: tuple[tuple[Any, str, str], ...] = (
    # model annotation (compared whole, validators and all), Avro primitive, doc phrase
    (UtcDatetime, "long", MILLIS_DOC),
    (IsoDate, "string", DATE_DOC),
    (uuid.UUID, "string", UUID_DOC),
)


#: The range check an Avro int or long field's model type must carry (Int32, Int64).
_INT_RANGES = {"int": INT32_RANGE, "long": INT64_RANGE}


def _int_range(annotation: Any) -> AvroIntRange | None:
    # Int32 inside Annotated[Int32, Field(ge=1, le=4)] is itself an Annotated: look at every level.
    while typing.get_origin(annotation) is typing.Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, AvroIntRange):
                return meta
        annotation = typing.get_args(annotation)[0]
    return None


def _unwrap(annotation: Any) -> Any:
    # Annotated[str, validator] (CountryCode, UtcDatetime) is a str or datetime to Avro.
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _annotation(info: FieldInfo) -> Any:
    # pydantic keeps the validators of a top-level Annotated (UtcDatetime) apart, in metadata.
    return typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


class _Agreement:
    """Walks an Avro record and a model side by side and lists every disagreement."""

    def __init__(self) -> None:
        self.named: dict[str, dict[str, Any]] = {}
        self.problems: list[str] = []

    def _problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def _define(self, definition: dict[str, Any]) -> None:
        self.named[definition["name"]] = definition
        self.named[f"{NAMESPACE}.{definition['name']}"] = definition

    def record(self, schema: dict[str, Any], model: type[BaseModel], path: str) -> None:
        self._define(schema)
        if schema["name"] != model.__name__:
            self._problem(path, f"Avro record {schema['name']} is modelled by {model.__name__}")
        avro_names = [field["name"] for field in schema["fields"]]
        model_names = list(model.model_fields)
        if avro_names != model_names:
            self._problem(path, f"fields differ: Avro {avro_names}, model {model_names}")
        for field in schema["fields"]:
            info = model.model_fields.get(field["name"])
            if info is None:
                continue
            where = f"{path}.{field['name']}"
            if "default" in field:
                if info.is_required():
                    self._problem(where, f"Avro default {field['default']!r}, model has none")
                elif info.get_default(call_default_factory=True) != field["default"]:
                    model_default = info.get_default(call_default_factory=True)
                    self._problem(
                        where, f"Avro default {field['default']!r}, model {model_default!r}"
                    )
            elif not info.is_required():
                self._problem(where, "model has a default, Avro has none")
            self.type(field["type"], _annotation(info), where, field.get("doc", ""))

    def type(self, avro_type: Any, annotation: Any, path: str, doc: str) -> None:
        if isinstance(avro_type, dict) and "logicalType" in avro_type:
            self._problem(path, f"the schemas use no logical types, got {avro_type}")
            return
        if self._rich(avro_type, annotation, path, doc):
            return
        primitive = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
        if (
            isinstance(primitive, str)
            and primitive in _INT_RANGES
            and (_int_range(annotation) != _INT_RANGES[primitive])
        ):
            # fastavro writes an int above 2**31 - 1 silently, wrongly; a long above 2**63 - 1
            # raises OverflowError: the model must refuse both first.
            needed = "Int32" if primitive == "int" else "Int64"
            self._problem(path, f"Avro {primitive} needs {needed}, model {annotation}")
        annotation = _unwrap(annotation)
        if isinstance(avro_type, str) and avro_type in self.named:
            avro_type = self.named[avro_type]
        if isinstance(avro_type, list):
            self._union(avro_type, annotation, path, doc)
            return
        if _is_union(annotation):
            self._problem(path, f"model is Optional ({annotation}), Avro {avro_type} is not")
            return
        if isinstance(avro_type, dict):
            self._complex(avro_type, annotation, path, doc)
            return
        expected = _PRIMITIVES.get(avro_type)
        if expected is None:
            self._problem(path, f"unexpected Avro type {avro_type!r}")
        elif annotation is not expected:  # `is`: bool must not pass for int
            self._problem(path, f"Avro {avro_type} needs {expected.__name__}, model {annotation}")
        for _, _, phrase in _RICH:
            if phrase in doc:
                self._problem(path, f"doc says {phrase!r}, model {annotation} is a plain value")

    def _rich(self, avro_type: Any, annotation: Any, path: str, doc: str) -> bool:
        """Checks a field whose model type is rich (datetime, date, UUID); False if it is not."""
        if isinstance(avro_type, dict) and avro_type.get("type") not in ("record", "enum", "array"):
            avro_type = avro_type["type"]  # {"type": "long"} is "long"
        for rich, primitive, phrase in _RICH:
            if annotation == rich:
                if avro_type != primitive:
                    self._problem(path, f"model {annotation} needs {primitive}, not {avro_type}")
                if phrase not in doc:
                    self._problem(path, f"the doc must say {phrase!r}, got {doc!r}")
                return True
        bare = _unwrap(annotation)
        if bare in (datetime, date) and not _is_union(annotation):
            # A bare datetime would read an Avro long as seconds, a bare date take timestamps.
            self._problem(path, f"model {annotation} must be UtcDatetime or IsoDate")
            return True
        return False

    def _union(self, avro_type: list[Any], annotation: Any, path: str, doc: str) -> None:
        if len(avro_type) != 2 or avro_type[0] != "null":
            self._problem(path, f"only ['null', T] unions are used, got {avro_type}")
            return
        if not _is_union(annotation) or type(None) not in typing.get_args(annotation):
            self._problem(path, f"Avro is nullable, model {annotation} is not Optional")
            return
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) != 1:
            self._problem(path, f"model {annotation} is a union of several types")
            return
        self.type(avro_type[1], rest[0], path, doc)

    def _complex(self, avro_type: dict[str, Any], annotation: Any, path: str, doc: str) -> None:
        kind = avro_type["type"]
        if kind == "array":
            if typing.get_origin(annotation) is not list:
                self._problem(path, f"Avro array needs a list, model {annotation}")
                return
            self.type(avro_type["items"], typing.get_args(annotation)[0], f"{path}[]", doc)
        elif kind == "record":
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                self._problem(path, f"Avro record needs a model, model {annotation}")
                return
            self.record(avro_type, annotation, path)
        elif kind == "enum":
            self._define(avro_type)
            self._enum(avro_type, annotation, path)
        else:
            self.type(kind, annotation, path, doc)  # {"type": "string"} and the like

    def _enum(self, avro_type: dict[str, Any], annotation: Any, path: str) -> None:
        if not (isinstance(annotation, type) and issubclass(annotation, StrEnum)):
            self._problem(path, f"Avro enum needs a StrEnum, model {annotation}")
            return
        if avro_type["name"] != annotation.__name__:
            self._problem(path, f"Avro enum {avro_type['name']} is modelled by {annotation}")
        members = [member.value for member in annotation]
        if members != avro_type["symbols"]:
            self._problem(path, f"symbols differ: Avro {avro_type['symbols']}, model {members}")


def disagreements(schema: dict[str, Any], model: type[Alert]) -> list[str]:
    agreement = _Agreement()
    if f"{schema.get('namespace')}.{schema['name']}" != model.avro_name:
        agreement.problems.append(f"Avro {schema['name']} is not {model.avro_name}")
    agreement.record(schema, model, model.__name__)
    return agreement.problems


def walk(schema: Any) -> Iterator[dict[str, Any]]:
    """Every named type definition and every field, in document order."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk(branch)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "enum"):
            yield schema
        if kind == "record":
            for field in schema["fields"]:
                yield field
                yield from walk(field["type"])
        elif kind == "array":
            yield from walk(schema["items"])


def definition(schema: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next(
        (
            node
            for node in walk(schema)
            if node.get("type") == "record" and node.get("name") == name and "fields" in node
        ),
        None,
    )


# --- The contract files -----------------------------------------------------------------------


def test_every_alert_type_has_a_schema_a_model_and_an_example() -> None:
    alert_dirs = [p.name for p in SCHEMAS.iterdir() if p.is_dir() and p.name not in NOTICE_TYPES]
    assert sorted(alert_dirs) == list(ALERT_TYPES)
    assert sorted(path.stem for path in EXAMPLES.glob("*.json")) == list(ALERT_TYPES)
    assert list(ALERT_TYPES) == sorted(ALERT_TYPES) == list(ALERT_MODELS)
    for alert_type, model in ALERT_MODELS.items():
        assert model.alert_type == alert_type
        assert model.avro_name.startswith(f"{NAMESPACE}.")


def test_public_names_are_sorted_and_exist() -> None:
    assert bus.models.__all__ == sorted(bus.models.__all__)
    for name in bus.models.__all__:
        assert hasattr(bus.models, name), name


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_schema_parses_with_fastavro_and_avro(alert_type: str) -> None:
    text = (SCHEMAS / alert_type / "v1.avsc").read_text()
    parsed = fastavro.schema.parse_schema(json.loads(text))
    avro.schema.parse(text)
    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    assert json.loads(canonical)["name"] == ALERT_MODELS[alert_type].avro_name
    assert len(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")) == 16


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_schema_uses_no_logical_types(alert_type: str) -> None:
    # Implementations disagree on the canonical form of logical-typed primitives (Java and
    # fastavro write "long", the avro package {"type":"long"}), hence on the fingerprint that
    # single-object encoding carries; instants, dates and UUIDs are plain long and string.
    assert "logicalType" not in set(_keys(schema_json(alert_type)))


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_fastavro_and_avro_agree_on_canonical_form_and_fingerprint(alert_type: str) -> None:
    js = schema_json(alert_type)
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.schema.parse_schema(js))
    reference = avro.schema.parse(json.dumps(js))
    assert canonical == reference.canonical_form
    # Both give the 8 fingerprint bytes in wire (little-endian) order: fastavro as hex text.
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    assert fingerprint == reference.fingerprint("CRC-64-AVRO")
    assert len(fingerprint) == 8


def test_fingerprint_bytes_are_the_little_endian_crc_of_the_avro_spec() -> None:
    # The Avro spec's test vector: CRC-64-AVRO("int") is 8247732601305521295 = 0x7275d51a3f395c8f,
    # and its single-object header is c3 01 8f 5c 39 3f 1a d5 75 72 (little-endian). Neither
    # library returns the CRC as a number: avro gives the wire bytes, fastavro their hex, so
    # int(hex, 16).to_bytes(8, "little") would reverse them.
    crc = 8247732601305521295
    wire = bytes.fromhex("8f5c393f1ad57572")
    assert crc.to_bytes(8, "little") == wire
    assert avro.schema.parse('"int"').fingerprint("CRC-64-AVRO") == wire
    assert fastavro.schema.fingerprint('"int"', "CRC-64-AVRO") == wire.hex()


def test_fingerprints_are_distinct() -> None:
    fingerprints = {
        fastavro.schema.fingerprint(
            fastavro.schema.to_parsing_canonical_form(parsed_schema(alert_type)), "CRC-64-AVRO"
        )
        for alert_type in ALERT_TYPES
    }
    assert len(fingerprints) == len(ALERT_TYPES)


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_model_agrees_with_schema_field_by_field(alert_type: str) -> None:
    assert disagreements(schema_json(alert_type), ALERT_MODELS[alert_type]) == []


@pytest.mark.parametrize("name", SHARED_RECORDS)
def test_shared_records_are_identical_in_every_schema(name: str) -> None:
    definitions = {
        alert_type: json.dumps(definition(schema_json(alert_type), name))
        for alert_type in ALERT_TYPES
    }
    assert "null" not in definitions.values(), f"{name} missing from some schema: {definitions}"
    assert len(set(definitions.values())) == 1, f"{name} differs between schemas"


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_every_record_field_and_enum_has_a_doc(alert_type: str) -> None:
    schema = schema_json(alert_type)
    undocumented = [node["name"] for node in walk(schema) if not node.get("doc", "").strip()]
    assert undocumented == []


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_every_enum_has_a_default_among_its_symbols(alert_type: str) -> None:
    enums = [node for node in walk(schema_json(alert_type)) if node.get("type") == "enum"]
    assert enums
    for enum in enums:
        assert enum.get("default") in enum["symbols"], enum["name"]


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_nullable_fields_default_to_null_and_arrays_to_empty(alert_type: str) -> None:
    for node in walk(schema_json(alert_type)):
        if "fields" in node or node.get("type") == "enum":
            continue
        field_type = node["type"]
        if isinstance(field_type, list):
            assert node.get("default", "absent") is None, node["name"]
        if isinstance(field_type, dict) and field_type["type"] == "array":
            assert node.get("default") == [], node["name"]


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_every_person_field_is_nullable_or_an_array(alert_type: str) -> None:
    person = definition(schema_json(alert_type), "PersonRef")
    assert person is not None
    for field in person["fields"]:
        nullable = isinstance(field["type"], list) and field["type"][0] == "null"
        array = isinstance(field["type"], dict) and field["type"]["type"] == "array"
        assert nullable or array, field["name"]


# --- The checker catches real disagreements ---------------------------------------------------


def _field(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node: Any = schema
    field: dict[str, Any] = {}
    for name in dotted.split("."):
        field = next(field for field in node["fields"] if field["name"] == name)
        node = field["type"]
        while not (isinstance(node, dict) and "fields" in node):
            if isinstance(node, list):
                node = node[1]
            elif isinstance(node, dict) and node["type"] == "array":
                node = node["items"]
            else:
                return field
    return field


def _rename(schema: dict[str, Any]) -> None:
    _field(schema, "victim_count")["name"] = "victims"


def _not_nullable(schema: dict[str, Any]) -> None:
    field = _field(schema, "price_per_person_eur")
    field["type"] = "double"
    del field["default"]


def _nullable(schema: dict[str, Any]) -> None:
    field = _field(schema, "place")
    field["type"] = ["null", "string"]
    field["default"] = None


def _not_an_array(schema: dict[str, Any]) -> None:
    field = _field(schema, "route")
    field["type"] = "string"
    del field["default"]


def _drop_symbol(schema: dict[str, Any]) -> None:
    _field(schema, "header.tlp")["type"]["symbols"].remove("AMBER_STRICT")


def _logical_type(schema: dict[str, Any]) -> None:
    _field(schema, "arrested_at")["type"] = {"type": "long", "logicalType": "timestamp-millis"}


def _timestamp_as_string(schema: dict[str, Any]) -> None:
    _field(schema, "arrested_at")["type"] = "string"


def _timestamp_doc_without_unit(schema: dict[str, Any]) -> None:
    _field(schema, "arrested_at")["doc"] = "When the arrest was made (UTC)."


def _date_as_int(schema: dict[str, Any]) -> None:
    _field(schema, "suspects.date_of_birth")["type"] = ["null", "int"]


def _date_doc_without_format(schema: dict[str, Any]) -> None:
    _field(schema, "suspects.travel_document.expires_on")["doc"] = "Expiry date."


def _uuid_as_long(schema: dict[str, Any]) -> None:
    _field(schema, "header.alert_id")["type"] = "long"


def _uuid_doc_without_form(schema: dict[str, Any]) -> None:
    _field(schema, "header.references")["doc"] = "Ids of earlier alerts."


def _millis_doc_on_a_plain_int(schema: dict[str, Any]) -> None:
    _field(schema, "victim_count")["doc"] = f"Victims, in {MILLIS_DOC}."


def _int_to_long(schema: dict[str, Any]) -> None:
    _field(schema, "victim_count")["type"] = "long"  # the model's Int32 would not do


def _int_to_double(schema: dict[str, Any]) -> None:
    _field(schema, "victim_count")["type"] = "double"


def _swap_fields(schema: dict[str, Any]) -> None:
    fields = schema["fields"]
    fields[1], fields[2] = fields[2], fields[1]


def _drop_nested_field(schema: dict[str, Any]) -> None:
    person = _field(schema, "suspects")["type"]["items"]
    person["fields"] = [field for field in person["fields"] if field["name"] != "sex"]


def _drop_default(schema: dict[str, Any]) -> None:
    del _field(schema, "header.references")["default"]


def _string_to_boolean(schema: dict[str, Any]) -> None:
    _field(schema, "suspects.travel_document.number")["type"] = ["null", "boolean"]


@pytest.mark.parametrize(
    "breakage",
    [
        _rename,
        _not_nullable,
        _nullable,
        _not_an_array,
        _drop_symbol,
        _logical_type,
        _timestamp_as_string,
        _timestamp_doc_without_unit,
        _date_as_int,
        _date_doc_without_format,
        _uuid_as_long,
        _uuid_doc_without_form,
        _millis_doc_on_a_plain_int,
        _int_to_long,
        _int_to_double,
        _swap_fields,
        _drop_nested_field,
        _drop_default,
        _string_to_boolean,
    ],
)
def test_agreement_check_catches_a_broken_schema(
    breakage: Callable[[dict[str, Any]], None],
) -> None:
    schema = copy.deepcopy(schema_json("trafficking-arrest"))
    breakage(schema)
    assert disagreements(schema, TraffickingArrest) != []


@pytest.mark.parametrize(
    ("avro_type", "annotation", "doc"),
    [
        ("long", datetime, MILLIS_DOC),  # pydantic alone reads an int as seconds
        ("long", int, MILLIS_DOC),
        ("string", date, DATE_DOC),  # pydantic alone takes timestamps for dates
        ("string", str, DATE_DOC),
        ("string", str, UUID_DOC),
        ("long", UtcDatetime | None, MILLIS_DOC),
    ],
)
def test_agreement_check_catches_a_plain_model_type(
    avro_type: str, annotation: Any, doc: str
) -> None:
    agreement = _Agreement()
    agreement.type(avro_type, annotation, "field", doc)
    assert agreement.problems != []


@pytest.mark.parametrize(
    ("avro_type", "annotation"),
    [
        ("int", int),  # a plain int takes 2**31, which fastavro writes as bytes Avro refuses
        ("long", int),
        ("int", Int64),
        ("long", Int32),
        (["null", "int"], int | None),
        ({"type": "array", "items": "int"}, list[int]),
    ],
)
def test_agreement_check_catches_an_int_without_its_avro_range(
    avro_type: Any, annotation: Any
) -> None:
    agreement = _Agreement()
    agreement.type(avro_type, annotation, "field", "A count.")
    assert agreement.problems != []


@pytest.mark.parametrize(
    ("avro_type", "annotation", "doc"),
    [
        ("int", Int32, "A count."),
        ("long", Int64, "A count."),
        (["null", "int"], Int32 | None, "A count."),
        ({"type": "array", "items": "long"}, list[Int64], "Counts."),
        ("long", UtcDatetime, MILLIS_DOC),
        (["null", "long"], UtcDatetime | None, MILLIS_DOC),
        ("string", IsoDate, DATE_DOC),
        ("string", uuid.UUID, UUID_DOC),
        ({"type": "array", "items": "string"}, list[uuid.UUID], UUID_DOC),
    ],
)
def test_agreement_check_accepts_the_rich_and_ranged_model_types(
    avro_type: Any, annotation: Any, doc: str
) -> None:
    agreement = _Agreement()
    agreement.type(avro_type, annotation, "field", doc)
    assert agreement.problems == []


# --- Whole numbers stay within what Avro holds -------------------------------------------------


def _int_positions(
    schema: Any, value: Any, path: tuple[str | int, ...], named: dict[str, Any]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Where an example's Avro dict holds an Avro int or long (also in arrays and unions)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):  # ["null", T]: a null int can still be set; a null record not
        branch = schema[1]
        if value is not None or (isinstance(branch, str) and branch in _INT_RANGES):
            yield from _int_positions(branch, value, path, named)
        return
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind == "record":
            named[schema["name"]] = named[f"{NAMESPACE}.{schema['name']}"] = schema
            for field in schema["fields"]:
                name = field["name"]
                yield from _int_positions(field["type"], value[name], (*path, name), named)
        elif kind == "array":
            for i, item in enumerate(value):
                yield from _int_positions(schema["items"], item, (*path, i), named)
        elif kind == "enum":
            named[schema["name"]] = named[f"{NAMESPACE}.{schema['name']}"] = schema
        else:
            yield from _int_positions(kind, value, path, named)
    elif isinstance(schema, str) and schema in _INT_RANGES:
        yield path, schema


def _set(record: dict[str, Any], path: tuple[str | int, ...], value: int) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_every_int_and_long_field_refuses_what_its_avro_type_cannot_hold(alert_type: str) -> None:
    record = example(alert_type).to_avro()
    model = ALERT_MODELS[alert_type]
    positions = list(_int_positions(schema_json(alert_type), record, (), {}))
    assert ("header", "information_accuracy") in [path for path, _ in positions]
    for path, primitive in positions:
        bounds = _INT_RANGES[primitive]
        for wrong in (bounds.high + 1, bounds.low - 1, 10**20, -(10**20)):
            with pytest.raises(PydanticValidationError) as caught:
                model.model_validate(_set(record, path, wrong))
            assert [error["loc"] for error in caught.value.errors()] == [path], wrong
            with pytest.raises(BusValidationError) as bus_error:
                model.from_avro(_set(record, path, wrong))
            assert bus_error.value.field == ".".join(str(part) for part in path)
        try:
            at_bound = model.model_validate(_set(record, path, bounds.high))
        except PydanticValidationError:
            continue  # a narrower bound of its own (information_accuracy is 1 to 4; instants)
        assert fastavro_round_trip(at_bound) == at_bound


def test_int32_and_int64_hold_exactly_the_avro_ranges() -> None:
    class Counts(BaseModel):
        small: Int32
        large: Int64

    assert Counts(small=2**31 - 1, large=2**63 - 1) == Counts(small=2**31 - 1, large=2**63 - 1)
    assert Counts(small=-(2**31), large=-(2**63)).large == -(2**63)
    for small, large, field in (
        (2**31, 0, "small"),
        (0, 2**63, "large"),
        (0, -(2**63) - 1, "large"),
    ):
        with pytest.raises(PydanticValidationError, match=f"(?s){field}.*the (largest|smallest)"):
            Counts(small=small, large=large)


def test_a_narrower_bound_on_an_int32_keeps_both_bounds() -> None:
    # Field(ge=0) and Int32's range are both enforced, whichever is written first.
    for wrong in (-1, 2**31):
        with pytest.raises(PydanticValidationError, match="head_count"):
            IrregularCrossing.model_validate(
                {**example("irregular-crossing").to_avro(), "head_count": wrong}
            )


# --- Examples and round trips -----------------------------------------------------------------


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_example_spells_out_every_field(alert_type: str) -> None:
    alert = example(alert_type)
    assert json.loads(alert.model_dump_json()) == json.loads(
        (EXAMPLES / f"{alert_type}.json").read_text()
    )


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_example_round_trips_through_fastavro(alert_type: str) -> None:
    alert = example(alert_type)
    assert fastavro_round_trip(alert) == alert


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_example_is_read_by_the_reference_avro_library(alert_type: str) -> None:
    alert = example(alert_type)
    text = (SCHEMAS / alert_type / "v1.avsc").read_text()
    fast = io.BytesIO()
    fastavro.schemaless_writer(fast, parsed_schema(alert_type), alert.to_avro())
    reference = io.BytesIO()
    avro.io.DatumWriter(avro.schema.parse(text)).write(
        alert.to_avro(), avro.io.BinaryEncoder(reference)
    )
    assert reference.getvalue() == fast.getvalue()
    fast.seek(0)
    record = avro.io.DatumReader(avro.schema.parse(text)).read(avro.io.BinaryDecoder(fast))
    assert isinstance(record, dict)
    assert type(alert).from_avro(record) == alert


def _fully_redacted(model: BaseModel) -> BaseModel:
    updates: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if not info.is_required():
            updates[name] = info.get_default(call_default_factory=True)
        elif isinstance(value, BaseModel):
            updates[name] = _fully_redacted(value)
    return model.model_copy(update=updates)


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_a_fully_redacted_copy_is_still_valid(alert_type: str) -> None:
    redacted = _fully_redacted(example(alert_type))
    assert isinstance(redacted, Alert)
    assert fastavro_round_trip(redacted) == redacted
    assert type(redacted).model_validate(redacted.to_avro()) == redacted


def test_to_avro_gives_plain_values() -> None:
    record = example("trafficking-arrest").to_avro()
    header = record["header"]
    assert type(header["alert_id"]) is str
    assert type(header["tlp"]) is str
    assert header["tlp"] == "AMBER"
    assert type(record["suspects"][1]["original_script"]) is str
    assert record["suspects"][0]["date_of_birth"] == "1979-04-12"
    assert record["suspects"][0]["travel_document"]["expires_on"] == "2019-03-02"
    # 2014-07-21T09:12:00Z and 03:40:00Z as milliseconds since the Unix epoch
    assert type(header["issued_at"]) is int
    assert header["issued_at"] == 1_405_933_920_000
    assert header["occurred_at"] == record["arrested_at"] == 1_405_914_000_000
    assert header["expires_at"] is None
    assert list(record) == list(TraffickingArrest.model_fields)


_names = st.text(st.characters(codec="utf-8"), max_size=30)
_instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
#: Any fixed UTC offset a datetime may carry (strictly within ±24 h), to the second.
_offsets = st.integers(-86_399, 86_399).map(lambda seconds: timezone(timedelta(seconds=seconds)))
_aware_instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=_offsets
)
_persons = st.builds(
    PersonRef,
    identity_token=st.none() | _names,
    family_name=st.none() | _names,
    given_names=st.none() | _names,
    family_name_original=st.none() | _names,
    given_names_original=st.none() | _names,
    original_script=st.none() | st.sampled_from(OriginalScript),
    date_of_birth=st.none() | st.dates(min_value=date(1900, 1, 1)),
    nationality=st.none() | st.sampled_from(["rs", "mk", "xk", "ba", "gr", "al", "sy"]),
    sex=st.none() | st.sampled_from(Sex),
    travel_document=st.none()
    | st.builds(
        TravelDocument,
        kind=st.sampled_from(TravelDocumentKind),
        number=st.none() | _names,
        issuing_country=st.none() | st.sampled_from(["rs", "gr"]),
        expires_on=st.none() | st.dates(),
    ),
    warning_markers=st.lists(st.sampled_from(WarningMarker), max_size=3),
)


@settings(max_examples=50, deadline=None)
@given(suspects=st.lists(_persons, max_size=3), arrested_at=_instants, price=st.floats(0, 1e6))
def test_any_arrest_round_trips(
    suspects: list[PersonRef], arrested_at: datetime, price: float
) -> None:
    alert = example("trafficking-arrest").model_copy(
        update={"suspects": suspects, "arrested_at": arrested_at, "price_per_person_eur": price}
    )
    assert fastavro_round_trip(alert) == alert


@settings(max_examples=300, deadline=None)
@given(moment=_aware_instants)
def test_any_instant_round_trips_as_epoch_milliseconds(moment: datetime) -> None:
    base = example("trafficking-arrest")
    alert = TraffickingArrest.model_validate({**base.model_dump(), "arrested_at": moment})
    # Normalised to UTC and truncated (not rounded) to the millisecond, the same instant.
    assert alert.arrested_at.tzinfo is UTC
    assert timedelta(0) <= moment - alert.arrested_at < timedelta(milliseconds=1)
    assert alert.arrested_at.microsecond % 1000 == 0
    record = alert.to_avro()
    millis = record["arrested_at"]
    assert type(millis) is int
    # An independent exact computation (no floats): whole seconds by timegm, then the millis.
    assert millis == calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000
    assert TraffickingArrest.from_avro(record) == alert
    assert fastavro_round_trip(alert) == alert


@pytest.mark.parametrize(
    ("millis", "instant"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        (-1_000, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        (-2_208_988_800_000, datetime(1900, 1, 1, tzinfo=UTC)),
        (1_405_914_000_001, datetime(2014, 7, 21, 3, 40, 0, 1_000, tzinfo=UTC)),
        (-62_135_596_800_000, datetime(1, 1, 1, tzinfo=UTC)),
        (253_402_300_799_999, datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
    ],
)
def test_epoch_milliseconds_map_to_utc_instants_both_ways(millis: int, instant: datetime) -> None:
    alert = example("trafficking-arrest")
    record = alert.to_avro() | {"arrested_at": millis}
    decoded = TraffickingArrest.from_avro(record)
    assert decoded.arrested_at == instant
    assert decoded.arrested_at.tzinfo is UTC
    assert decoded.to_avro()["arrested_at"] == millis
    assert fastavro_round_trip(decoded) == decoded


def test_sub_millisecond_instants_before_1970_truncate_towards_the_past() -> None:
    header = AlertHeader.model_validate(
        _header(issued_at=datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    )
    assert header.issued_at == datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert header.to_avro()["issued_at"] == -1


# --- Validation behaviour ---------------------------------------------------------------------


def _header(**changes: Any) -> dict[str, Any]:
    header = example("trafficking-arrest").header.model_dump(mode="json")
    header.update(changes)
    return header


def test_naive_timestamps_are_rejected() -> None:
    with pytest.raises(PydanticValidationError, match="timezone-aware"):
        AlertHeader.model_validate(_header(issued_at="2014-07-21T09:12:00"))


def test_timestamps_are_normalised_to_utc_milliseconds() -> None:
    header = AlertHeader.model_validate(
        _header(occurred_at=datetime(2014, 7, 21, 5, 40, 0, 123456, timezone(timedelta(hours=2))))
    )
    assert header.occurred_at == datetime(2014, 7, 21, 3, 40, 0, 123000, UTC)
    assert header.occurred_at.tzinfo is UTC


class _Greenwich(tzinfo):
    """A zero offset under a tzinfo of its own, as a time zone database gives in winter."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2014, 7, 21, 3, 40, 0, 123456, _Greenwich(), fold=1),
        datetime(2014, 7, 21, 3, 40, 0, 123456, timezone(timedelta(hours=1, microseconds=1500))),
        datetime(2014, 7, 21, 3, 40, 0, 999999, UTC),
    ],
)
def test_any_time_zone_gives_the_utc_instant_truncated_to_the_millisecond(
    moment: datetime,
) -> None:
    header = AlertHeader.model_validate(_header(occurred_at=moment))
    utc = moment.astimezone(UTC)
    assert header.occurred_at == utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    assert header.occurred_at.tzinfo is UTC
    assert header.occurred_at.fold == 0


def test_timestamps_accept_epoch_milliseconds_in_json_too() -> None:
    header = AlertHeader.model_validate_json(
        json.dumps(_header(issued_at=1_405_933_920_000, expires_at="2014-07-22T09:12:00+02:00"))
    )
    assert header.issued_at == datetime(2014, 7, 21, 9, 12, tzinfo=UTC)
    assert header.expires_at == datetime(2014, 7, 22, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (True, "milliseconds since the Unix epoch"),  # a bool is an int to Python, not here
        (1_405_933_920_000.0, "milliseconds since the Unix epoch"),  # seconds or millis?
        ("1405933920", "holding a number"),  # pydantic alone reads this as seconds
        (10**20, "within years 1 to 9999"),
        (-62_135_596_800_001, "within years 1 to 9999"),
        ("0001-01-01T00:00:00+01:00", "within years 1 to 9999"),
        ("yesterday", "issued_at"),
    ],
)
def test_timestamps_refuse_what_is_not_an_instant(wrong: Any, message: str) -> None:
    with pytest.raises(PydanticValidationError, match=message):
        AlertHeader.model_validate(_header(issued_at=wrong))


@pytest.mark.parametrize("wrong", ["1979-4-12", "12.04.1979", "1979-04-12T00:00:00", 3753, True])
def test_dates_are_iso_calendar_dates(wrong: Any) -> None:
    person = PersonRef.model_validate({"date_of_birth": "1979-04-12"})
    assert person.date_of_birth == date(1979, 4, 12)
    with pytest.raises(PydanticValidationError, match="YYYY-MM-DD") as caught:
        PersonRef.model_validate({"date_of_birth": wrong})
    assert str(wrong) not in caught.value.errors()[0]["msg"]  # dates of birth are personal data


def test_from_avro_refuses_a_wire_value_out_of_range_as_a_bus_error() -> None:
    record = example("readmission").to_avro()
    record["header"]["issued_at"] = 2**63 - 1  # the largest Avro long
    with pytest.raises(BusValidationError, match=r"header\.issued_at"):
        ALERT_MODELS["readmission"].from_avro(record)


def test_country_codes_are_lowered_and_checked() -> None:
    assert AlertHeader.model_validate(_header(origin="XK")).origin == "xk"
    for wrong in ("srb", "r", "r1", "", "Србија"):
        with pytest.raises(PydanticValidationError, match="ISO 3166-1 alpha-2"):
            AlertHeader.model_validate(_header(origin=wrong))
    alert = TraffickingArrest.model_validate(
        {**json.loads((EXAMPLES / "trafficking-arrest.json").read_text()), "route": ["GR", "Al"]}
    )
    assert alert.route == ["gr", "al"]


@pytest.mark.parametrize("accuracy", [0, 5, -1])
def test_information_accuracy_is_one_to_four(accuracy: int) -> None:
    with pytest.raises(PydanticValidationError, match="information_accuracy"):
        AlertHeader.model_validate(_header(information_accuracy=accuracy))


def test_updates_must_reference_earlier_alerts() -> None:
    with pytest.raises(PydanticValidationError, match="references"):
        AlertHeader.model_validate(_header(msg_type="UPDATE"))
    earlier = "3f9c2b7e-8a41-4d6f-b2c5-1e7a90d4c863"
    update = AlertHeader.model_validate(
        _header(alert_id=str(uuid.uuid4()), msg_type="CANCEL", references=[earlier])
    )
    assert update.msg_type is MessageType.CANCEL
    assert update.references == [uuid.UUID(earlier)]


def test_expiry_must_follow_issue() -> None:
    with pytest.raises(PydanticValidationError, match="expires_at"):
        AlertHeader.model_validate(_header(expires_at="2014-07-21T09:00:00Z"))


def test_alerts_are_frozen_and_strict_about_extra_fields() -> None:
    alert = example("readmission")
    assert isinstance(alert, Readmission)
    with pytest.raises(PydanticValidationError):
        alert.stage = ReadmissionStage.ACCEPTED  # type: ignore[misc]
    with pytest.raises(PydanticValidationError, match="extra"):
        type(alert).model_validate({**alert.to_avro(), "body": {}})


def test_record_key_is_the_case_ref_else_the_alert_id() -> None:
    with_case = example("trafficking-arrest")
    assert with_case.record_key == b"AL-VL-2014-0731"
    without_case = example("citizen-assistance")
    assert without_case.header.case_ref is None
    assert without_case.record_key == str(without_case.alert_id).encode()
    assert without_case.alert_id == uuid.UUID("5b2d9e4a-61c8-4f07-8e3b-a0c7f25d9e16")
    assert without_case.origin == "mk"


def test_a_follow_up_without_a_case_ref_is_keyed_like_the_alert_it_follows_up() -> None:
    alert = example("citizen-assistance")
    first, second = uuid.uuid4(), uuid.uuid4()
    header = alert.header.model_copy(update={
        "alert_id": uuid.uuid4(), "msg_type": MessageType.UPDATE, "references": [first, second],
    })  # fmt: skip
    update = alert.model_copy(update={"header": header})
    assert update.record_key == str(first).encode()
    with_case = update.model_copy(
        update={"header": header.model_copy(update={"case_ref": "MK-2018-7"})}
    )
    assert with_case.record_key == b"MK-2018-7"


def test_from_avro_raises_a_bus_error_naming_the_field() -> None:
    record = example("irregular-crossing").to_avro()
    record["head_count"] = "many"
    with pytest.raises(BusValidationError, match="head_count") as caught:
        ALERT_MODELS["irregular-crossing"].from_avro(record)
    assert isinstance(caught.value, BusError)
    assert caught.value.field == "head_count"
    assert "many" not in str(caught.value)  # values may be personal data
