"""The pydantic models agree with the .avsc contract field by field; the examples round-trip."""

from __future__ import annotations

import copy
import io
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
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

import bus.models
from bus.errors import BusError
from bus.errors import ValidationError as BusValidationError
from bus.models import (
    ALERT_MODELS,
    ALERT_TYPES,
    Alert,
    AlertHeader,
    MessageType,
    OriginalScript,
    PersonRef,
    Readmission,
    ReadmissionStage,
    Sex,
    TraffickingArrest,
    TravelDocument,
    TravelDocumentKind,
    WarningMarker,
)

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
_LOGICAL: dict[str, type] = {"timestamp-millis": datetime, "date": date, "uuid": uuid.UUID}


def _unwrap(annotation: Any) -> Any:
    # Annotated[str, validator] (CountryCode, UtcDatetime) is a str or datetime to Avro.
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


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
            self.type(field["type"], info.annotation, where)

    def type(self, avro_type: Any, annotation: Any, path: str) -> None:
        annotation = _unwrap(annotation)
        if isinstance(avro_type, str) and avro_type in self.named:
            avro_type = self.named[avro_type]
        if isinstance(avro_type, list):
            self._union(avro_type, annotation, path)
            return
        if _is_union(annotation):
            self._problem(path, f"model is Optional ({annotation}), Avro {avro_type} is not")
            return
        if isinstance(avro_type, dict):
            self._complex(avro_type, annotation, path)
            return
        expected = _PRIMITIVES.get(avro_type)
        if expected is None:
            self._problem(path, f"unexpected Avro type {avro_type!r}")
        elif annotation is not expected:  # `is`: bool must not pass for int
            self._problem(path, f"Avro {avro_type} needs {expected.__name__}, model {annotation}")

    def _union(self, avro_type: list[Any], annotation: Any, path: str) -> None:
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
        self.type(avro_type[1], rest[0], path)

    def _complex(self, avro_type: dict[str, Any], annotation: Any, path: str) -> None:
        kind = avro_type["type"]
        logical = avro_type.get("logicalType")
        if logical is not None:
            expected = _LOGICAL.get(logical)
            if expected is None or annotation is not expected:
                self._problem(path, f"Avro {logical} needs {expected}, model {annotation}")
        elif kind == "array":
            if typing.get_origin(annotation) is not list:
                self._problem(path, f"Avro array needs a list, model {annotation}")
                return
            self.type(avro_type["items"], typing.get_args(annotation)[0], f"{path}[]")
        elif kind == "record":
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                self._problem(path, f"Avro record needs a model, model {annotation}")
                return
            self.record(avro_type, annotation, path)
        elif kind == "enum":
            self._define(avro_type)
            self._enum(avro_type, annotation, path)
        else:
            self.type(kind, annotation, path)  # {"type": "string"} and the like

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
    assert sorted(path.name for path in SCHEMAS.iterdir() if path.is_dir()) == list(ALERT_TYPES)
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


def _no_logical_type(schema: dict[str, Any]) -> None:
    _field(schema, "arrested_at")["type"] = "long"


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
        _no_logical_type,
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
    assert type(record["suspects"][0]["date_of_birth"]) is date
    assert header["issued_at"].tzinfo is UTC
    assert list(record) == list(TraffickingArrest.model_fields)


_names = st.text(st.characters(codec="utf-8"), max_size=30)
_instants = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
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


def test_from_avro_raises_a_bus_error_naming_the_field() -> None:
    record = example("irregular-crossing").to_avro()
    record["head_count"] = "many"
    with pytest.raises(BusValidationError, match="head_count") as caught:
        ALERT_MODELS["irregular-crossing"].from_avro(record)
    assert isinstance(caught.value, BusError)
    assert caught.value.field == "head_count"
    assert "many" not in str(caught.value)  # values may be personal data
