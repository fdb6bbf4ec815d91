"""What the fan-out reads back: alert identity is (origin, alert id); bad records are refused."""

from __future__ import annotations

import json
import uuid

import pytest

from services.fanout.state import (
    Routed,
    StateError,
    parse_audit_head,
    parse_state,
    state_key,
    state_value,
)

AID = str(uuid.uuid4())


def test_one_origin_cannot_shadow_another_with_the_same_id() -> None:
    routed = Routed()
    routed.add("mk", AID, ["rs", "europol"])
    assert routed.recipients("rs", AID) is None
    assert routed.recipients("mk", AID) == ("europol", "rs")
    routed.add("rs", AID, ["mk"])
    assert routed.recipients("mk", AID) == ("europol", "rs")
    assert routed.origins(AID) == {"mk", "rs"}
    assert len(routed) == 2


def test_an_overlay_reaches_the_index_only_when_merged() -> None:
    routed = Routed()
    routed.add("rs", AID, ["mk"])
    batch = routed.overlay()
    other = str(uuid.uuid4())
    batch.add("al", other, ["xk"])
    assert batch.recipients("rs", AID) == ("mk",)  # reads through
    assert routed.recipients("al", other) is None
    routed.merge(batch)
    assert routed.recipients("al", other) == ("xk",)


def test_a_state_record_round_trips() -> None:
    parsed = parse_state(state_key("rs", AID), state_value("rs", AID, "readmission", ["mk"], []))
    assert parsed is not None
    assert (parsed.origin, parsed.alert_id, parsed.recipients) == ("rs", AID, ("mk",))
    assert parse_state(state_key("rs", AID), None) is None  # a tombstone


def test_a_record_keyed_by_the_bare_alert_id_takes_its_origin_from_the_value() -> None:
    value = json.dumps({"recipients": ["mk"], "origin": "rs", "alert_type": "readmission"})
    parsed = parse_state(AID.encode(), value.encode())
    assert parsed is not None
    assert parsed.origin == "rs"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (None, b"{}", "no key"),
        (b"rs:" + AID.encode(), b"\xff\xfe", "not UTF-8 JSON"),
        (b"rs:" + AID.encode(), b"[1, 2]", "expected a JSON object"),
        (b"", b"{}", "origin None"),
        (b"RS:" + AID.encode(), b'{"recipients": []}', "origin 'RS'"),
        (b"rs:not-a-uuid", b'{"recipients": []}', "is not a UUID"),
        (b"rs:" + AID.encode(), b'{"recipients": "everyone"}', "recipients is not a list"),
        (b"rs:" + AID.encode(), b'{"recipients": ["../x"]}', "recipients is not a list"),
        (b"rs:" + AID.encode(), b'{"origin": "mk", "recipients": []}', "the key names origin"),
    ],
)
def test_a_malformed_state_record_is_refused_naming_the_problem(
    key: bytes | None, value: bytes, problem: str
) -> None:
    with pytest.raises(StateError, match=problem):
        parse_state(key, value)


@pytest.mark.parametrize(
    "value",
    [None, b"garbage", b"[]", b'{"index": -1, "hash": "' + b"0" * 64 + b'"}',
     b'{"index": true, "hash": "' + b"0" * 64 + b'"}', b'{"index": 3, "hash": "short"}'],
)  # fmt: skip
def test_an_audit_record_that_cannot_continue_the_chain_is_refused(value: bytes | None) -> None:
    with pytest.raises(StateError):
        parse_audit_head(value)
