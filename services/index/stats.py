"""Statistics out of the store: tables by month and dimensions, small cells suppressed.

    table = stats_table(store, "irregular-crossing-persons", by=["nationality"], min_cell=3)
    write_export(store, Path("stats.csv"), "sdmx-csv", min_cell=3)

A cell is one month and one combination of the chosen dimensions; its value is the sum of the
facts in it. A cell whose value is above zero but below ``min_cell`` is suppressed in every output
(value None, status ``C`` for confidential in SDMX terms), so that a small count cannot point to a
person, and so is every cell that would give a suppressed one back by sums and differences of
published ones (``services/index/suppression.py``): each table is cut from one protected cube
per month, so no ``--by``, export or chart shows what another hides. The rules are in
``docs/statistics.md``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus.errors import BusError
from services.index.indicators import BY_ID, INDICATORS, Indicator
from services.index.store import IndexStore
from services.index.suppression import TOTAL, cube, suppress

FORMATS = ("csv", "json", "sdmx-csv")
#: SDMX: the value of a dimension that does not apply to an indicator.
NOT_APPLICABLE = "_Z"
AGENCY = "BALKANALERTBUS"


class StatsError(BusError):
    """An indicator, dimension, month or format asked for does not exist."""


@dataclass(frozen=True)
class Cell:
    month: str
    dims: tuple[str, ...]
    #: None when suppressed.
    value: int | None

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class Table:
    indicator: Indicator
    dimensions: tuple[str, ...]
    cells: tuple[Cell, ...]
    min_cell: int


def indicator(indicator_id: str) -> Indicator:
    try:
        return BY_ID[indicator_id]
    except KeyError:
        raise StatsError(
            f"Unknown indicator {indicator_id!r}; `bus stats list` prints the "
            f"{len(BY_ID)} indicators"
        ) from None


def _month(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit():
        raise StatsError(f"{what} must be a month YYYY-MM, got {value!r}")
    if not 1 <= int(value[5:]) <= 12:
        raise StatsError(f"{what} {value!r}: the month must be 01 to 12")
    return value


def stats_table(
    store: IndexStore,
    indicator_id: str,
    *,
    first_month: str | None = None,
    last_month: str | None = None,
    by: Sequence[str] | None = None,
    min_cell: int = 3,
) -> Table:
    """The cells of one indicator by month and ``by`` (default: all its dimensions)."""
    ind = indicator(indicator_id)
    dims = tuple(by) if by else ind.dimensions
    for d in dims:
        if d not in ind.dimensions:
            raise StatsError(
                f"{ind.id} has no dimension {d!r}; its dimensions: {', '.join(ind.dimensions)}"
            )
    if len(set(dims)) != len(dims):
        raise StatsError(f"--by names a dimension twice: {', '.join(dims)}")
    picks = [ind.dimensions.index(d) for d in dims]
    leaves: dict[str, dict[tuple[str, ...], int]] = {}
    for month, fact_dims, value in store.facts(
        ind.id, first_month=_month(first_month, "--from"), last_month=_month(last_month, "--to")
    ):
        month_leaves = leaves.setdefault(month, {})
        month_leaves[fact_dims] = month_leaves.get(fact_dims, 0) + value
    cells: list[Cell] = []
    for month, month_leaves in sorted(leaves.items()):
        # The whole cube is protected whatever `by` asks for, so every table agrees.
        values = cube(month_leaves)
        hidden = suppress(values, min_cell=min_cell)
        kept = [i in picks for i in range(len(ind.dimensions))]
        for coord, value in values.items():
            if all((x is not TOTAL) == k for x, k in zip(coord, kept, strict=True)):
                key = tuple(str(coord[i]) for i in picks)
                cells.append(Cell(month, key, None if coord in hidden else value))
    cells.sort(key=lambda c: (c.month, c.dims))
    return Table(ind, dims, tuple(cells), min_cell)


def all_tables(store: IndexStore, *, min_cell: int) -> list[Table]:
    return [stats_table(store, i.id, min_cell=min_cell) for i in INDICATORS]


def _all_dimensions() -> list[str]:
    seen: list[str] = []
    for ind in INDICATORS:
        seen += [d for d in ind.dimensions if d not in seen]
    return seen


def write_export(store: IndexStore, out: Path, fmt: str, *, min_cell: int) -> int:
    """Write every indicator to ``out`` as csv, json or sdmx-csv; return the cells written."""
    if fmt not in FORMATS:
        raise StatsError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    tables = all_tables(store, min_cell=min_cell)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        out.write_text(json.dumps(_json(tables, min_cell), ensure_ascii=False, indent=1) + "\n",
                       encoding="utf-8")  # fmt: skip
    else:
        with out.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            for row in _sdmx_rows(tables) if fmt == "sdmx-csv" else _csv_rows(tables):
                writer.writerow(row)
    return sum(len(t.cells) for t in tables)


def _json(tables: list[Table], min_cell: int) -> dict[str, Any]:
    return {
        "methodology": "docs/statistics.md",
        "min_cell": min_cell,
        "indicators": [
            {
                "id": t.indicator.id, "title": t.indicator.title, "unit": t.indicator.unit,
                "dimensions": list(t.dimensions),
                "observations": [
                    {"month": c.month, **dict(zip(t.dimensions, c.dims, strict=True)),
                     "value": c.value, "suppressed": c.suppressed}
                    for c in t.cells
                ],
            }
            for t in tables
        ],
    }  # fmt: skip


def _csv_rows(tables: list[Table]) -> list[list[str]]:
    dims = _all_dimensions()
    rows = [["indicator", "unit", "month", *dims, "value", "status"]]
    for t in tables:
        for c in t.cells:
            values = dict(zip(t.dimensions, c.dims, strict=True))
            rows.append([t.indicator.id, t.indicator.unit, c.month,
                         *(values.get(d, "") for d in dims),
                         "" if c.value is None else str(c.value),
                         "suppressed" if c.suppressed else ""])  # fmt: skip
    return rows


def _sdmx_rows(tables: list[Table]) -> list[list[str]]:
    """SDMX-CSV 1.0: DATAFLOW, the dimensions, TIME_PERIOD, OBS_VALUE, then attributes."""
    dims = _all_dimensions()
    rows = [["DATAFLOW", "FREQ", *(d.upper() for d in dims), "UNIT_MEASURE", "TIME_PERIOD",
             "OBS_VALUE", "OBS_STATUS"]]  # fmt: skip
    for t in tables:
        flow = f"{AGENCY}:{t.indicator.id.upper().replace('-', '_')}(1.0)"
        for c in t.cells:
            values = dict(zip(t.dimensions, c.dims, strict=True))
            rows.append([flow, "M", *(values.get(d, NOT_APPLICABLE) for d in dims),
                         t.indicator.unit.upper(), c.month,
                         "" if c.value is None else str(c.value),
                         "C" if c.suppressed else "A"])  # fmt: skip
    return rows
