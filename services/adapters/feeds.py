"""Reading national files safely: CSV, JSON, JSON Lines and XML into numbered native records.

Every parser returns one ``FeedRecord`` per record, with where it is in the file ("line 14",
"$.записи[6]", "<zapis> #7 (line 88)") and the record's bytes as read, so that a broken record
can be reported precisely and set aside while the rest of the file carries on. A problem that
makes the whole file unreadable (XML syntax, a JSON syntax error, a DTD) raises ``FeedRejected``.

Hostile input: XML goes through ``defusedxml`` with DTDs forbidden (no entity expansion, no
external entities); every text is limited in length; bytes that are not valid in the file's
encoding are kept (``surrogateescape``) only to be reported as such, never published; a record
nested deeper than ``nesting.MAX_DEPTH`` levels is set aside, measured without recursion before
anything walks it (see ``nesting`` and ``xmltree``).

Parsing is CPU work: callers on an event loop run ``parse`` in a thread.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.etree.ElementTree import ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from services.adapters.errors import FeedRejected, RecordRejected
from services.adapters.nesting import (
    MAX_DEPTH,
    deeper_than,
    json_too_deep,
    load_json,
    loads_strict,
    too_deep_reason,
)
from services.adapters.xmltree import BoundedTreeBuilder, element_value, iter_records

_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a record may hold."""

    max_field_chars: int = 4096


@dataclass(frozen=True)
class FeedRecord:
    """One native record: its number in the file (from 1), where it is, its fields, its bytes.

    ``error`` is set when the record could not be read at all (bad bytes, too long, not an
    object); ``data`` is then whatever could be read.
    """

    number: int
    position: str
    data: dict[str, Any]
    raw: bytes = field(repr=False)
    error: RecordRejected | None = None


class FeedFormat(Protocol):
    """How a country's files are written; ``parse`` turns a file's bytes into records."""

    @property
    def suffixes(self) -> tuple[str, ...]:
        """File name endings of this format, e.g. (".csv",)."""
        ...

    def parse(self, data: bytes, limits: Limits) -> list[FeedRecord]: ...


def check_fields(data: Mapping[str, Any], limits: Limits, prefix: str = "") -> None:
    """Raise ``RecordRejected`` naming the first field with undecodable bytes or too long.

    Iterative (a stack of iterators, in document order), and a field's name is put together
    only for a rejection: safe and linear on any depth.
    """
    names = [prefix]  # the name of each open object or list, in parts
    stack: list[Iterator[tuple[str, str | None, Any]]] = [_entries(data)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            names.pop()
            continue
        part, key, value = entry
        problem = _text_problem(key, limits) if key is not None else None
        if problem is None and isinstance(value, str):
            problem = _text_problem(value, limits)
        if problem is not None:
            raise RecordRejected(problem, field="".join(names) + part)
        if isinstance(value, Mapping):
            stack.append(_entries(value))
            names.append(f"{part}.")
        elif isinstance(value, list) and key is not None:  # a list's items; not lists in lists
            stack.append(((f"[{i}]", None, item) for i, item in enumerate(value)))
            names.append(part)


def _entries(data: Mapping[str, Any]) -> Iterator[tuple[str, str | None, Any]]:
    return ((str(key), str(key), value) for key, value in data.items())


def _text_problem(text: str, limits: Limits) -> str | None:
    if len(text) > limits.max_field_chars:
        return f"is {len(text)} characters long; the limit is {limits.max_field_chars}"
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return (
                f"holds a byte that is not valid UTF-8 (0x{ord(ch) - 0xDC00:02X} at character "
                f"{i + 1}); the file must be UTF-8 (was it saved as Windows-1250/1251 or "
                "ISO-8859-7?)"
            )
        if ch == "\x00":
            return f"holds a NUL character at character {i + 1}"
    return None


def _record(
    number: int, position: str, data: dict[str, Any], raw: bytes, limits: Limits
) -> FeedRecord:
    if deeper_than(data, MAX_DEPTH):
        return FeedRecord(number, position, {}, raw, RecordRejected(too_deep_reason()))
    try:
        check_fields(data, limits)
    except RecordRejected as exc:
        return FeedRecord(number, position, data, raw, exc)
    return FeedRecord(number, position, data, raw)


def _dump(data: Any) -> bytes:
    # The record as JSON, with any undecodable bytes given back as they were read.
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class CsvFeed:
    """A CSV file whose first row names the fields (a BOM is allowed)."""

    delimiter: str = ","
    suffixes: tuple[str, ...] = (".csv",)

    def parse(self, data: bytes, limits: Limits) -> list[FeedRecord]:
        text = data.decode("utf-8-sig", "surrogateescape")
        # Where each line starts, to give every record its own bytes back.
        starts = [0, *(m.end() for m in _NEWLINE.finditer(text)), len(text)]
        # The csv module's own limit is global; field lengths are checked per record instead.
        csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise FeedRejected(f"the header row is not valid CSV: {exc}", where="line 1") from exc
        if not header:
            return []
        names = [h.strip() for h in header]
        _check_header(names)
        records: list[FeedRecord] = []
        last_line = reader.line_num
        while True:
            start = last_line + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:
                raise FeedRejected(f"not valid CSV: {exc}", where=f"line {start}") from exc
            if row is None:
                break
            end, last_line = reader.line_num, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            chunk = text[starts[start - 1] : starts[min(end, len(starts) - 1)]]
            raw = chunk.rstrip("\r\n").encode("utf-8", "surrogateescape")
            number, position = len(records) + 1, f"line {start}"
            values = dict(zip(names, (cell.strip() for cell in row), strict=False))
            if len(row) != len(names):
                problem = RecordRejected(
                    f"the row has {len(row)} fields; the header names {len(names)} (is a "
                    f"'{self.delimiter}' inside a value without quotes?)"
                )
                records.append(FeedRecord(number, position, values, raw, problem))
                continue
            records.append(_record(number, position, values, raw, limits))
        return records


def _check_header(names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if not name:
            raise FeedRejected(f"column {i} of the header row has no name", where="line 1")
        if any("\udc80" <= ch <= "\udcff" for ch in name):
            raise FeedRejected(
                f"column {i} of the header row is not valid UTF-8; the file must be UTF-8",
                where="line 1",
            )
        if name in seen:
            raise FeedRejected(f"column {name!r} appears twice in the header row", where="line 1")
        seen.add(name)


@dataclass(frozen=True)
class JsonFeed:
    """A JSON document: an array of record objects, or an object holding it at ``records_key``."""

    records_key: str | None = None
    suffixes: tuple[str, ...] = (".json",)

    def parse(self, data: bytes, limits: Limits) -> list[FeedRecord]:
        document = load_json(data.decode("utf-8-sig", "surrogateescape"), "file")
        items, path = document, "$"
        if self.records_key is not None:
            if not isinstance(document, dict) or self.records_key not in document:
                raise FeedRejected(
                    f"expected an object with the records under {self.records_key!r}",
                    where="$",
                )
            items, path = document[self.records_key], f"$.{self.records_key}"
        if not isinstance(items, list):
            kind = type(items).__name__
            raise FeedRejected(f"expected an array of records, got {kind}", where=path)
        return [json_record(item, i + 1, f"{path}[{i}]", limits) for i, item in enumerate(items)]


def json_record(item: Any, number: int, position: str, limits: Limits) -> FeedRecord:
    """A record from a parsed JSON value (also used for records posted over HTTP)."""
    if deeper_than(item, MAX_DEPTH):
        # Not dumped back either: ``json.dumps`` recurses too. The position says where it is.
        return FeedRecord(number, position, {}, b"", RecordRejected(too_deep_reason()))
    raw = _dump(item)
    if not isinstance(item, dict):
        problem = RecordRejected(f"expected a JSON object, got {type(item).__name__}")
        return FeedRecord(number, position, {}, raw, problem)
    return _record(number, position, item, raw, limits)


@dataclass(frozen=True)
class JsonLinesFeed:
    """One JSON object per line (JSON Lines); a broken line is one broken record."""

    suffixes: tuple[str, ...] = (".jsonl", ".ndjson")

    def parse(self, data: bytes, limits: Limits) -> list[FeedRecord]:
        records: list[FeedRecord] = []
        data = data.removeprefix(b"\xef\xbb\xbf")
        for line_no, line in enumerate(data.split(b"\n"), 1):
            raw = line.rstrip(b"\r")
            if not raw.strip():
                continue
            number, position = len(records) + 1, f"line {line_no}"
            text = raw.decode("utf-8", "surrogateescape")
            if json_too_deep(text, MAX_DEPTH) is not None:  # not parsed: see ``nesting``
                records.append(
                    FeedRecord(number, position, {}, raw, RecordRejected(too_deep_reason()))
                )
                continue
            try:
                item = loads_strict(text)
            except json.JSONDecodeError as exc:
                problem = RecordRejected(f"not valid JSON: {exc.msg} at column {exc.colno}")
                records.append(FeedRecord(number, position, {}, raw, problem))
                continue
            except (ValueError, RecursionError) as exc:
                problem = RecordRejected(f"not acceptable JSON: {exc}")
                records.append(FeedRecord(number, position, {}, raw, problem))
                continue
            record = json_record(item, number, position, limits)
            records.append(FeedRecord(number, position, record.data, raw, record.error))
        return records


@dataclass(frozen=True)
class XmlFeed:
    """An XML document whose ``record_tag`` elements are the records, anywhere below the root.

    An element becomes a dict (``xmltree.element_value``): its attributes, its text under
    ``#text``, then its children by tag (a repeated tag becomes a list); an element with no
    attributes and no children is its text.
    """

    record_tag: str
    suffixes: tuple[str, ...] = (".xml",)

    def parse(self, data: bytes, limits: Limits) -> list[FeedRecord]:
        builder = BoundedTreeBuilder(self.record_tag)
        parser = DefusedXMLParser(target=builder, forbid_dtd=True)
        builder.parser = parser
        try:
            parser.feed(data)
            root = parser.close()
        except DefusedXmlException as exc:
            raise FeedRejected(
                f"refused: {type(exc).__name__} (DTDs and entities are not accepted)"
            ) from exc
        except ParseError as exc:
            line, column = exc.position
            raise FeedRejected(
                f"XML {_parse_reason(exc)}; the file must be well-formed and in the encoding it "
                "declares (UTF-8 if none)",
                where=f"line {line}, column {column + 1}",
            ) from exc
        records: list[FeedRecord] = []
        for element in iter_records(root, self.record_tag):
            number = len(records) + 1
            line = builder.lines[number - 1] if number <= len(builder.lines) else 0
            position = f"<{self.record_tag}> #{number} (line {line})"
            raw = tostring(element, encoding="utf-8")  # a deep record as built: cut at the limit
            if id(element) in builder.too_deep:
                records.append(
                    FeedRecord(number, position, {}, raw, RecordRejected(too_deep_reason()))
                )
                continue
            value = element_value(element)
            if not isinstance(value, dict):
                value = {"": value} if value else {}
            records.append(_record(number, position, value, raw, limits))
        return records


def _parse_reason(exc: ParseError) -> str:
    return str(exc).split(":")[0]
