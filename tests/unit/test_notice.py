"""The withdrawal notice is part of the partner contract: checked like the alert schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import avro.schema
import fastavro.schema
import pytest

from bus import AlertCodec, SchemaRegistry
from bus.errors import DecodeError
from bus.models import FollowUpType, WithdrawalNotice
from tests.conftest import REPO
from tests.factories import make_alert
from tests.unit.test_models import disagreements, walk

SCHEMA = REPO / "schemas" / "withdrawal-notice" / "v1.avsc"
CODEC = AlertCodec(SchemaRegistry.load(REPO / "schemas"))
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA.read_text())
    return data


def _notice() -> WithdrawalNotice:
    update = make_alert(
        "irregular-crossing", "rs", msg_type="UPDATE", references=[str(uuid.uuid4())]
    )
    return WithdrawalNotice.for_partner(
        update, partner_id="mk", alert_ids=[str(r) for r in update.header.references], now=NOW
    )


def test_the_model_agrees_with_the_schema_field_by_field() -> None:
    assert disagreements(_schema(), WithdrawalNotice) == []  # type: ignore[arg-type]


def test_every_field_and_enum_is_documented_and_enums_default_to_the_safe_side() -> None:
    schema = _schema()
    assert [n["name"] for n in walk(schema) if not n.get("doc", "").strip()] == []
    (enum,) = [n for n in walk(schema) if n.get("type") == "enum"]
    assert enum["default"] == "CANCEL"
    assert "logicalType" not in SCHEMA.read_text()


def test_fastavro_and_avro_agree_on_the_fingerprint() -> None:
    js = _schema()
    canonical = fastavro.schema.to_parsing_canonical_form(fastavro.schema.parse_schema(js))
    reference = avro.schema.parse(json.dumps(js))
    assert canonical == reference.canonical_form
    assert bytes.fromhex(
        fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    ) == reference.fingerprint("CRC-64-AVRO")


def test_a_notice_names_identifiers_only_and_round_trips() -> None:
    notice = _notice()
    assert set(notice.to_avro()) == {
        "notice_id", "origin", "alert_ids", "follow_up_id", "msg_type", "issued_at",
        "noticed_at",
    }  # fmt: skip
    assert notice.msg_type is FollowUpType.UPDATE
    value = CODEC.encode_notice(notice)
    decoded = CODEC.decode_message(value)
    assert decoded.notice == notice  # type: ignore[union-attr]


def test_the_notice_id_is_the_same_for_the_same_follow_up_and_partner() -> None:
    update = make_alert("readmission", "al", msg_type="CANCEL", references=[str(uuid.uuid4())])
    refs = [str(r) for r in update.header.references]
    one = WithdrawalNotice.for_partner(update, partner_id="mk", alert_ids=refs, now=NOW)
    again = WithdrawalNotice.for_partner(update, partner_id="mk", alert_ids=refs, now=NOW)
    other = WithdrawalNotice.for_partner(update, partner_id="rs", alert_ids=refs, now=NOW)
    assert one.notice_id == again.notice_id != other.notice_id


def test_decoding_a_notice_as_an_alert_is_a_clear_error() -> None:
    with pytest.raises(DecodeError, match=r"withdrawal-notice.*not an alert"):
        CODEC.decode(CODEC.encode_notice(_notice()))


def test_the_notice_type_is_not_an_alert_type() -> None:
    registry = SchemaRegistry.load(REPO / "schemas")
    assert "withdrawal-notice" not in registry.alert_types
    assert "withdrawal-notice" in registry.record_types
