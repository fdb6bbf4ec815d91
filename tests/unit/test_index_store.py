"""The index store: entries and statistics follow UPDATE, CANCEL, duplicates and exercises, and
the worked example of docs/statistics.md comes out as computed by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus.models import Alert, NationalityCount
from bus.models._common import to_epoch_millis
from services.index.stats import stats_table, write_export
from services.index.store import IndexStore
from tests.factories import make_alert

NOW_MS = 2_000_000_000_000


def crossing(day: str, head: int, breakdown: dict[str, int], asylum: int, **header: Any) -> Alert:
    at = datetime.fromisoformat(f"{day}T03:00:00+00:00")
    alert = make_alert("irregular-crossing", "rs", occurred_at=at, issued_at=at,
                       expires_at=None, **header)  # fmt: skip
    return alert.model_copy(update={
        "border_section": "Tabanovce", "direction_from": "mk", "direction_to": "rs",
        "head_count": head, "asylum_requests": asylum,
        "nationality_breakdown": [NationalityCount(nationality=n, count=c)
                                  for n, c in breakdown.items()],
    })  # fmt: skip


def worked_example() -> list[Alert]:
    """docs/statistics.md, "Worked example", in publishing order."""
    a1 = crossing("2014-01-09", 10, {"sy": 6, "af": 4}, 5)
    a2 = crossing("2014-01-20", 7, {"sy": 7}, 0)
    u1 = crossing("2014-01-09", 14, {"sy": 6, "af": 4}, 9, msg_type="UPDATE",
                  references=[str(a1.alert_id)])  # fmt: skip
    a3 = crossing("2014-01-25", 5, {"sy": 5}, 5)
    c3 = crossing("2014-01-25", 5, {"sy": 5}, 5, msg_type="CANCEL", references=[str(a3.alert_id)])
    x4 = crossing("2014-01-26", 50, {"sy": 50}, 50, status="EXERCISE")
    a5 = crossing("2014-02-03", 2, {"af": 2}, 0)
    return [a1, a2, a1, u1, a3, c3, x4, a5, u1]


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    return IndexStore.open(tmp_path / "index.sqlite3")


def cells(store: IndexStore, indicator: str, min_cell: int, **kw: Any) -> list[tuple[Any, ...]]:
    table = stats_table(store, indicator, min_cell=min_cell, **kw)
    return [(c.month, *c.dims, c.value) for c in table.cells]


def test_the_worked_example_by_hand(store: IndexStore) -> None:
    store.apply_batch(worked_example(), {("t", 0): 9}, now_ms=NOW_MS)
    s, d = "Tabanovce", "mk-rs"
    assert cells(store, "irregular-crossing-events", 1) == [
        ("2014-01", "rs", s, d, 2), ("2014-02", "rs", s, d, 1)]  # fmt: skip
    assert cells(store, "irregular-crossing-persons", 1, by=["nationality"]) == [
        ("2014-01", "af", 4), ("2014-01", "sy", 13), ("2014-01", "unknown", 4),
        ("2014-02", "af", 2)]  # fmt: skip
    assert cells(store, "asylum-requests-at-detection", 1) == [("2014-01", "rs", s, 9)]
    # Suppressed below 3: the two January events and February's two Afghans.
    assert cells(store, "irregular-crossing-events", 3) == [
        ("2014-01", "rs", s, d, None), ("2014-02", "rs", s, d, None)]  # fmt: skip
    assert cells(store, "irregular-crossing-persons", 3, by=["nationality"])[-1] == (
        "2014-02", "af", None)  # fmt: skip
    assert cells(store, "irregular-crossing-persons", 3, by=["nationality"], last_month="2014-01")[
        1] == ("2014-01", "sy", 13)  # fmt: skip


def test_the_same_stream_in_two_batches_gives_the_same_store(tmp_path: Path) -> None:
    alerts = worked_example()
    one = IndexStore.open(tmp_path / "one.sqlite3")
    one.apply_batch(alerts, {}, now_ms=NOW_MS)
    two = IndexStore.open(tmp_path / "two.sqlite3")
    two.apply_batch(alerts[:4], {("t", 0): 4}, now_ms=NOW_MS)
    two.apply_batch(alerts[4:], {("t", 0): 9}, now_ms=NOW_MS)
    assert one.snapshot() == two.snapshot()
    assert two.offsets() == {("t", 0): 9}


def test_a_follow_up_before_its_alert_still_wins(store: IndexStore) -> None:
    a1, _, _, u1, a3, c3, *_ = worked_example()
    store.apply_batch([u1, c3, a1, a3], {}, now_ms=NOW_MS)
    assert cells(store, "irregular-crossing-events", 1) == [
        ("2014-01", "rs", "Tabanovce", "mk-rs", 1)]  # fmt: skip


def test_entries_follow_update_cancel_and_expiry_and_hold_nothing_personal(
    store: IndexStore,
) -> None:
    alert = make_alert("trafficking-arrest", "gr", expires_at=None)
    token = alert.suspects[0].identity_token  # type: ignore[attr-defined]
    store.apply_batch([alert], {}, now_ms=NOW_MS)
    (entry,) = store.entries_for([token], now_ms=NOW_MS)
    assert (entry.owner, entry.role, entry.alert_id) == ("gr", "suspect", str(alert.alert_id))
    text = repr(store.snapshot())
    for person in alert.suspects:  # type: ignore[attr-defined]
        for value in (person.family_name, person.given_names, str(person.date_of_birth)):
            assert value not in text
    update = make_alert("trafficking-arrest", "gr", msg_type="UPDATE", expires_at=None,
                        references=[str(alert.alert_id)])  # fmt: skip
    store.apply_batch([update], {}, now_ms=NOW_MS)
    assert [e.alert_id for e in store.entries_for([token], now_ms=NOW_MS)] == [
        str(update.alert_id)]  # fmt: skip
    cancel = make_alert("trafficking-arrest", "gr", msg_type="CANCEL",
                        references=[str(alert.alert_id)])  # fmt: skip
    store.apply_batch([cancel], {}, now_ms=NOW_MS)
    assert store.entries_for([token], now_ms=NOW_MS) == []
    expires_at = datetime.now(UTC) + timedelta(days=1)
    expiring = make_alert("trafficking-arrest", "al", alert_id=str(uuid.uuid4()),
                          expires_at=expires_at)  # fmt: skip
    expires_ms = to_epoch_millis(expiring.header.expires_at)  # type: ignore[arg-type]
    store.apply_batch([expiring], {}, now_ms=expires_ms - 1)
    assert store.entries_for([token], now_ms=expires_ms - 1)
    assert store.entries_for([token], now_ms=expires_ms) == []
    store.apply_batch([], {}, now_ms=expires_ms)
    assert store.counts()["entries"] == 0


def test_exports_parse_and_keep_suppression(store: IndexStore, tmp_path: Path) -> None:
    import csv
    import json

    store.apply_batch(worked_example(), {}, now_ms=NOW_MS)
    write_export(store, tmp_path / "s.csv", "sdmx-csv", min_cell=3)
    rows = list(csv.DictReader((tmp_path / "s.csv").open(encoding="utf-8")))
    assert {"DATAFLOW", "TIME_PERIOD", "OBS_VALUE", "OBS_STATUS", "NATIONALITY"} <= set(rows[0])
    events = [r for r in rows if r["DATAFLOW"].endswith("IRREGULAR_CROSSING_EVENTS(1.0)")]
    assert [(r["TIME_PERIOD"], r["OBS_VALUE"], r["OBS_STATUS"]) for r in events] == [
        ("2014-01", "", "C"), ("2014-02", "", "C")]  # fmt: skip
    write_export(store, tmp_path / "s.json", "json", min_cell=3)
    data = json.loads((tmp_path / "s.json").read_text("utf-8"))
    assert data["min_cell"] == 3
    assert len(data["indicators"]) == 12
