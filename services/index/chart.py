"""Charts of an indicator per month, PNG and SVG, with matplotlib (no display needed).

    draw(store, "irregular-crossing-events", Path("charts"))   # one line per reporting country

Suppressed cells (primary and secondary, the same as in every table) are drawn as gaps, never as
their value, and the chart says so.
"""

from __future__ import annotations

from pathlib import Path

from services.index.stats import StatsError, Table, indicator, stats_table
from services.index.store import IndexStore


def series(table: Table) -> tuple[list[str], dict[str, list[float]]]:
    """The months and, per value of the table's one dimension, the values drawn: NaN (a gap)
    where the cell is suppressed, 0 where there is no cell."""
    months = sorted({c.month for c in table.cells})
    by_name: dict[str, dict[str, float]] = {}
    for cell in table.cells:
        by_name.setdefault(cell.dims[0], {})[cell.month] = (
            float("nan") if cell.value is None else float(cell.value)
        )
    return months, {
        name: [values.get(m, 0.0) for m in months] for name, values in sorted(by_name.items())
    }


def draw(
    store: IndexStore, indicator_id: str, out_dir: Path, *, by: str | None = None, min_cell: int
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ind = indicator(indicator_id)
    series_dim = by or ind.dimensions[0]
    table = stats_table(store, indicator_id, by=[series_dim], min_cell=min_cell)
    months, lines = series(table)
    if not months:
        raise StatsError(f"{indicator_id} has no observations yet: nothing to draw")
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, values in lines.items():
        ax.plot(months, values, marker="o", label=name)
    ax.set_title(f"{ind.title}, by {series_dim.replace('_', ' ')}")
    ax.set_ylabel(ind.unit)
    ax.set_xlabel(
        f"month of occurrence (UTC); gaps: suppressed (fewer than {min_cell}, "
        "or one that would give such a cell away)"
    )
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize="small", ncols=2)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{indicator_id}.{ext}" for ext in ("png", "svg")]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
