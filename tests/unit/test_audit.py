"""The audit hash chain: any change, removal or move is found at its index."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bus.audit import AuditChain, verify_chain


def _chain(n: int) -> list[dict[str, object]]:
    chain = AuditChain()
    return [chain.append({"alert_id": f"a{i}", "partner": "europol", "i": i}) for i in range(n)]


def test_append_json_writes_the_same_record_as_append() -> None:
    a, b = AuditChain(), AuditChain()
    for i in range(5):
        body = {"alert_id": f"a{i}", "partner": "mk", "redacted": ["persons"], "name": "Петровић"}
        assert json.loads(b.append_json(body)) == a.append(body)
    assert a.head_hash == b.head_hash


def test_an_intact_chain_verifies() -> None:
    assert verify_chain(_chain(50)).ok
    assert verify_chain([]).ok


@given(st.integers(min_value=2, max_value=40), st.data())
def test_a_changed_removed_or_moved_record_is_reported_at_its_index(
    n: int, data: st.DataObject
) -> None:
    records = _chain(n)
    i = data.draw(st.integers(min_value=0, max_value=n - 2))
    changed = [dict(r) for r in records]
    changed[i]["partner"] = "someone-else"
    assert verify_chain(changed).first_broken == i
    assert verify_chain(records[:i] + records[i + 1 :]).first_broken == i
    moved = [*records[:i], records[i + 1], records[i], *records[i + 2 :]]
    assert verify_chain(moved).first_broken == i


def test_a_chain_resumes_after_its_last_record() -> None:
    records = _chain(3)
    chain = AuditChain.resume(records[-1])
    records.append(chain.append({"alert_id": "next"}))
    assert verify_chain(records).ok
