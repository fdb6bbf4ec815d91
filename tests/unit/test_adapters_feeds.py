"""Reading national files safely: positions, broken records, hostile input, the journal."""

# ruff: noqa: RUF001  (Cyrillic letters are meant)

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from services.adapters.errors import AdapterError, FeedRejected, RecordRejected
from services.adapters.feeds import (
    CsvFeed,
    JsonFeed,
    JsonLinesFeed,
    Limits,
    XmlFeed,
    check_fields,
    json_record,
)
from services.adapters.journal import Journal
from services.adapters.nesting import (
    MAX_DEPTH,
    JsonTooDeep,
    deeper_than,
    json_too_deep,
    line_and_column,
    load_json,
)

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


# -- Nesting: measured without recursion, a record deeper than MAX_DEPTH set aside -------------


def nested_json(levels: int, *, field: str = "x") -> str:
    """A record (one level) whose ``field`` holds arrays down to ``levels`` levels in all."""
    return f'{{"{field}": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def nested_value(levels: int) -> dict[str, Any]:
    """The same as parsed data, built without recursion."""
    inner: list[Any] = []
    for _ in range(levels - 2):
        inner = [inner]
    return {"x": inner}


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000, 100_000])
def test_deeper_than_measures_any_depth_without_recursion(levels: int) -> None:
    assert deeper_than(nested_value(levels), MAX_DEPTH)
    assert not deeper_than(nested_value(MAX_DEPTH), MAX_DEPTH)
    assert not deeper_than("text", 0)


def test_json_depth_scan_skips_strings_and_finds_the_place() -> None:
    text = '{"a": "[[[[{{{{\\"[[[", "b": [[1]]}'
    assert json_too_deep(text, 3) is None
    offset = json_too_deep(text, 2)
    assert offset is not None
    assert text[offset] == "["
    assert line_and_column('{\n  "b": [[1]]}', 11) == "line 2, column 10"
    assert json_too_deep('"unterminated [[[', 2) == 16  # a broken text is still measured


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000, 100_000])
def test_json_lines_a_record_nested_too_deep_is_one_rejected_record(levels: int) -> None:
    data = f'{{"a": 1}}\n{nested_json(levels)}\n{nested_json(MAX_DEPTH)}\n'.encode()
    records = JsonLinesFeed().parse(data, LIMITS)
    assert [r.error is None for r in records] == [True, False, True]
    error = records[1].error
    assert error is not None
    assert error.reason == "nested deeper than 32 levels"
    assert records[1].raw == nested_json(levels).encode()  # the line as read, for the report
    assert records[1].data == {}


def test_json_document_a_record_too_deep_for_records_but_not_for_parsing_is_set_aside() -> None:
    data = f'{{"записи": [{{"a": 1}}, {nested_json(40)}, {nested_json(MAX_DEPTH)}]}}'.encode()
    records = JsonFeed(records_key="записи").parse(data, LIMITS)
    assert [r.error.reason if r.error else None for r in records] == [
        None,
        "nested deeper than 32 levels",
        None,
    ]
    assert records[1].position == "$.записи[1]"


@pytest.mark.parametrize("levels", [5_000, 100_000])
def test_json_document_nested_beyond_parsing_is_rejected_whole_with_where(levels: int) -> None:
    data = f'[{{"a": 1}},\n {nested_json(levels)}]'.encode()
    started = time.monotonic()
    with pytest.raises(FeedRejected, match="nested deeper than 256 levels") as info:
        JsonFeed().parse(data, LIMITS)
    assert info.value.where == "line 2, column 262"  # the 257th level
    assert "a record may nest at most 32 levels" in info.value.reason
    assert time.monotonic() - started < 5


def xml_nested(levels: int) -> bytes:
    """A <zapis> (one level) holding elements down to ``levels`` levels, between two others."""
    deep = "<n>" * (levels - 1) + "x" + "</n>" * (levels - 1)
    return (
        f'<evidencija>\n<zapis id="1"><ime>Ana</ime></zapis>\n<zapis id="2">{deep}</zapis>\n'
        f'<zapis id="3"><ime>Ivo</ime></zapis>\n</evidencija>'
    ).encode()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000, 100_000])
def test_xml_a_record_nested_too_deep_is_cut_and_set_aside(levels: int) -> None:
    records = XmlFeed(record_tag="zapis").parse(xml_nested(levels), LIMITS)
    assert [r.position for r in records] == [
        "<zapis> #1 (line 2)",
        "<zapis> #2 (line 3)",
        "<zapis> #3 (line 4)",
    ]
    assert records[0].data == {"id": "1", "ime": "Ana"}
    assert records[2].data == {"id": "3", "ime": "Ivo"}
    error = records[1].error
    assert error is not None
    assert error.reason == "nested deeper than 32 levels"
    # What is kept of it (for the report and the dead letter) is cut at the limit.
    assert records[1].raw.count(b"<n") == MAX_DEPTH - 1


def test_xml_a_record_exactly_as_deep_as_allowed_is_read() -> None:
    [_, record, _] = XmlFeed(record_tag="zapis").parse(xml_nested(MAX_DEPTH), LIMITS)
    assert record.error is None
    value: Any = record.data
    for _ in range(MAX_DEPTH - 1):
        value = value["n"] if isinstance(value, dict) else value
    assert value == "x"


def test_xml_nested_too_deep_outside_any_record_rejects_the_file() -> None:
    data = b"<a>" * 5_000 + b"<zapis/>" + b"</a>" * 5_000
    with pytest.raises(FeedRejected, match="nested deeper than 32 levels outside any <zapis>"):
        XmlFeed(record_tag="zapis").parse(data, LIMITS)


def test_check_fields_walks_any_depth_without_recursion() -> None:
    data: dict[str, Any] = {"leaf": "ж" * 101}
    for _ in range(100_000):
        data = {"n": data}
    with pytest.raises(RecordRejected, match="101 characters") as info:
        check_fields(data, LIMITS)
    assert info.value.field is not None
    assert info.value.field.endswith("n.n.leaf")


def test_a_posted_record_nested_too_deep_is_rejected_without_dumping_it() -> None:
    record = json_record(nested_value(100_000), 1, "body[0]", LIMITS)
    assert record.error is not None
    assert record.error.reason == "nested deeper than 32 levels"
    assert record.raw == b""


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


def test_a_journal_that_is_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_bytes(b"")
    path = tmp_path / "state" / "rs.journal"
    path.parent.mkdir()
    path.symlink_to(target)
    with pytest.raises(AdapterError, match="cannot be opened as a regular file"):
        Journal(path)
    assert target.read_bytes() == b""


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_files_and_bodies_refuse_the_numbers_json_does_not_have(constant: str) -> None:
    text = f'[{{"a": 1}}, {{"x": {constant}}}]'
    with pytest.raises(FeedRejected, match=f"not acceptable JSON: {constant} is not a JSON number"):
        load_json(text, "body")
    with pytest.raises(FeedRejected, match="not acceptable JSON"):
        JsonFeed().parse(text.encode(), LIMITS)
    [record] = JsonLinesFeed().parse(f'{{"x": {constant}}}'.encode(), LIMITS)
    assert record.error is not None
    assert "not a JSON number" in record.error.reason


def test_load_json_names_where_a_body_breaks_and_refuses_to_parse_one_too_deep() -> None:
    assert load_json('{"a": [1.5, null]}', "body") == {"a": [1.5, None]}
    with pytest.raises(FeedRejected, match="not valid JSON") as broken:
        load_json('[\n  {"a": }\n]', "body")
    assert broken.value.where == "line 2, column 9"
    with pytest.raises(JsonTooDeep, match="so the body is not read") as deep:
        load_json("[" * 300 + "]" * 300, "body")
    assert deep.value.where == "line 1, column 257"
