"""Reading national files safely: positions, broken records, hostile input, the journal."""

# ruff: noqa: RUF001  (Cyrillic letters are meant)

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from services.adapters.errors import AdapterError, FeedRejected
from services.adapters.feeds import CsvFeed, JsonFeed, JsonLinesFeed, Limits, XmlFeed
from services.adapters.journal import Journal

LIMITS = Limits(max_field_chars=100)
_LOL = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + _LOL.encode()
    + b"]><lolz>&lol9;</lolz>"
)


def test_csv_records_know_their_line_and_bytes() -> None:
    data = '\ufeffид,опис\n1,"два\nреда"\n\n2,крај\n'.encode()
    records = CsvFeed().parse(data, LIMITS)
    assert [(r.number, r.position) for r in records] == [(1, "line 2"), (2, "line 5")]
    assert records[0].data == {"ид": "1", "опис": "два\nреда"}
    assert records[0].raw == '1,"два\nреда"'.encode()
    assert all(r.error is None for r in records)


def test_csv_broken_records_are_named_and_the_rest_carries_on() -> None:
    data = (
        "ид;име\n1;Марко\n".encode()
        + "2;Петровић\n".encode("cp1251")  # a line saved in Windows-1251
        + b"3\n"  # a short row
        + ("4;" + "ж" * 101 + "\n").encode()  # a field over the limit
        + "5;Ана\n".encode()
    )
    records = CsvFeed(delimiter=";").parse(data, LIMITS)
    assert [r.number for r in records] == [1, 2, 3, 4, 5]
    assert records[0].error is None
    assert records[4].error is None
    assert records[1].error is not None
    assert records[1].error.field == "име"
    assert "not valid UTF-8" in records[1].error.reason
    assert records[1].raw == "2;Петровић".encode("cp1251")  # the bytes as read
    assert records[2].error is not None
    assert "the row has 1 fields" in records[2].error.reason
    assert records[3].error is not None
    assert records[3].error.field == "име"
    assert "101 characters" in records[3].error.reason


def test_csv_header_problems_reject_the_file() -> None:
    with pytest.raises(FeedRejected, match="appears twice"):
        CsvFeed().parse(b"a,a\n1,2\n", LIMITS)
    with pytest.raises(FeedRejected, match="has no name"):
        CsvFeed().parse(b"a,\n1,2\n", LIMITS)


def test_json_positions_and_errors() -> None:
    feed = JsonFeed(records_key="записи")
    records = feed.parse(json.dumps({"записи": [{"a": 1}, 7]}).encode(), LIMITS)
    assert [r.position for r in records] == ["$.записи[0]", "$.записи[1]"]
    assert records[1].error is not None
    assert "expected a JSON object" in records[1].error.reason
    with pytest.raises(FeedRejected, match="not valid JSON") as info:
        feed.parse(b'{"\xd0\xb7\xd0\xb0\xd0\xbf\xd0\xb8\xd1\x81\xd0\xb8": [\n  {"a": }\n]}', LIMITS)
    assert info.value.where == "line 2, column 9"
    with pytest.raises(FeedRejected, match="under 'записи'"):
        feed.parse(b"[]", LIMITS)
    with pytest.raises(FeedRejected, match="not acceptable JSON"):
        feed.parse(b'{"x": NaN}', LIMITS)


def test_json_with_undecodable_bytes_names_the_field() -> None:
    records = JsonFeed().parse(b'[{"name": "ok"}, {"name": "\xe8\xf0"}]', LIMITS)
    assert records[0].error is None
    assert records[1].error is not None
    assert records[1].error.field == "name"


def test_json_lines_a_broken_line_is_one_broken_record() -> None:
    data = b'{"a": 1}\n{"a": \n\n[1]\n{"a": 2}\r\n'
    records = JsonLinesFeed().parse(data, LIMITS)
    assert [(r.number, r.position, r.error is None) for r in records] == [
        (1, "line 1", True),
        (2, "line 2", False),
        (3, "line 4", False),
        (4, "line 5", True),
    ]


def test_xml_records_elements_attributes_and_lines() -> None:
    data = b"""<?xml version="1.0" encoding="UTF-8"?>
<evidencija>
  <zapis id="1"><ime>Ana</ime><osobe><osoba>a</osoba><osoba>b</osoba></osobe></zapis>
  <zapis id="2"><tekst jezik="bs">Zdravo</tekst></zapis>
</evidencija>"""
    records = XmlFeed(record_tag="zapis").parse(data, LIMITS)
    assert [r.position for r in records] == ["<zapis> #1 (line 3)", "<zapis> #2 (line 4)"]
    assert records[0].data == {"id": "1", "ime": "Ana", "osobe": {"osoba": ["a", "b"]}}
    assert records[1].data == {"id": "2", "tekst": {"jezik": "bs", "#text": "Zdravo"}}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        # Billion laughs: entity expansion is refused before it starts.
        (BILLION_LAUGHS, "DTDForbidden"),
        # External entity (file disclosure).
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<x><zapis>&e;</zapis></x>",
            "DTDForbidden",
        ),
        (b"<x><zapis>\xe8\xf0</zapis></x>", "not well-formed"),
        (b"<x><zapis>", "no element found"),
    ],
)
def test_hostile_or_broken_xml_is_rejected_quickly(document: bytes, problem: str) -> None:
    started = time.monotonic()
    with pytest.raises(FeedRejected, match=problem):
        XmlFeed(record_tag="zapis").parse(document, LIMITS)
    assert time.monotonic() - started < 1


def test_deeply_nested_or_huge_json_is_rejected_not_a_crash() -> None:
    with pytest.raises(FeedRejected):
        JsonFeed().parse(b"[" * 100_000 + b"]" * 100_000, LIMITS)
    with pytest.raises(FeedRejected):
        JsonFeed().parse(b"[" + b"9" * 10_000 + b"]", LIMITS)


def test_journal_survives_a_torn_last_line_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state" / "rs.journal"
    journal = Journal(path)
    journal.record_batch("f1", acked={1: "id-1", 2: "id-2"}, quarantined=[3], skipped={})
    journal.close()
    with path.open("ab") as f:
        f.write(b'{"file": "f1", "acked": {"4": "id-4"')  # the process died mid-write
    again = Journal(path)
    assert again.progress("f1").handled == {1, 2, 3}
    assert again.is_published("id-2")
    assert not again.is_published("id-4")
    again.record_batch("f1", acked={4: "id-4"}, quarantined=[], skipped={5: "id-1"})
    again.mark_done("f1", "a.csv", "done", published=3)
    again.close()
    final = Journal(path)
    assert final.progress("f1").handled == {1, 2, 3, 4, 5}
    assert final.progress("f1").done
    assert path.read_bytes().endswith(b"\n")
    final.close()


def test_a_damaged_journal_stops_the_adapter_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "rs.journal"
    path.write_bytes(b'{"file": "f1", "acked": {}}\nnot json\n{"file": "f1", "done": "x"}\n')
    with pytest.raises(AdapterError, match="damaged at line 2"):
        Journal(path)
