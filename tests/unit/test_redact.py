"""Redaction: fields removed by path, through arrays and nullable records, the copy still valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import AlertCodec, KeyRing, PolicyError, SchemaRegistry, Signer, generate_keypair
from bus.envelope import H_KEY_ID, H_REDACTED, H_SIGNATURE, header_map
from bus.keys import HUB_KEY_ID
from bus.models import ALERT_TYPES, Alert
from bus.redact import (
    FieldKind,
    covers,
    field_kinds,
    minimal_paths,
    partner_copy,
    redact,
    redact_alert,
    removable_paths,
)
from tests.conftest import REPO
from tests.factories import example_alert
from tests.strategies import alerts

REGISTRY = SchemaRegistry.load(REPO / "schemas")
CODEC = AlertCodec(REGISTRY)


def _without(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``record`` without the named top-level fields, to compare all the rest."""
    return {k: v for k, v in record.items() if k not in fields}


def test_a_path_through_an_array_applies_to_every_element() -> None:
    alert = example_alert("irregular-crossing")
    record = alert.to_avro()
    assert all(p["family_name"] for p in record["persons"])

    copy = redact(record, ["persons.family_name", "persons.travel_document.number"])

    assert len(copy["persons"]) == len(record["persons"]) == 2
    for before, after in zip(record["persons"], copy["persons"], strict=True):
        assert after["family_name"] is None
        if before["travel_document"] is None:  # a null record: nothing to remove below it
            assert after["travel_document"] is None
        else:
            assert after["travel_document"]["number"] is None
            assert after["travel_document"]["kind"] == before["travel_document"]["kind"]
        unchanged = {"family_name", "travel_document"}
        assert {k: v for k, v in after.items() if k not in unchanged} == {
            k: v for k, v in before.items() if k not in unchanged
        }
    assert _without(copy, "persons") == _without(record, "persons")


def test_a_path_through_a_nullable_record_removes_inside_it_or_does_nothing_when_null() -> None:
    record = example_alert("irregular-crossing").to_avro()
    assert record["suspected_facilitator"]["travel_document"]["number"]
    copy = redact(record, ["suspected_facilitator.travel_document.number"])
    assert copy["suspected_facilitator"]["travel_document"]["number"] is None
    assert copy["suspected_facilitator"]["family_name"] == "Velkovski"

    record["suspected_facilitator"] = None
    assert redact(record, ["suspected_facilitator.family_name"]) == record


def test_a_whole_array_becomes_empty_and_a_nullable_field_null() -> None:
    record = example_alert("irregular-crossing").to_avro()
    copy = redact(record, ["persons", "suspected_facilitator", "crossing_point"])
    assert copy["persons"] == []
    assert copy["suspected_facilitator"] is None
    assert copy["crossing_point"] is None
    assert copy["nationality_breakdown"] == record["nationality_breakdown"]
    assert copy["head_count"] == record["head_count"] == 23


def test_the_record_given_is_not_changed_and_the_copy_shares_nothing_with_it() -> None:
    record = example_alert("trafficking-arrest").to_avro()
    snapshot = repr(record)
    copy = redact(record, ["suspects.family_name"])
    assert repr(record) == snapshot
    copy["suspects"][0]["given_names"] = "changed"
    copy["header"]["references"].append("x")
    assert repr(record) == snapshot


@pytest.mark.parametrize("path", ["header", "header.case_ref", "persons..family_name", ""])
def test_header_paths_and_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(PolicyError, match="Cannot redact"):
        redact(example_alert("irregular-crossing").to_avro(), [path])


def test_a_path_naming_no_field_is_refused() -> None:
    with pytest.raises(PolicyError, match="no field 'passport'"):
        redact(example_alert("irregular-crossing").to_avro(), ["persons.passport"])


@pytest.mark.parametrize("alert_type", ALERT_TYPES)
def test_removing_every_removable_field_keeps_the_copy_valid(alert_type: str) -> None:
    alert = example_alert(alert_type)
    paths = sorted(removable_paths(alert_type))
    copy = redact_alert(alert, paths)

    decoded = CODEC.decode(CODEC.encode(copy))
    assert decoded.alert == copy
    assert type(copy) is type(alert)
    assert copy.header == alert.header
    record = copy.to_avro()
    for path in paths:
        for value in _values(record, path):
            assert value in (None, []), path


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_redaction_of_any_alert_encodes_and_removes_exactly_those_fields(
    data: st.DataObject,
) -> None:
    alert: Alert = data.draw(alerts())
    removable = sorted(removable_paths(alert.alert_type))
    paths = data.draw(st.lists(st.sampled_from(removable), max_size=6, unique=True))
    copy = redact_alert(alert, paths)

    assert CODEC.decode(CODEC.encode(copy)).alert == copy
    before, after = alert.to_avro(), copy.to_avro()
    for path in paths:
        assert all(v in (None, []) for v in _values(after, path)), path
    # Every field neither removed nor around a removed one is unchanged.
    for path in field_kinds(alert.alert_type):
        if not any(covers(r, path) or covers(path, r) for r in paths):
            assert _values(after, path) == _values(before, path), path


def _values(record: Any, path: str) -> list[Any]:
    """Every value at ``path``, through arrays and skipping null records."""
    nodes = [record]
    for name in path.split("."):
        nxt: list[Any] = []
        for node in nodes:
            items = node if isinstance(node, list) else [node]
            nxt.extend(item[name] for item in items if item is not None)
        nodes = nxt
    return nodes


def test_field_kinds_from_the_schema_equal_those_from_the_model() -> None:
    for alert_type in ALERT_TYPES:
        assert dict(field_kinds(alert_type, REGISTRY)) == dict(field_kinds(alert_type))


def test_field_kinds_follow_named_types_defined_earlier() -> None:
    # PersonRef is defined under persons and only referred to by name in suspected_facilitator.
    kinds = field_kinds("irregular-crossing", REGISTRY)
    assert kinds["suspected_facilitator"] is FieldKind.NULLABLE
    assert kinds["suspected_facilitator.travel_document.number"] is FieldKind.NULLABLE
    assert kinds["persons"] is FieldKind.ARRAY
    assert kinds["head_count"] is FieldKind.REQUIRED
    assert kinds["header.alert_id"] is FieldKind.REQUIRED
    assert kinds["persons.travel_document.kind"] is FieldKind.REQUIRED


def test_removable_paths_exclude_the_header_and_required_fields() -> None:
    paths = removable_paths("foreign-fighter-travel")
    assert "person.family_name" in paths
    assert "legs" in paths
    assert "person" not in paths  # a required record
    assert "conflict_zone" not in paths
    assert not any(p.startswith("header") for p in paths)


def test_minimal_paths_drops_paths_inside_another() -> None:
    assert minimal_paths(["persons.family_name", "persons", "persons_x", "a.b", "a.b.c"]) == (
        "a.b",
        "persons",
        "persons_x",
    )
    assert minimal_paths([]) == ()
    assert covers("persons", "persons.family_name")
    assert not covers("persons", "persons_x")


# --- The partner's copy: unchanged bytes, or re-signed by the hub ------------------------------


def test_an_unredacted_copy_is_the_origins_value_and_signature_byte_for_byte(
    keys_dir: Path,
) -> None:
    generate_keypair(keys_dir, "rs")
    generate_keypair(keys_dir, HUB_KEY_ID)
    alert = example_alert("irregular-crossing")
    value = CODEC.encode(alert)
    signature = Signer.load(keys_dir, "rs").sign(value)

    copy = partner_copy(
        alert, value, signature, "rs", (), codec=CODEC, hub=Signer.load(keys_dir, HUB_KEY_ID)
    )

    assert (copy.value, copy.signature, copy.key_id, copy.redacted) == (value, signature, "rs", ())
    headers = header_map(copy.headers)
    assert headers[H_KEY_ID] == b"rs"
    assert H_REDACTED not in headers


def test_a_redacted_copy_is_re_signed_by_the_hub_and_lists_the_paths(keys_dir: Path) -> None:
    generate_keypair(keys_dir, "rs")
    generate_keypair(keys_dir, HUB_KEY_ID)
    alert = example_alert("irregular-crossing")
    value = CODEC.encode(alert)
    signature = Signer.load(keys_dir, "rs").sign(value)
    paths = ("persons", "suspected_facilitator")

    copy = partner_copy(
        alert, value, signature, "rs", paths, codec=CODEC, hub=Signer.load(keys_dir, HUB_KEY_ID)
    )

    assert copy.key_id == HUB_KEY_ID
    assert copy.value != value
    KeyRing(keys_dir).verify(HUB_KEY_ID, copy.value, copy.signature)
    headers = header_map(copy.headers)
    assert headers[H_KEY_ID] == b"hub"
    assert headers[H_REDACTED] == b"persons,suspected_facilitator"
    assert headers[H_SIGNATURE] == copy.signature
    assert CODEC.decode(copy.value).alert == redact_alert(alert, paths)


def test_a_redacted_copy_needs_the_hub_key(keys_dir: Path) -> None:
    generate_keypair(keys_dir, "rs")
    alert = example_alert("irregular-crossing")
    with pytest.raises(PolicyError, match="'hub'"):
        partner_copy(
            alert, b"", b"", "rs", ["persons"], codec=CODEC, hub=Signer.load(keys_dir, "rs")
        )
