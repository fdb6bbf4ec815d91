"""The audit hash chain: any change, removal or move is found at its index."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bus.audit import AuditChain, canonical_value, decisions, verify_chain, verify_chains


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


def test_chains_verify_each_on_its_own_and_a_record_moved_between_them_is_found() -> None:
    chains = {k: AuditChain(chain=k) for k in range(3)}
    records = [chains[i % 3].append({"alert_id": f"a{i}", "decisions": []}) for i in range(30)]
    verdicts = verify_chains(records)
    assert sorted(verdicts) == [0, 1, 2]
    assert all(v.ok and v.count == 10 for v in verdicts.values())
    moved = [dict(r) for r in records]
    moved[4]["chain"] = 2  # record 1 of chain 1, claimed for chain 2
    after = verify_chains(moved)
    assert after[1].first_broken == 1
    assert not after[2].ok


def test_every_decision_of_an_alert_record_is_listed_with_the_alert() -> None:
    chain = AuditChain(chain=0)
    record = chain.append({
        "alert_id": "a1", "origin": "rs",
        "decisions": [
            {"partner": "mk", "decision": "delivered", "reason": "covered by x"},
            {"partner": "europol", "decision": "denied", "reason": "no agreement"},
        ],
    })  # fmt: skip
    old = AuditChain().append({"alert_id": "a0", "partner": "mk", "decision": "denied"})
    listed = list(decisions([old, record]))
    assert [(d["alert_id"], d["partner"], d["decision"]) for d in listed] == [
        ("a0", "mk", "denied"), ("a1", "mk", "delivered"), ("a1", "europol", "denied"),
    ]  # fmt: skip
    assert all(d["origin"] == "rs" and d["chain"] == 0 for d in listed[1:])


def test_a_record_with_a_pre_encoded_field_is_the_record_serialised_whole() -> None:
    whole, spliced = AuditChain(chain=2), AuditChain(chain=2)
    entries = [{"partner": "mk", "decision": "delivered", "reason": "Петровић", "redacted": []}]
    for i in range(4):
        body = {"alert_id": f"a{i}", "origin": "rs", "source": {"offset": i}, "tlp": "AMBER"}
        assert spliced.append_json(body, encoded={"decisions": canonical_value(entries)}) == (
            whole.append_json({**body, "decisions": entries})
        )
    assert spliced.head_hash == whole.head_hash
