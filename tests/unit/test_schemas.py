"""Schemas are loaded and checked at start-up; incompatible versions are caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bus import SchemaError, SchemaRegistry
from bus.models import ALERT_TYPES
from tests.conftest import REPO


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", target)
    return target


def test_the_shipped_schemas_load_and_are_compatible() -> None:
    registry = SchemaRegistry.load(REPO / "schemas")
    assert registry.alert_types == ALERT_TYPES
    assert registry.compatibility_problems() == []


def test_a_broken_file_stops_loading_with_the_file_named(schemas: Path) -> None:
    path = schemas / "readmission" / "v1.avsc"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(SchemaError, match=r"readmission/v1\.avsc: not valid JSON"):
        SchemaRegistry.load(schemas)


def test_an_invalid_avro_schema_is_named(schemas: Path) -> None:
    path = schemas / "readmission" / "v1.avsc"
    data = json.loads(path.read_text())
    data["fields"][1]["type"] = "no-such-type"
    path.write_text(json.dumps(data))
    with pytest.raises(SchemaError, match=r"readmission/v1\.avsc: not a valid Avro schema"):
        SchemaRegistry.load(schemas)


def test_a_gap_in_versions_is_refused(schemas: Path) -> None:
    shutil.copy(schemas / "readmission" / "v1.avsc", schemas / "readmission" / "v3.avsc")
    with pytest.raises(SchemaError, match="without gaps"):
        SchemaRegistry.load(schemas)


def test_a_new_required_field_is_reported_as_incompatible(schemas: Path) -> None:
    v2 = json.loads((schemas / "readmission" / "v1.avsc").read_text())
    v2["fields"].append({"name": "escort_count", "type": "int", "doc": "No default: breaks."})
    (schemas / "readmission" / "v2.avsc").write_text(json.dumps(v2))
    problems = SchemaRegistry.load(schemas).compatibility_problems()
    assert len(problems) == 1
    assert "readmission v2 vs v1 (backward" in problems[0]
    assert "escort_count" in problems[0]


def test_a_changed_field_type_is_reported_both_ways(schemas: Path) -> None:
    v2 = json.loads((schemas / "readmission" / "v1.avsc").read_text())
    legal_basis = next(f for f in v2["fields"] if f["name"] == "legal_basis")
    legal_basis["type"] = "int"
    (schemas / "readmission" / "v2.avsc").write_text(json.dumps(v2))
    problems = SchemaRegistry.load(schemas).compatibility_problems()
    assert any("(backward" in p for p in problems)
    assert any("(forward" in p for p in problems)


def test_the_spec_fingerprint_of_int_is_little_endian_on_the_wire() -> None:
    # Avro specification: CRC-64-AVRO of "int" is 0x7275d51a3f395c8f.
    from bus.schemas import crc64_avro_fingerprint

    assert crc64_avro_fingerprint('"int"') == (0x7275D51A3F395C8F).to_bytes(8, "little")
