"""National files as a misbehaving member would write them, in each country's own format.

    numbers_file("rs", [3_000_000_000, 10**20])   # the sample, plus a crossing per head count
    deep_file("me", 5_000)                         # the sample, plus a record 5,000 levels deep

Each is the country's sample feed (every record valid) with hostile records appended, so a
test sees the good records published and only the hostile ones set aside.
"""

# ruff: noqa: RUF001  (Cyrillic and Greek letters are meant)

from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from tests.unit.test_adapters_countries import EXPECTED_TYPES, sample_feed


@dataclass(frozen=True)
class Fields:
    """Where a country's records say what they are, who they are, and how many crossed."""

    kind: str
    crossing: str
    national_id: str
    head_count: str


FIELDS = {
    "al": Fields("lloji", "kalim_i_paligjshem", "nr_rekordit", "numri_personave"),
    "ba": Fields("vrsta", "ilegalni_prelazak", "id", "broj_osoba"),
    "gr": Fields("κατηγορία", "παράνομη_είσοδος", "αριθμός_καταχώρισης", "αριθμός_ατόμων"),
    "me": Fields("tip", "nezakonit_prelazak", "broj_predmeta", "broj_lica"),
    "mk": Fields("тип", "нерегуларно_преминување", "идентификатор", "број_на_лица"),
    "rs": Fields("врста", "нелегални_прелазак", "ид_записа", "број_лица"),
}
#: Countries whose format nests (JSON, JSON Lines, XML); CSV does not.
NESTING = ("ba", "gr", "me", "mk")


def sample_records(cc: str) -> int:
    """How many records the sample feed of ``cc`` holds (all valid)."""
    return sum(EXPECTED_TYPES[cc].values())


def suffix(cc: str) -> str:
    return sample_feed(cc).suffix


def numbers_file(cc: str, head_counts: list[int]) -> bytes:
    """The sample of ``cc`` plus one irregular crossing per head count, in its native format."""
    f = FIELDS[cc]
    text = sample_feed(cc).read_text("utf-8-sig")
    if cc in ("rs", "al"):
        delimiter = ";" if cc == "al" else ","
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
        crossing = next(r for r in rows if r[f.kind] == f.crossing)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
        for i, count in enumerate(head_counts):
            writer.writerow({**crossing, f.national_id: f"HOSTILE-{i}", f.head_count: str(count)})
        return out.getvalue().encode()
    if cc == "ba":
        root = ElementTree.fromstring(text)  # our own sample: safe to parse with ElementTree
        crossing_element = next(z for z in root if z.findtext(f.kind) == f.crossing)
        for i, count in enumerate(head_counts):
            hostile = copy.deepcopy(crossing_element)
            hostile.set(f.national_id, f"HOSTILE-{i}")
            crossing = hostile.find("prelazak")
            assert crossing is not None
            crossing.set(f.head_count, str(count))
            root.append(hostile)
        return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    records, wrap = _json_records(cc, text)
    crossing_record = next(r for r in records if r[f.kind] == f.crossing)
    hostile = [
        {**crossing_record, f.national_id: f"HOSTILE-{i}", f.head_count: count}
        for i, count in enumerate(head_counts)
    ]
    return wrap([*records, *hostile])


def _nested_json(levels: int) -> str:
    """A record object (one level) holding arrays down to ``levels`` levels, as text: no JSON
    library writes such a thing."""
    return '{"x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


def deep_file(cc: str, levels: int) -> bytes:
    """The sample of ``cc`` plus one record nested ``levels`` levels deep."""
    text = sample_feed(cc).read_text("utf-8-sig")
    if cc == "ba":
        deep = '<zapis id="HOSTILE-DEEP">' + "<n>" * (levels - 1) + "</n>" * (levels - 1)
        return text.replace("</evidencija>", deep + "</zapis>\n</evidencija>").encode()
    records, wrap = _json_records(cc, text)
    placeholder = "HOSTILE-DEEP-PLACEHOLDER"
    return wrap([*records, placeholder]).replace(
        json.dumps(placeholder).encode(), _nested_json(levels).encode()
    )


def _json_records(cc: str, text: str) -> tuple[list[Any], Any]:
    """The records of a JSON, JSON Lines sample, and how to write a list of records back."""
    if cc == "me":
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return records, lambda items: "".join(
            json.dumps(item, ensure_ascii=False) + "\n" for item in items
        ).encode()
    document = json.loads(text)
    if cc == "mk":
        return document["записи"], lambda items: json.dumps(
            {**document, "записи": items}, ensure_ascii=False
        ).encode()
    return document, lambda items: json.dumps(items, ensure_ascii=False).encode()
