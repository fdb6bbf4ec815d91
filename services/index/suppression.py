"""Primary and secondary (complementary) cell suppression over every margin of a table.

    cells = cube({("rs", "sy"): 12, ("rs", "af"): 2, ("mk", "sy"): 7})
    hidden = suppress(cells, min_cell=3)       # coordinates whose value is not published

``bus stats`` publishes, for one indicator and month, any margin of its dimensions (``--by`` any
of them, the chart by one, the export by all), and the sum of any margin is the month's total.
All of them together form one linked table, the *cube*: every leaf (one value per dimension)
and every sum of leaves over any set of dimensions, written with ``TOTAL`` (None) in the
coordinates summed over. Suppressing cube cells once, and cutting every output from the same
protected cube, keeps the outputs consistent: what one ``--by`` hides, no other ``--by`` shows.

Primary: a cell above zero and below ``min_cell``. Secondary: in every *group* (one total and
the cells it adds up along one dimension) that holds exactly one suppressed cell, the total
minus the other cells would give it back, so the smallest published non-zero cell of the group
is suppressed too (ties broken by its coordinates; the total when it has no other part), and
again until no group holds exactly one. Zero cells are never listed, so readers know them: they
cannot protect anything. The rule and a worked example are in ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import product

#: In a cube coordinate: summed over this dimension.
TOTAL = None
Coord = tuple[str | None, ...]


def cube(leaves: Mapping[tuple[str, ...], int]) -> dict[Coord, int]:
    """Every non-zero sum of ``leaves`` over every set of dimensions, leaves and total included."""
    out: dict[Coord, int] = {}
    for coord, value in leaves.items():
        if value == 0:
            continue
        for summed in product((False, True), repeat=len(coord)):
            key = tuple(TOTAL if s else x for s, x in zip(summed, coord, strict=True))
            out[key] = out.get(key, 0) + value
    return out


def _order(coord: Coord) -> tuple[tuple[bool, str], ...]:
    return tuple((x is TOTAL, x or "") for x in coord)


def groups(cells: Mapping[Coord, int]) -> dict[Coord, dict[int, list[Coord]]]:
    """For each total, by dimension: the non-zero cells it adds up along that dimension."""
    out: dict[Coord, dict[int, list[Coord]]] = {}
    for coord, value in cells.items():
        if value == 0:
            continue
        for j, x in enumerate(coord):
            if x is not TOTAL:
                total = (*coord[:j], TOTAL, *coord[j + 1 :])
                out.setdefault(total, {}).setdefault(j, []).append(coord)
    return out


def suppress(cells: Mapping[Coord, int], *, min_cell: int) -> frozenset[Coord]:
    """The coordinates of ``cells`` (a :func:`cube`) to suppress: primary, then secondary."""
    hidden = {c for c, v in cells.items() if 0 < v < min_cell}
    if not hidden:
        return frozenset()
    # Each group once, totals and their parts in a fixed order: the result is deterministic.
    work: list[tuple[Coord, list[Coord]]] = [
        (total, sorted(parts, key=lambda c: (cells[c], _order(c))))
        for total, by_dim in sorted(groups(cells).items(), key=lambda kv: _order(kv[0]))
        for _, parts in sorted(by_dim.items())
    ]
    changed = True
    while changed:
        changed = False
        for total, parts in work:
            if _count(hidden, total, parts) != 1:
                continue
            # Exactly one hidden: the total minus the others would give it back. Hide the
            # smallest other part; a lone part is its total (the same count seen in a coarser
            # table), so then the total goes.
            pick = next((p for p in parts if p not in hidden), total)
            hidden.add(pick)
            changed = True
    return frozenset(hidden)


def _count(hidden: set[Coord], total: Coord, parts: Iterable[Coord]) -> int:
    return (total in hidden) + sum(p in hidden for p in parts)
