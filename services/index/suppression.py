"""Primary and secondary (complementary) cell suppression over every margin of a table.

    cells = cube({("rs", "sy"): 12, ("rs", "af"): 2, ("mk", "sy"): 7})
    hidden = suppress(cells, min_cell=3)       # coordinates whose value is not published

``bus stats`` publishes, for one indicator and month, any margin of its dimensions (``--by`` any
of them, the chart by one, the export by all), and the sum of any margin is the month's total.
All of them together form one linked table, the *cube*: every leaf (one value per dimension)
and every sum of leaves over any set of dimensions, written with ``TOTAL`` (None) in the
coordinates summed over. Suppressing cube cells once, and cutting every output from the same
protected cube, keeps the outputs consistent: what one ``--by`` hides, no other ``--by`` shows.

Primary: a cell above zero and below ``min_cell``. Secondary: the other cells are taken from
the largest to the smallest, and each is published unless publishing it would let a reader
compute a primary cell from published ones, by one subtraction from a total or by any sums and
differences of several (Gaussian-elimination secondary suppression, as Statistics Norway does
it). In the end no suppressed cell, primary or secondary, is a linear combination of published
cells. Zero cells are never listed, so readers know them: they protect nothing. The rule and a
worked example are in ``docs/statistics.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from heapq import heapify, heappop, heappush
from itertools import product
from random import Random

#: In a cube coordinate: summed over this dimension.
TOTAL = None
Coord = tuple[str | None, ...]


def cube(leaves: Mapping[tuple[str, ...], int]) -> dict[Coord, int]:
    """Every non-zero sum of ``leaves`` over every set of dimensions, leaves and total included."""
    out: dict[Coord, int] = {}
    for coord, value in leaves.items():
        if value == 0:
            continue
        for key in _sums(coord):
            out[key] = out.get(key, 0) + value
    return out


def _sums(leaf: Coord) -> Iterator[Coord]:
    """The cells ``leaf`` adds to: itself, and its sums over every set of dimensions."""
    for summed in product((False, True), repeat=len(leaf)):
        yield tuple(TOTAL if s else x for s, x in zip(summed, leaf, strict=True))


def _order(coord: Coord) -> tuple[tuple[bool, str], ...]:
    return tuple((x is TOTAL, x or "") for x in coord)


def suppress(cells: Mapping[Coord, int], *, min_cell: int) -> frozenset[Coord]:
    """The coordinates of ``cells`` (a :func:`cube`) to suppress: primary, then secondary."""
    primary = {c for c, v in cells.items() if 0 < v < min_cell}
    if not primary:
        return frozenset()
    return frozenset(_secondary(cells, primary))


# -- no combination of published cells gives a suppressed one ------------------------------------

Vector = dict[int, int]
#: The field the elimination works in: integers modulo the Mersenne prime 2**61 - 1.
PRIME = (1 << 61) - 1


def _secondary(cells: Mapping[Coord, int], primary: set[Coord]) -> set[Coord]:
    """``primary`` and the cells to suppress with them, so that no suppressed cell is a linear
    combination of published ones.

    Each cell is the sum of its leaves, a vector over them. The other cells are taken largest
    first (ties: by coordinates); one is suppressed instead of published when publishing it
    would bring a primary cell into the span of the published ones (Langsrud 2024, "Secondary
    cell suppression by Gaussian elimination"). A cell suppressed so is safe too: were it a
    combination of the published cells in the end, so would be the primary cell it was
    suppressed for. So no suppressed cell is the total of its group less the other cells.

    Exact rational arithmetic is slow in Python, so the elimination runs modulo the prime
    2**61 - 1, and "parallel" is decided by a scale-free fingerprint (two pseudo-random linear
    forms, divided). A fingerprint collision only suppresses one cell more; the modular
    elimination differs from the rational one only where the prime divides a determinant of
    the table, a chance of the order of 2**-61. The tests check the result in exact arithmetic.
    """
    leaves = sorted((c for c in cells if TOTAL not in c), key=_order)
    cover: dict[Coord, list[int]] = {}
    for i, leaf in enumerate(leaves):
        for key in _sums(leaf):
            cover.setdefault(key, []).append(i)
    forms = _Forms(len(leaves))
    # The residue of each primary cell once the published ones are eliminated (zero at every
    # pivot of the basis): it is recoverable once its residue is zero, which publishing a cell
    # whose residue is parallel to it would do. Cells that add up the same leaves are one
    # vector, one residue (a slice with one value in a dimension repeats in its margins).
    unique = {frozenset(cover[h]): h for h in sorted(primary, key=_order)}
    residue = {h: dict.fromkeys(cover[h], 1) for h in unique.values()}
    prints = {h: forms.of(r) for h, r in residue.items()}
    seen = Counter(_direction(fp) for fp in prints.values())
    holding: dict[int, set[Coord]] = {}
    for h, r in residue.items():
        for i in r:
            holding.setdefault(i, set()).add(h)
    basis: dict[int, tuple[Vector, tuple[int, int]]] = {}  # by pivot, the smallest index
    out = set(primary)
    same: dict[frozenset[int], list[Coord]] = {}
    for c in sorted((c for c in cells if c not in primary), key=_order):
        same.setdefault(frozenset(cover[c]), []).append(c)
    # One decision for the cells that are one vector: the same count, in several margins.
    for vector, alike in sorted(same.items(), key=lambda kv: (-cells[kv[1][0]], _order(kv[1][0]))):
        r = _reduce(dict.fromkeys(vector, 1), basis)
        if not r:
            continue  # a combination of published cells already: publishing it tells nothing
        fp = forms.of(r)
        if _direction(fp) in seen:
            out.update(alike)
            continue
        pivot = min(r)
        inverse = pow(r[pivot], -1, PRIME)
        r = {i: v * inverse % PRIME for i, v in r.items()}
        fp = (fp[0] * inverse % PRIME, fp[1] * inverse % PRIME)
        basis[pivot] = (r, fp)
        for h in holding.pop(pivot, set()):
            rh, (a, b) = residue[h], prints[h]
            f = rh[pivot]
            _forget(seen, _direction((a, b)))
            new = _minus(rh, f, r)
            for i in new.keys() - rh.keys():
                holding.setdefault(i, set()).add(h)
            for i in rh.keys() - new.keys() - {pivot}:
                holding[i].discard(h)
            residue[h] = new
            prints[h] = ((a - f * fp[0]) % PRIME, (b - f * fp[1]) % PRIME)
            seen[_direction(prints[h])] += 1
    return out


def _forget(seen: Counter[int], key: int) -> None:
    seen[key] -= 1
    if not seen[key]:
        del seen[key]


class _Forms:
    """Two fixed pseudo-random linear forms over the leaves (the same on every run)."""

    def __init__(self, n: int) -> None:
        draw = Random(n)
        self.w = [draw.randrange(1, PRIME) for _ in range(n)]
        self.u = [draw.randrange(1, PRIME) for _ in range(n)]

    def of(self, v: Vector) -> tuple[int, int]:
        return (sum(self.w[i] * x for i, x in v.items()) % PRIME,
                sum(self.u[i] * x for i, x in v.items()) % PRIME)  # fmt: skip


def _direction(fp: tuple[int, int]) -> int:
    """The same for parallel vectors (their forms have the same ratio); -1 when u is 0."""
    a, b = fp
    return a * pow(b, -1, PRIME) % PRIME if b else -1


def _reduce(v: Vector, basis: Mapping[int, tuple[Vector, tuple[int, int]]]) -> Vector:
    """``v`` less the basis vectors that make it zero at their pivots, smallest pivot first
    (a vector has nothing below its pivot, so each step leaves the earlier ones zero)."""
    todo = [i for i in v if i in basis]
    heapify(todo)
    while todo:
        pivot = heappop(todo)
        if f := v.get(pivot):
            before = v
            v = _minus(v, f, basis[pivot][0])
            for i in v.keys() - before.keys():
                if i in basis:
                    heappush(todo, i)
    return v


def _minus(v: Vector, f: int, b: Vector) -> Vector:
    """``v - f * b``, without the zeros."""
    out = dict(v)
    for i, x in b.items():
        y = (out.get(i, 0) - f * x) % PRIME
        if y:
            out[i] = y
        else:
            out.pop(i, None)
    return out
