"""``bus index``, ``bus lookup`` and ``bus stats``: the joint index and the statistics.

bus index run                         # fold ingress, answer lookups (Kafka, HTTP) until Ctrl-C
bus index rebuild                     # throw the database away and fold ingress again from Kafka
bus lookup --as europol it1.…         # one JSON line per token, through the running index
bus lookup --as europol --family-name Петровић --given-names Марко \\
           --date-of-birth 1984-03-15 --nationality rs --dev-identity-key
bus stats list | show INDICATOR | export --format sdmx-csv --out F | chart INDICATOR --out DIR
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import date
from pathlib import Path

import typer
from rich.console import Console

from bus.errors import BusError
from bus.logs import configure_logging
from bus.settings import BusSettings
from services.index.settings import IndexSettings
from services.index.store import IndexStore

index_app = typer.Typer(help="The joint index: hit/no-hit on identity tokens, and statistics.")
stats_app = typer.Typer(help="Statistics under one methodology (docs/statistics.md).")
err = Console(stderr=True, soft_wrap=True)
#: The language whose transliteration a name is read in, by nationality, when --language is unset.
_LANGUAGES = {"rs": "sr", "me": "sr", "ba": "sr", "mk": "mk", "gr": "el", "al": "sq", "xk": "sq"}
DEV_KEY_HELP = "Use the public development identity key (demos only), not BUS_IDENTITY_KEY."


def _settings() -> tuple[BusSettings, IndexSettings]:
    settings = BusSettings()
    configure_logging(settings.log_level, settings.log_format)
    return settings, IndexSettings()


@index_app.command("run")
def index_run(
    http: bool = typer.Option(True, help="Serve POST /v1/lookup (BUS_LOOKUP_HTTP_PORT)."),
    metrics_port: int | None = typer.Option(
        None,
        help="Serve /metrics, /healthz, /readyz here (default BUS_INDEX_METRICS_PORT; 0: none).",
        min=0,
        max=65535,
    ),
) -> None:
    """Fold verified ingress into the index and statistics; answer lookups; until Ctrl-C."""
    from bus.ops import OpsSettings, ops_endpoint
    from services.index.http import serve
    from services.index.service import IndexService

    settings, index_settings = _settings()
    ops = OpsSettings()
    port = ops.index_metrics_port if metrics_port is None else metrics_port

    async def go() -> None:
        service = IndexService(settings, index_settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        lookups = len(service.agreements.lookups)
        err.print(f"Index at {index_settings.database} on {settings.bootstrap_servers}, "
                  f"{lookups} lookup agreement(s). Ctrl-C stops it.")  # fmt: skip
        server = None
        if http and index_settings.lookup_http_port:
            server = asyncio.create_task(serve(
                service, index_settings.lookup_http_host, index_settings.lookup_http_port,
                index_settings.lookup_http_tokens,
            ))  # fmt: skip
        try:
            async with ops_endpoint(
                service.metrics, host=ops.metrics_host, port=port,
                setting="BUS_INDEX_METRICS_PORT (or --metrics-port)",
            ) as endpoint:  # fmt: skip
                if endpoint is not None:
                    err.print(f"Metrics at {endpoint.url}/metrics", highlight=False)
                await service.run()
        finally:
            if server is not None:
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
        err.print(f"Stopped: {service.records} record(s) read, {service.rejected} rejected, "
                  f"{service.lookups} lookup(s) answered")  # fmt: skip

    asyncio.run(go())


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Delete the index database and fold every ingress record in Kafka again, then stop."""
    from services.index.service import IndexService

    settings, index_settings = _settings()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_settings.database}{suffix}").unlink(missing_ok=True)

    async def go() -> None:
        service = IndexService(settings, index_settings)
        await service.catch_up()
        err.print(f"Rebuilt {index_settings.database}: {service.store.counts()}")

    asyncio.run(go())


def lookup(
    tokens: list[str] = typer.Argument(None, help="Identity tokens ('it1.' + 32 hex digits)."),
    requester: str = typer.Option(..., "--as", help="The partner id asking (its lookup topics)."),
    family_name: str | None = typer.Option(None, help="Compute a token: family name, any script."),
    given_names: str | None = typer.Option(None, help="… given names, any script."),
    date_of_birth: str | None = typer.Option(None, help="… date of birth, YYYY-MM-DD."),
    nationality: str | None = typer.Option(None, help="… nationality, ISO 3166-1 alpha-2."),
    language: str | None = typer.Option(
        None, help="Language of the names (default: by nationality)."
    ),
    dev_identity_key: bool = typer.Option(False, "--dev-identity-key", help=DEV_KEY_HELP),
    timeout_s: float = typer.Option(30.0, help="How long to wait for the answer."),
) -> None:
    """Ask the joint index whether persons were reported by another country (over Kafka)."""
    from services.index.client import lookup_over_kafka

    settings, _ = _settings()
    asked = list(tokens or [])
    person = (family_name, given_names, date_of_birth, nationality)
    if any(person):
        asked.append(_token(*person, language=language, dev_key=dev_identity_key))
    if not asked:
        raise BusError("Give identity tokens, or --family-name, --given-names, --date-of-birth "
                       "and --nationality to compute one")  # fmt: skip
    answer = asyncio.run(lookup_over_kafka(settings, requester, asked, timeout_s=timeout_s))
    for result in answer.results:
        sys.stdout.write(json.dumps(result.model_dump(mode="json"), ensure_ascii=False) + "\n")


def _token(
    family: str | None, given: str | None, born: str | None, nationality: str | None,
    *, language: str | None, dev_key: bool,
) -> str:  # fmt: skip
    from services.adapters import IdentityHasher
    from services.adapters.settings import AdapterSettings

    if not (family and given and born and nationality):
        raise BusError("A token needs all of --family-name, --given-names, --date-of-birth and "
                       "--nationality: a name alone would match too many people")  # fmt: skip
    try:
        birth = date.fromisoformat(born)
    except ValueError:
        raise BusError("--date-of-birth must be a date YYYY-MM-DD") from None
    hasher = IdentityHasher.from_settings(AdapterSettings(), allow_dev_key=dev_key)
    nat = nationality.lower()
    token = hasher.token(family, given, birth, nat, language=language or _LANGUAGES.get(nat, "en"))
    if token is None:
        raise BusError("No token can be made from these names (no letters left once folded)")
    return token


# -- statistics ----------------------------------------------------------------------------------


def _store() -> tuple[IndexStore, int]:
    _, index_settings = _settings()
    if not index_settings.database.exists():
        raise BusError(f"No index database at {index_settings.database}: run `bus index run` "
                       "(or `bus index rebuild`) first, or set BUS_DATA_DIR")  # fmt: skip
    return IndexStore.open(index_settings.database, readonly=True), index_settings.stats_min_cell


@stats_app.command("list")
def stats_list() -> None:
    """Every indicator id, one per line."""
    from services.index.indicators import INDICATORS

    for ind in INDICATORS:
        sys.stdout.write(ind.id + "\n")


@stats_app.command("show")
def stats_show(
    indicator: str = typer.Argument(..., help="An indicator id (`bus stats list`)."),
    first: str | None = typer.Option(None, "--from", help="First month, YYYY-MM."),
    last: str | None = typer.Option(None, "--to", help="Last month, YYYY-MM."),
    by: list[str] = typer.Option(None, "--by", help="Dimensions to break down by (repeat)."),
) -> None:
    """Print one indicator as a table, by month and dimensions; small cells suppressed."""
    from rich.table import Table as RichTable

    from services.index.stats import stats_table

    store, min_cell = _store()
    table = stats_table(store, indicator, first_month=first, last_month=last, by=by or None,
                        min_cell=min_cell)  # fmt: skip
    out = RichTable(title=f"{table.indicator.title} ({table.indicator.unit}); cells below "
                          f"{min_cell}, and cells that would give one away, suppressed "
                          "(·)")  # fmt: skip
    for column in ("month", *table.dimensions):
        out.add_column(column)
    out.add_column(table.indicator.unit, justify="right")
    for cell in table.cells:
        out.add_row(cell.month, *cell.dims, "·" if cell.value is None else str(cell.value))
    Console(soft_wrap=True).print(out)


@stats_app.command("export")
def stats_export(
    fmt: str = typer.Option(..., "--format", help="csv, json or sdmx-csv."),
    out: Path = typer.Option(..., "--out", help="The file to write."),
) -> None:
    """Write every indicator to one file (SDMX-CSV: Eurostat's tools read it)."""
    from services.index.stats import write_export

    store, min_cell = _store()
    cells = write_export(store, out, fmt, min_cell=min_cell)
    err.print(f"Wrote {cells} cell(s) of every indicator to {out} ({fmt})")


@stats_app.command("chart")
def stats_chart(
    indicator: str = typer.Argument(..., help="An indicator id (`bus stats list`)."),
    out: Path = typer.Option(..., "--out", help="Directory for <indicator>.png and .svg."),
    by: str | None = typer.Option(None, "--by", help="One series per value of this dimension."),
) -> None:
    """Draw an indicator per month as PNG and SVG (one series per reporting country by default)."""
    from services.index.chart import draw

    store, min_cell = _store()
    for path in draw(store, indicator, out, by=by, min_cell=min_cell):
        err.print(f"Wrote {path}")
