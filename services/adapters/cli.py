"""``bus adapter``: run a country's adapter on a drop folder and/or an HTTP endpoint.

bus adapter countries                                  # the countries with a mapping
bus adapter check rs examples/feeds/rs/*.csv           # map a file, publish nothing
bus adapter run rs --watch /srv/drop/rs                # publish files dropped there
bus adapter run rs --watch /srv/drop/rs --once         # … those there now, then exit
bus adapter run rs --http 0.0.0.0:8080                 # POST /v1/rs/alerts

Publishing as country ``cc`` signs with ``BUS_KEYS_DIR/<cc>.key``. ``BUS_IDENTITY_KEY`` must be
set (``--dev-identity-key`` uses a public key, for demos only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console

from bus.errors import BusError
from bus.logs import configure_logging, get_logger
from bus.ops.settings import OpsSettings
from bus.settings import BusSettings
from services.adapters.adapter import Adapter
from services.adapters.dropfolder import DropFolder
from services.adapters.errors import AdapterError, FeedRejected, RecordRejected, unexpected_reason
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import MappingContext, available_countries, load_mapping
from services.adapters.settings import AdapterSettings

app = typer.Typer(
    name="adapter",
    help="National adapters: a country's own files and HTTP calls in, signed alerts out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

DEV_KEY_HELP = "Use the public development identity key (demos only: tokens are not secret)."


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code=1)


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise AdapterError(f"--http expects HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host or "127.0.0.1", int(port)


@app.command("countries")
def countries() -> None:
    """List the countries that have a mapping, with their native format and language."""
    for cc in available_countries():
        mapping = load_mapping(cc)
        suffixes = "/".join(mapping.feed.suffixes)
        out.print(
            f"{cc}  {suffixes:<14} {mapping.conventions.language:<3} {mapping.description}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("check")
def check(
    cc: str = typer.Argument(..., help="Country code, e.g. rs."),
    files: list[Path] = typer.Argument(..., help="Native files to map."),
    show: bool = typer.Option(False, "--show", help="Print each alert as a JSON line."),
    dev_identity_key: bool = typer.Option(False, "--dev-identity-key", help=DEV_KEY_HELP),
) -> None:
    """Map native files as the adapter would, publishing nothing; report every rejection."""
    try:
        mapping = load_mapping(cc)
        config = AdapterSettings()
        identity = IdentityHasher.from_settings(config, allow_dev_key=dev_identity_key)
    except BusError as exc:
        raise _fail(exc) from None
    from services.adapters.feeds import Limits

    context = MappingContext(cc, mapping.conventions.language, identity)
    limits = Limits(config.max_field_chars)
    rejected = 0
    for path in files:
        types: Counter[str] = Counter()
        try:
            records = mapping.feed.parse(path.read_bytes(), limits)
        except FeedRejected as exc:
            err.print(f"{path}: the whole file is rejected: {exc}", highlight=False, soft_wrap=True)
            rejected += 1
            continue
        except Exception as exc:  # as the adapter would: the file is set aside, nothing stops
            err.print(f"{path}: the whole file is rejected: {unexpected_reason(exc)}",
                      highlight=False, soft_wrap=True)  # fmt: skip
            rejected += 1
            continue
        for record in records:
            try:
                alert = mapping.map(record, context)
            except RecordRejected as exc:
                rejected += 1
                err.print(f"{path} {record.position}: {exc}", highlight=False, soft_wrap=True)
                continue
            types[alert.alert_type] += 1
            if show:
                sys.stdout.write(
                    json.dumps({"alert_type": alert.alert_type, **alert.model_dump(mode="json")},
                               ensure_ascii=False) + "\n"
                )  # fmt: skip
        summary = ", ".join(f"{n} {t}" for t, n in sorted(types.items())) or "no alerts"
        err.print(f"{path}: {len(records)} records: {summary}", highlight=False, soft_wrap=True)
    if rejected:
        raise typer.Exit(code=2)


@app.command("run")
def run(
    cc: str = typer.Argument(..., help="Country code to publish as, e.g. rs."),
    watch: Path | None = typer.Option(None, "--watch", help="Drop folder to ingest files from."),
    http: str | None = typer.Option(
        None, "--http", help="Serve POST /v1/<cc>/alerts on HOST:PORT."
    ),
    once: bool = typer.Option(False, "--once", help="With --watch: ingest what is there, exit."),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Where the journal is kept (default: <watch>/.state)."
    ),
    dev_identity_key: bool = typer.Option(False, "--dev-identity-key", help=DEV_KEY_HELP),
    metrics_port: int | None = typer.Option(
        None,
        help="Serve /metrics, /healthz, /readyz here (default BUS_ADAPTER_METRICS_PORT; 0: none; "
        "never with --once).",
        min=0,
        max=65535,
    ),
) -> None:
    """Run the adapter of country CC until interrupted (with --once: until the folder is done)."""
    settings = BusSettings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        if watch is None and http is None:
            raise AdapterError("give --watch DIR, --http HOST:PORT, or both")
        if once and (watch is None or http is not None):
            raise AdapterError("--once goes with --watch alone")
        config = AdapterSettings()
        mapping = load_mapping(cc)
        identity = IdentityHasher.from_settings(config, allow_dev_key=dev_identity_key)
        address = _parse_address(http) if http else None
        ops = OpsSettings()
        endpoint = (
            ops.metrics_host,
            ops.adapter_metrics_port if metrics_port is None else metrics_port,
            metrics_port is None and "adapter_metrics_port" not in ops.model_fields_set,
        )
        if address and not config.http_tokens.get(cc):
            raise AdapterError(
                f"BUS_ADAPTER_HTTP_TOKENS has no token for {cc!r}; set it as JSON, e.g. "
                f'{{"{cc}": "<a long random token>"}}'
            )
        asyncio.run(
            _serve(
                settings, config, mapping.cc, identity, watch, address, once, state_dir, endpoint
            )
        )
    except BusError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None


async def _serve(
    settings: BusSettings,
    config: AdapterSettings,
    cc: str,
    identity: IdentityHasher,
    watch: Path | None,
    address: tuple[str, int] | None,
    once: bool,
    state_dir: Path | None,
    endpoint: tuple[str, int, bool],
) -> None:
    if config.identity_key is None:
        get_logger("adapter", origin=cc).warning(
            "development_identity_key", note="identity tokens are not secret; demo use only"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Adapter(settings, load_mapping(cc), identity=identity, config=config) as adapter:
        tasks = []
        if watch is not None:
            folder = DropFolder(adapter, watch, state_dir=state_dir)
            async with folder:
                if once:
                    for outcome in await folder.scan_once():
                        err.print(
                            f"{outcome.name}: {outcome.outcome}, {outcome.published} published, "
                            f"{outcome.quarantined} quarantined, {outcome.skipped} skipped",
                            highlight=False,
                            soft_wrap=True,
                        )
                    return
                async with _ops(adapter, endpoint):
                    tasks.append(asyncio.create_task(folder.run(stop)))
                    await _with_http(adapter, config, address, stop, tasks)
        else:
            async with _ops(adapter, endpoint):
                await _with_http(adapter, config, address, stop, tasks)


def _ops(
    adapter: Adapter, endpoint: tuple[str, int, bool]
) -> contextlib.AbstractAsyncContextManager[object]:
    from bus.ops.server import ops_endpoint

    host, port, default = endpoint
    return ops_endpoint(adapter.metrics, host=host, port=port, default=default,
                        setting="BUS_ADAPTER_METRICS_PORT (or --metrics-port)")  # fmt: skip


async def _with_http(
    adapter: Adapter,
    config: AdapterSettings,
    address: tuple[str, int] | None,
    stop: asyncio.Event,
    tasks: list[asyncio.Task[None]],
) -> None:
    if address is not None:
        import uvicorn

        from services.adapters.http import create_app

        app_ = create_app({adapter.cc: adapter}, config.http_tokens)
        server = uvicorn.Server(
            uvicorn.Config(app_, host=address[0], port=address[1], log_config=None, lifespan="off")
        )

        async def serve() -> None:
            await server.serve()
            stop.set()

        async def stopper() -> None:
            await stop.wait()
            server.should_exit = True

        tasks += [asyncio.create_task(serve()), asyncio.create_task(stopper())]
    await asyncio.gather(*tasks)
