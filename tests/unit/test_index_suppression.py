"""Secondary suppression: no output of ``bus stats`` gives a suppressed cell back, by one
subtraction from a total or by any sums and differences, whatever ``--by`` is asked, and the
worked example of docs/statistics.md comes out as computed by hand."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from fractions import Fraction
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.models import Alert, NationalityCount
from services.index.chart import series
from services.index.indicators import BY_ID
from services.index.stats import StatsError, Table, stats_table, write_export
from services.index.store import IndexStore
from services.index.suppression import TOTAL, Coord, cube, suppress
from tests.factories import make_alert

NOW_MS = 2_000_000_000_000
T, M = "Tabanovce", "Miratovac"


def crossing(section: str, breakdown: dict[str, int]) -> Alert:
    at = datetime.fromisoformat("2014-03-10T03:00:00+00:00")
    alert = make_alert("irregular-crossing", "rs", occurred_at=at, issued_at=at, expires_at=None)
    return alert.model_copy(update={
        "border_section": section, "direction_from": "mk", "direction_to": "rs",
        "head_count": sum(breakdown.values()), "asylum_requests": 0,
        "nationality_breakdown": [NationalityCount(nationality=n, count=c)
                                  for n, c in breakdown.items()],
    })  # fmt: skip


def secondary_example() -> list[Alert]:
    """docs/statistics.md, "Worked example: secondary suppression"."""
    return [crossing(T, {"sy": 12, "af": 2, "iq": 5}), crossing(M, {"sy": 7, "af": 6, "iq": 4})]


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    s = IndexStore.open(tmp_path / "index.sqlite3")
    s.apply_batch(secondary_example(), {("t", 0): 2}, now_ms=NOW_MS)
    return s


def rows(table: Table) -> dict[tuple[str, ...], int | None]:
    return {c.dims: c.value for c in table.cells}


def persons(store: IndexStore, *by: str, min_cell: int = 3) -> dict[tuple[str, ...], int | None]:
    return rows(stats_table(store, "irregular-crossing-persons", by=list(by), min_cell=min_cell))


def test_the_worked_example_by_hand(store: IndexStore) -> None:
    # Primary alone would publish af at Tabanovce as "·" and give it back as 8 - 6.
    assert persons(store, "nationality", "border_section") == {
        ("af", M): None, ("af", T): None,  # af/T: 2, primary; af/M: 6, so that 8 - 6 fails
        ("iq", M): None, ("iq", T): None,  # the smallest left in the rows of T and M
        ("sy", M): 7, ("sy", T): 12,
    }  # fmt: skip
    assert persons(store, "nationality") == {("af",): 8, ("iq",): 9, ("sy",): 19}
    assert persons(store, "border_section") == {(M,): 17, (T,): 19}
    # The order of --by changes the columns, not what is hidden.
    assert persons(store, "border_section", "nationality") == {
        (s, n): v for (n, s), v in persons(store, "nationality", "border_section").items()
    }
    # Threshold 1 hides nothing; the published values are the true ones.
    truth = persons(store, "nationality", "border_section", min_cell=1)
    assert truth == {("af", M): 6, ("af", T): 2, ("iq", M): 4, ("iq", T): 5,
                     ("sy", M): 7, ("sy", T): 12}  # fmt: skip
    events = stats_table(store, "irregular-crossing-events", min_cell=3)
    assert [c.value for c in events.cells] == [None, None]  # one event each: primary


def test_every_export_marks_secondary_cells_as_primary_ones(
    store: IndexStore, tmp_path: Path
) -> None:
    write_export(store, tmp_path / "s.csv", "sdmx-csv", min_cell=3)
    with (tmp_path / "s.csv").open(encoding="utf-8", newline="") as f:
        sdmx = {(r["NATIONALITY"], r["BORDER_SECTION"]): (r["OBS_VALUE"], r["OBS_STATUS"])
                for r in csv.DictReader(f) if "CROSSING_PERSONS" in r["DATAFLOW"]}  # fmt: skip
    assert sdmx == {("af", M): ("", "C"), ("af", T): ("", "C"), ("iq", M): ("", "C"),
                    ("iq", T): ("", "C"), ("sy", M): ("7", "A"),
                    ("sy", T): ("12", "A")}  # fmt: skip

    write_export(store, tmp_path / "s.plain.csv", "csv", min_cell=3)
    with (tmp_path / "s.plain.csv").open(encoding="utf-8", newline="") as f:
        plain = {(r["nationality"], r["border_section"]): (r["value"], r["status"])
                 for r in csv.DictReader(f)
                 if r["indicator"] == "irregular-crossing-persons"}  # fmt: skip
    assert plain[("af", M)] == ("", "suppressed")
    assert plain[("iq", T)] == ("", "suppressed")
    assert plain[("sy", T)] == ("12", "")

    write_export(store, tmp_path / "s.json", "json", min_cell=3)
    data = json.loads((tmp_path / "s.json").read_text("utf-8"))
    (ind,) = [i for i in data["indicators"] if i["id"] == "irregular-crossing-persons"]
    by_cell = {(o["nationality"], o["border_section"]): (o["value"], o["suppressed"])
               for o in ind["observations"]}  # fmt: skip
    assert by_cell[("af", M)] == (None, True)
    assert by_cell[("iq", M)] == (None, True)
    assert by_cell[("sy", M)] == (7, False)


def test_a_chart_draws_secondary_cells_as_gaps(store: IndexStore) -> None:
    table = stats_table(store, "irregular-crossing-persons", by=["nationality"], min_cell=9)
    months, lines = series(table)
    # At 9: af (8) is primary; iq (9) alone would then give it back from the total 36.
    assert months == ["2014-03"]
    assert math.isnan(lines["af"][0])
    assert math.isnan(lines["iq"][0])
    assert lines["sy"] == [19.0]


def test_a_dimension_named_twice_is_refused(store: IndexStore) -> None:
    with pytest.raises(StatsError, match="twice"):
        persons(store, "nationality", "nationality")


# -- the rule, on any table ----------------------------------------------------------------------


def _leaves(k: int) -> st.SearchStrategy[dict[tuple[str, ...], int]]:
    coord = st.tuples(*(st.sampled_from("abcd") for _ in range(k)))
    return st.dictionaries(coord, st.integers(1, 12), max_size=24)


tables = st.integers(1, 3).flatmap(_leaves)


def groups(cells: Mapping[Coord, int]) -> dict[Coord, dict[int, list[Coord]]]:
    """For each total, by dimension: the cells it adds up along that dimension."""
    out: dict[Coord, dict[int, list[Coord]]] = {}
    for coord in cells:
        for j, x in enumerate(coord):
            if x is not TOTAL:
                total = (*coord[:j], TOTAL, *coord[j + 1 :])
                out.setdefault(total, {}).setdefault(j, []).append(coord)
    return out


def computable(cells: Mapping[Coord, int], hidden: frozenset[Coord]) -> list[Coord]:
    """Suppressed cells that some sums and differences of published cells give exactly:
    Gaussian elimination in rational arithmetic, written apart from the product's."""
    leaves = sorted(c for c in cells if TOTAL not in c)

    def vector(cell: Coord) -> dict[int, Fraction]:
        return {i: Fraction(1) for i, leaf in enumerate(leaves)
                if all(x is TOTAL or x == y for x, y in zip(cell, leaf, strict=True))}  # fmt: skip

    basis: dict[int, dict[int, Fraction]] = {}

    def reduce(v: dict[int, Fraction]) -> dict[int, Fraction]:
        for pivot in sorted(basis):
            if f := v.get(pivot):
                b = basis[pivot]
                zero = Fraction(0)
                v = {i: x for i in v.keys() | b.keys()
                     if (x := v.get(i, zero) - f * b.get(i, zero))}  # fmt: skip
        return v

    for cell in cells:
        if cell not in hidden and (r := reduce(vector(cell))):
            pivot = min(r)
            basis[pivot] = {i: x / r[pivot] for i, x in r.items()}
    return [h for h in hidden if not reduce(vector(h))]


def recoverable(cells: dict[Coord, int], hidden: frozenset[Coord]) -> Iterator[Coord]:
    """Suppressed cells equal to a published total minus the published cells of its group, or
    a suppressed total equal to the sum of its published group."""
    for total, by_dim in groups(cells).items():
        for parts in by_dim.values():
            members = [total, *parts]
            gone = [c for c in members if c in hidden]
            if len(gone) == 1:
                yield gone[0]


@settings(max_examples=400, deadline=None)
@given(tables, st.integers(1, 6))
def test_no_suppressed_cell_is_a_total_minus_the_published_cells_of_its_group(
    leaves: dict[tuple[str, ...], int], min_cell: int
) -> None:
    cells = cube(leaves)
    hidden = suppress(cells, min_cell=min_cell)
    assert list(recoverable(cells, hidden)) == []
    assert computable(cells, hidden) == []
    assert {c for c, v in cells.items() if v < min_cell} <= hidden <= set(cells)
    # Deterministic: the same table given in another order hides the same cells.
    assert suppress(dict(reversed(list(cells.items()))), min_cell=min_cell) == hidden


def test_the_checks_find_what_primary_suppression_alone_leaves_open() -> None:
    leaves = {("rs", "sy", T): 12, ("rs", "af", T): 2, ("rs", "iq", T): 5,
              ("rs", "sy", M): 7, ("rs", "af", M): 6, ("rs", "iq", M): 4}  # fmt: skip
    cells = cube(leaves)
    primary = frozenset(c for c, v in cells.items() if v < 3)
    assert primary == {("rs", "af", T), (TOTAL, "af", T)}
    assert set(recoverable(cells, primary)) == primary  # 8 - 6, and 19 - 12 - 5
    assert set(computable(cells, primary)) == primary
    hidden = suppress(cells, min_cell=3)
    assert {c for c in hidden if TOTAL not in c} == {
        ("rs", n, s) for n in ("af", "iq") for s in (T, M)
    }


def test_several_groups_together_cannot_give_a_cell_back() -> None:
    """No group holds a lone suppressed cell, yet rs = 5 - 3 (its sy and af are all of those
    nationalities): one subtraction per group is not enough of a rule."""
    cells = cube({("rs", "af"): 1, ("rs", "iq"): 1, ("mk", "sy"): 1, ("al", "sy"): 2})
    alone = frozenset(c for c in cells if c not in {(TOTAL, TOTAL), (TOTAL, "sy")})
    assert list(recoverable(cells, alone)) == []
    assert computable(cells, alone) == [("rs", TOTAL)]
    hidden = suppress(cells, min_cell=3)
    assert set(cells) - hidden == {(TOTAL, TOTAL)}  # sy (3) would give rs away: suppressed
    assert computable(cells, hidden) == []


class _Facts:
    """A store holding facts only, as the index writes them: one row per alert."""

    def __init__(self, rows: list[tuple[str, tuple[str, ...], int]]) -> None:
        self.rows = rows

    def facts(
        self, indicator: str, *, first_month: str | None = None, last_month: str | None = None
    ) -> Iterator[tuple[str, tuple[str, ...], int]]:
        return iter(self.rows)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["2014-01", "2014-02"]),
                  st.tuples(*(st.sampled_from(["rs", "mk", "al"]) for _ in range(2)),
                            st.sampled_from(["requested", "accepted"])),
                  st.integers(1, 9)),
        max_size=30,
    ),
    st.integers(2, 6),
)  # fmt: skip
def test_no_by_combination_gives_a_suppressed_cell_back_from_another(
    facts: list[tuple[str, tuple[str, ...], int]], min_cell: int
) -> None:
    """Through `stats_table` as `bus stats show --by …` calls it: every pair of a table and a
    coarser one (the same `--by` less one dimension) is checked for recovery by subtraction."""
    ind = BY_ID["readmission-persons"]
    store = _Facts(facts)
    shown = {
        by: stats_table(store, ind.id, by=list(by), min_cell=min_cell)  # type: ignore[arg-type]
        for n in range(1, len(ind.dimensions) + 1)
        for by in combinations(ind.dimensions, n)
    }
    for by, table in shown.items():
        for j, d in enumerate(by):
            coarser = by[:j] + by[j + 1 :]
            group: dict[tuple[str, tuple[str, ...]], list[int | None]] = {}
            for c in table.cells:
                group.setdefault((c.month, c.dims[:j] + c.dims[j + 1 :]), []).append(c.value)
            for (month, rest), values in group.items():
                if coarser:
                    (total,) = [c.value for c in shown[coarser].cells
                                if (c.month, c.dims) == (month, rest)]  # fmt: skip
                else:  # the month's total: published as soon as one breakdown is whole
                    total = next(
                        (sum(c.value or 0 for c in t.cells if c.month == month)
                         for t in (shown[(e,)] for e in ind.dimensions)
                         if all(c.value is not None for c in t.cells if c.month == month)),
                        None,
                    )  # fmt: skip
                gone = values.count(None) + (total is None)
                assert gone != 1, f"{d} in {by}, {month} {rest}: {values} of {total}"


def test_the_cube_sums_every_margin() -> None:
    cells = cube({("rs", "sy"): 12, ("rs", "af"): 2, ("mk", "sy"): 7})
    assert cells[(TOTAL, TOTAL)] == 21
    assert cells[("rs", TOTAL)] == 14
    assert cells[(TOTAL, "sy")] == 19
    assert len(cells) == 3 + 2 + 2 + 1
