"""What the fan-out remembers and reads back: alert identity is (origin, alert id), kept on disk
in a file of each instance's own, rebuilt from Kafka; bad records are refused."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest

from bus.settings import BusSettings
from services.fanout import state
from services.fanout.state import (
    Restorer,
    Routed,
    StateError,
    StateStoreError,
    parse_audit_head,
    parse_state,
    state_key,
    state_value,
)

AID = str(uuid.uuid4())


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[Routed]:
    with Routed(tmp_path / "state") as store:
        yield store


def test_one_origin_cannot_shadow_another_with_the_same_id(routed: Routed) -> None:
    routed.add("mk", AID, ["rs", "europol"])
    assert routed.recipients("rs", AID) is None
    assert routed.recipients("mk", AID) == ("europol", "rs")
    routed.add("rs", AID, ["mk"])
    assert routed.recipients("mk", AID) == ("europol", "rs")
    assert routed.recipients("rs", AID) == ("mk",)
    assert routed.origins(AID) == {"mk", "rs"}
    assert len(routed) == 2


def test_an_alert_routed_to_nobody_is_still_known(routed: Routed) -> None:
    routed.add("rs", AID, [])
    assert routed.recipients("rs", AID) == ()  # a duplicate of it is still refused
    assert routed.origins(AID) == {"rs"}


def test_an_overlay_reaches_the_store_only_when_merged(routed: Routed) -> None:
    routed.add("rs", AID, ["mk"])
    batch = routed.overlay()
    other = str(uuid.uuid4())
    batch.add("al", other, ["xk"])
    batch.add("rs", other, ["mk", "al"])
    assert batch.recipients("rs", AID) == ("mk",)  # reads through
    assert batch.origins(other) == {"al", "rs"}
    assert routed.recipients("al", other) is None
    routed.merge(batch)
    assert routed.recipients("al", other) == ("xk",)
    assert routed.recipients("rs", other) == ("al", "mk")
    assert routed.origins(other) == {"al", "rs"}


def test_an_aborted_batch_leaves_the_store_as_it_was(routed: Routed) -> None:
    routed.add("rs", AID, ["mk"])
    aborted = routed.overlay()
    other = str(uuid.uuid4())
    aborted.add("rs", other, ["mk"])
    aborted.add("al", AID, ["xk"])
    # The transaction aborted: its overlay is dropped, and the batch is routed again.
    again = routed.overlay()
    assert again.recipients("rs", other) is None
    assert again.origins(AID) == {"rs"}
    assert len(routed) == 1


def test_entries_survive_past_the_page_cache(tmp_path: Path) -> None:
    """Far more alerts than the store's cache holds: every one is still found, on disk."""
    ids = [str(uuid.uuid4()) for _ in range(20_000)]
    with Routed(tmp_path, cache_kib=64) as routed:
        for start in range(0, len(ids), 500):
            batch = routed.overlay()
            for i, alert_id in enumerate(ids[start : start + 500], start):
                batch.add("rs", alert_id, [f"p{i % 7}", "europol"])
            routed.merge(batch)
        assert len(routed) == len(ids)
        assert routed.recipients("rs", ids[0]) == ("europol", "p0")
        assert routed.recipients("rs", ids[12_345]) == ("europol", f"p{12_345 % 7}")
        assert routed.recipients("mk", ids[0]) is None
        assert routed.path is not None
        assert routed.file_bytes() > 64 * 1024


def test_closing_deletes_the_file_and_a_new_use_starts_empty(tmp_path: Path) -> None:
    routed = Routed(tmp_path)
    routed.add("rs", AID, ["mk"])
    path = routed.path
    assert path is not None
    assert path.exists()
    routed.close()
    assert not path.exists()
    assert len(routed) == 0
    assert routed.recipients("rs", AID) is None  # a fresh file, to be rebuilt from Kafka
    routed.close()


def test_two_stores_in_one_directory_share_nothing(tmp_path: Path) -> None:
    with Routed(tmp_path) as first, Routed(tmp_path) as second:
        first.add("rs", AID, ["mk"])
        assert second.recipients("rs", AID) is None
        second.add("mk", AID, ["rs"])  # opening the directory leaves the live file alone
        assert first.recipients("rs", AID) == ("mk",)
        assert first.path != second.path
        assert first.path is not None
        assert first.path.exists()


def test_a_file_left_by_an_ended_process_is_deleted_unread(tmp_path: Path) -> None:
    left = tmp_path / "routed-crashed.sqlite3"
    with sqlite3.connect(left) as db:  # what a fan-out that crashed left behind
        db.executescript(
            "CREATE TABLE lists (id INTEGER PRIMARY KEY, partners TEXT NOT NULL UNIQUE);"
            "CREATE TABLE routed (alert_id TEXT, origin TEXT, list INTEGER,"
            " PRIMARY KEY (alert_id, origin)) WITHOUT ROWID;"
            "INSERT INTO lists VALUES (1, 'mk');"
        )
        db.execute("INSERT INTO routed VALUES (?, 'rs', 1)", (AID,))
    db.close()
    with Routed(tmp_path) as routed:
        assert routed.recipients("rs", AID) is None
        assert not left.exists()
        assert routed.path is not None
        assert routed.path.parent == tmp_path


def test_a_directory_that_cannot_hold_the_file_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StateStoreError, match=r"not-a-dir.*BUS_FANOUT_STATE_DIR"):
        Routed(blocker).recipients("rs", AID)


def test_a_state_file_that_fails_under_the_fan_out_is_named_on_read_and_write(
    tmp_path: Path,
) -> None:
    # SQLite's own errors (a disk gone bad, a file closed under it) reach the fan-out as a
    # StateStoreError naming the file, whichever call meets them.
    with Routed(tmp_path) as routed:
        routed.add("rs", AID, ["mk"])
        assert routed._db is not None
        routed._db.close()  # the file fails under the fan-out
        calls = {
            "recipients": lambda: routed.recipients("rs", AID),
            "origins": lambda: routed.origins(AID),
            "len": lambda: len(routed),
            "add": lambda: routed.add("rs", str(uuid.uuid4()), ["al"]),
        }
        for name, call in calls.items():
            with pytest.raises(StateStoreError, match=r"routed-.*sqlite3.*rebuilds") as caught:
                call()
            assert ("write" if name == "add" else "read") in str(caught.value), name


async def test_a_restore_folds_the_changelog_and_skips_what_does_not_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = str(uuid.uuid4())
    topic = [
        [_record(state_key("rs", AID), state_value("rs", AID, "readmission", ["mk"], []), 0),
         _record(b"rs:" + AID.encode(), b"garbage", 1)],
        [_record(state_key("mk", AID), state_value("mk", AID, "readmission", ["rs", "al"], []), 2),
         _record(state_key("rs", other), None, 3)],
    ]  # fmt: skip

    async def records(*_: object, **__: object) -> AsyncIterator[list[SimpleNamespace]]:
        for batch in topic:
            yield batch

    monkeypatch.setattr(state, "iter_records", records)
    log = MagicMock()
    restorer = Restorer(BusSettings(), log)
    with Routed(tmp_path) as routed:
        await restorer.routed(routed)
        await restorer.routed(routed)  # a shard gained later reads it again: the same state
        assert routed.recipients("rs", AID) == ("mk",)
        assert routed.recipients("mk", AID) == ("al", "rs")
        assert routed.origins(other) == set()  # a tombstone
        assert len(routed) == 2
    assert restorer.malformed == {("bus.fanout.state", 0, 1)}
    log.error.assert_called_once()


def _record(key: bytes, value: bytes | None, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic="bus.fanout.state", partition=0, offset=offset, key=key,
                           value=value)  # fmt: skip


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
