"""``bus``: the one command line for everything an operator or a national system does.

bus kafka start                       # local single-node broker (no Docker needed)
bus kafka start --nodes 3             # local three-node cluster (RF 3, min ISR 2)
bus kafka start --secure              # … with TLS, SCRAM logins and ACLs; prints `export` lines
bus kafka start --secure --nodes 3    # a secure three-node cluster; prints `export` lines
bus access apply                      # users and ACLs on the broker follow the agreements file
bus access kit europol --out kit/     # what a partner needs to connect with any Kafka client
bus keys generate rs                  # keys/rs.key (0600) and keys/rs.pub
bus topics apply                      # ingress, inboxes, dlq, audit, schemas and lookup topics
bus publish --origin rs alert.json    # validate, sign, publish
bus tail ingress.rs.trafficking-arrest --from-beginning --max 5
bus status                            # every part of the bus: health and lag, exit 3 if unhealthy
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from bus.errors import BusError, OriginMismatch
from bus.logs import configure_logging
from bus.settings import BusSettings

T = TypeVar("T")

app = typer.Typer(
    name="bus",
    help="Balkan Alert Bus: publish, route and read typed alerts on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(help="Run a local Kafka broker or cluster (KRaft) without Docker.")
keys_app = typer.Typer(help="Ed25519 signing keys.")
schemas_app = typer.Typer(help="The Avro schemas (the contract with partners).")
topics_app = typer.Typer(help="Kafka topics of the bus.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(keys_app, name="keys")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
fanout_app = typer.Typer(help="The fan-out service: ingress to partner inboxes, exactly once.")
audit_app = typer.Typer(help="The hash-chained audit of every delivery decision.")
app.add_typer(fanout_app, name="fanout")
app.add_typer(audit_app, name="audit")
access_app = typer.Typer(help="Who may do what on the broker: principals, ACLs, onboarding kits.")
app.add_typer(access_app, name="access")


def _mount_adapters() -> None:
    # The adapters are a service of this distribution; the library never imports them otherwise.
    from services.adapters.cli import app as adapter_app

    app.add_typer(
        adapter_app, name="adapter", help="National adapters: native feeds in, alerts out."
    )


_mount_adapters()


def _mount_index() -> None:
    # The joint index and the statistics are a service too; mounted like the adapters.
    from services.index.cli import index_app, lookup, stats_app

    app.add_typer(index_app, name="index")
    app.add_typer(stats_app, name="stats")
    app.command("lookup")(lookup)


_mount_index()

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> BusSettings:
    settings = BusSettings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def _fail(exc: BaseException) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code=1)


# -- kafka ---------------------------------------------------------------------------------------


@kafka_app.command("start")
def kafka_start(
    secure: bool = typer.Option(
        False, "--secure", help="SASL_SSL logins, TLS and ACLs (also BUS_KAFKA_SECURE=true)."
    ),
    nodes: int = typer.Option(
        1,
        "--nodes",
        min=1,
        help="Nodes: 1 for one broker, 3 for a cluster (RF 3, min ISR 2) on consecutive ports "
        "from BUS_KAFKA_PORT. Again, it restarts a node that died.",
    ),
) -> None:
    """Fetch (once), format (once) and start the local broker; print its bootstrap address.

    With --secure, print instead the `export` lines that make this machine's CLI act as the
    broker's (or the cluster's) administrator: eval "$(bus kafka start --secure [--nodes 3])".
    """
    from bus.kafka.local import LocalKafka

    settings = _settings()
    if secure:
        settings = settings.model_copy(update={"kafka_secure": True})
    if nodes > 1:
        _cluster_start(settings, nodes)
        return
    broker = LocalKafka(settings)
    before = broker.status()
    if not before.running:
        mode = "secure " if settings.kafka_secure else ""
        err.print(f"Starting {mode}Apache Kafka {broker.version} (data in {broker.data_dir}) …")
    status = broker.start()
    note = "already running" if before.running else "started"
    err.print(f"Kafka {status.version} {note} (pid {status.pid}).")
    _print_started(settings, status.bootstrap_servers, status.client_config)


def _cluster_start(settings: BusSettings, nodes: int) -> None:
    from bus.kafka.cluster import LocalCluster

    cluster = LocalCluster(settings, nodes=nodes)
    down = [n.node_id for n in cluster.status().nodes if not n.running]
    if down:
        err.print(f"Starting Apache Kafka {cluster.version} node(s) {_ids(down)} of {nodes} "
                  f"(data in {cluster.data_dir}) …")  # fmt: skip
    status = cluster.start()
    for node in status.nodes:
        note = "started" if node.node_id in down else "already running"
        err.print(f"node {node.node_id}: {note} (pid {node.pid}) on {node.bootstrap_server}")
    _print_started(settings, status.bootstrap_servers, status.client_config)


def _print_started(settings: BusSettings, bootstrap: str, client_config: Path | None) -> None:
    """The last lines of ``bus kafka start``: the bootstrap address, or (secure) how to act as
    the administrator."""
    if client_config is None:
        out.print(bootstrap, highlight=False)
        return
    err.print(f"SASL_SSL on {bootstrap}; the administrator's credentials are in "
              f"{client_config} (mode 0600). To act as the administrator:")  # fmt: skip
    out.print(f"export BUS_CLIENT_CONFIG={client_config}", highlight=False)
    out.print(f"export BUS_CREDENTIALS_DIR={settings.credentials_dir}", highlight=False)


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker, or every node of the local cluster; the data stays."""
    from bus.kafka.cluster import LocalCluster, cluster_node_count
    from bus.kafka.local import LocalKafka

    settings = _settings()
    stopped = LocalKafka(settings).stop()
    nodes = cluster_node_count(settings.kafka_data_dir)
    if nodes is not None:
        stopped = LocalCluster(settings, nodes=nodes).stop() or stopped
    err.print("Kafka stopped." if stopped else "Kafka was not running.")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker (or each node of the cluster) runs, where, with which data."""
    from bus.kafka.cluster import cluster_node_count
    from bus.kafka.local import LocalKafka

    settings = _settings()
    status = LocalKafka(settings).status()
    nodes = cluster_node_count(settings.kafka_data_dir)
    if nodes is not None and not status.running:
        _cluster_status(settings, nodes)
        return
    state = f"running (pid {status.pid})" if status.running else "stopped"
    if status.secure:
        state += f", secure (administrator: {status.client_config})"
    out.print(f"kafka {status.version}: {state}", highlight=False)
    out.print(f"bootstrap: {status.bootstrap_servers}", highlight=False)
    out.print(f"data dir:  {status.data_dir}", highlight=False)
    if not status.running:
        raise typer.Exit(code=3)


def _cluster_status(settings: BusSettings, nodes: int) -> None:
    from bus.kafka.cluster import LocalCluster

    cluster = LocalCluster(settings, nodes=nodes)
    status = cluster.status()
    live = sum(node.running for node in status.nodes)
    state = f"cluster of {nodes} nodes, {live} running"
    if status.secure:
        state += f", secure (administrator: {status.client_config})"
    out.print(f"kafka {status.version}: {state}", highlight=False)
    for node in status.nodes:
        state = f"running (pid {node.pid})" if node.running else "stopped"
        out.print(f"node {node.node_id}: {state} on {node.bootstrap_server}", highlight=False)
    out.print(f"bootstrap: {status.bootstrap_servers}", highlight=False)
    out.print(f"data dir:  {status.data_dir}", highlight=False)
    if live < nodes:
        raise typer.Exit(code=3)


# -- keys ----------------------------------------------------------------------------------------


@keys_app.command("generate")
def keys_generate(
    key_id: str = typer.Argument(..., help="Country code or partner id, e.g. rs or hub."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
) -> None:
    """Write <id>.key (mode 0600) and <id>.pub into BUS_KEYS_DIR."""
    from bus.keys import generate_keypair

    settings = _settings()
    key_path, pub_path = generate_keypair(settings.keys_dir, key_id, overwrite=force)
    err.print(f"Wrote {key_path} (private, mode 0600) and {pub_path} (share it with partners).")


# -- schemas -------------------------------------------------------------------------------------


@schemas_app.command("check")
def schemas_check() -> None:
    """Load every schema and check each version against every earlier one (both directions)."""
    from bus.schemas import SchemaRegistry

    registry = SchemaRegistry.load(_settings().schemas_dir)
    problems = registry.compatibility_problems()
    for sv in registry:
        out.print(f"{sv.alert_type:<24} v{sv.version}  {sv.fingerprint_hex}", highlight=False)
    if problems:
        for problem in problems:
            err.print(f"[red]incompatible:[/] {problem}", highlight=False)
        raise typer.Exit(code=1)
    err.print(f"{len(list(registry))} schema version(s): all compatible.")


# -- topics --------------------------------------------------------------------------------------


@topics_app.command("apply")
def topics_apply() -> None:
    """Create, idempotently, every topic of the bus and publish the schemas to bus.schemas.

    Topics get the replication the cluster is configured for; with fewer brokers up than that,
    it waits for them (BUS_CONNECT_TIMEOUT_MS), then refuses rather than under-replicate.
    """
    from bus.admin import apply_topics

    created, total = _run(lambda: apply_topics(_settings()))
    for name in created:
        err.print(f"created {name}", highlight=False)
    err.print(f"{total} topic(s) in place, {len(created)} created.")


# -- publish and tail ----------------------------------------------------------------------------


@app.command("publish")
def publish(
    files: list[Path] = typer.Argument(..., help="JSON files: one alert or a list of alerts."),
    origin: str = typer.Option(..., "--origin", help="Country code to publish as (its key signs)."),
    alert_type: str | None = typer.Option(
        None, "--type", help="Alert type when the JSON has no 'alert_type' and the file name none."
    ),
) -> None:
    """Validate, sign and publish alerts as country ORIGIN; print where each landed."""
    from bus.publisher import Publisher, parse_alert

    settings = _settings()
    alerts = []
    for path in files:
        for index, data in enumerate(_read_alert_file(path)):
            kind = data.get("alert_type") or alert_type or path.stem
            try:
                alert = parse_alert(data, kind)
            except BusError as exc:
                raise BusError(f"{path} (alert {index}): {exc}") from exc
            if alert.origin != origin:
                raise OriginMismatch(
                    f"{path} (alert {index}): header.origin {alert.origin!r} is not {origin!r}; "
                    f"a country publishes only its own alerts (publish it with --origin "
                    f"{alert.origin} and that country's key)"
                )
            alerts.append(alert)

    async def go() -> None:
        async with Publisher(settings, origin=origin) as pub:
            for result in await pub.publish_many(alerts):
                out.print(
                    json.dumps({"alert_id": str(result.alert_id), "topic": result.topic,
                                "partition": result.partition, "offset": result.offset}),
                    highlight=False, soft_wrap=True,
                )  # fmt: skip

    _run(go)
    err.print(f"Published {len(alerts)} alert(s) as {origin}.")


def _read_alert_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BusError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BusError(f"{path}: not valid UTF-8 JSON: {exc}") from exc
    items = data if isinstance(data, list) else [data]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BusError(
                f"{path} (alert {index}): expected a JSON object, got {type(item).__name__}"
            )
    return items


@app.command("tail")
def tail(
    topic: str = typer.Argument(..., help="Topic to read, e.g. ingress.rs.trafficking-arrest."),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the oldest record."
    ),
    max_records: int | None = typer.Option(None, "--max", help="Stop after this many records."),
    idle_timeout_ms: int | None = typer.Option(
        None, "--idle-timeout-ms", help="Stop when nothing arrives for this long."
    ),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check signatures."),
) -> None:
    """Print decoded alerts as JSON lines (records that fail to decode or verify say why)."""
    from bus.tail import tail_topic

    def emit(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    _run(lambda: tail_topic(_settings(), topic, emit, from_beginning=from_beginning,
                            max_records=max_records, idle_timeout_ms=idle_timeout_ms,
                            verify=verify))  # fmt: skip


# -- fan-out and audit ---------------------------------------------------------------------------


@fanout_app.command("run")
def fanout_run(
    metrics_port: int | None = typer.Option(
        None,
        help="Serve /metrics, /healthz, /readyz here (default BUS_FANOUT_METRICS_PORT, 8490; "
        "another instance on the same machine takes the next free port up to 8499; 0: none).",
        min=0,
        max=65535,
    ),
) -> None:
    """Route every ingress alert to the partner inboxes its agreements allow, until Ctrl-C.

    Run as many instances as you like, here or on other machines: they share the shards
    (partitions of bus.fanout.shards) through one consumer group, with no list to keep.
    """
    import signal

    from bus.ops import OpsSettings, ops_endpoint
    from services.fanout.service import FanoutService

    settings = _settings()
    ops = OpsSettings()
    default_port = metrics_port is None and "fanout_metrics_port" not in ops.model_fields_set
    if metrics_port is None:
        metrics_port = ops.fanout_metrics_port

    async def go() -> None:
        service = FanoutService(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        err.print(f"Fan-out on {settings.bootstrap_servers} with "
                  f"{len(service.agreements.agreements)} agreement(s), "
                  f"{len(service.agreements.partners)} partner(s). Ctrl-C stops it.")  # fmt: skip
        async with ops_endpoint(
            service.metrics, host=ops.metrics_host, port=metrics_port,
            setting="BUS_FANOUT_METRICS_PORT (or --metrics-port)", default=default_port,
        ) as endpoint:  # fmt: skip
            if endpoint is not None:
                err.print(f"Metrics at {endpoint.url}/metrics", highlight=False)
            await service.run()
        err.print(f"Stopped: {service.stats}")

    _run(go)


# -- the operator's view -------------------------------------------------------------------------


@app.command("status")
def status(
    service: list[str] = typer.Option(
        None,
        "--service",
        help="NAME=HOST:PORT of a service's metrics endpoint to check "
        "(repeat). Default: BUS_STATUS_SERVICES, else the fan-out, index and adapter ports.",
    ),
    max_lag: int | None = typer.Option(
        None, help="Count a consumer more than this many records behind as unhealthy too."
    ),
    all_topics: bool = typer.Option(False, "--all", help="List every ingress topic's lag."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of the table."),
) -> None:
    """The health and lag of every part of the bus in one table; exit 3 if any is unhealthy."""
    from bus.ops.settings import OpsSettings, parse_address
    from bus.ops.status import bus_status

    settings = _settings()
    services = OpsSettings().services()
    if service:
        services = {}
        for item in service:
            name, sep, address = item.partition("=")
            if not sep or not name:
                raise _fail(BusError(f"--service expects NAME=HOST:PORT, got {item!r}"))
            try:
                parse_address(address, what=f"--service {name}")
            except ValueError as exc:
                raise _fail(exc) from None
            services[name] = address
    found = _run(lambda: bus_status(settings, services=services, index_offsets=_index_offsets))
    unhealthy = [f"{p.name} {p.state}" for p in found.parts if not p.healthy]
    if max_lag is not None:
        unhealthy += [f"{p.name} {p.lag.total} behind" for p in found.parts
                      if p.lag is not None and p.lag.total > max_lag]  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(_status_json(found, unhealthy), ensure_ascii=False) + "\n")
        if unhealthy:
            raise typer.Exit(code=3)
        return
    out.print(_status_table(found, all_topics=all_topics))
    if unhealthy:
        out.print(f"[bold red]unhealthy:[/] {', '.join(unhealthy)}", highlight=False)
        raise typer.Exit(code=3)
    out.print("[bold green]healthy[/]", highlight=False)


def _index_offsets() -> dict[tuple[str, int], int] | None:
    """The offsets the index database here has committed, read-only; None without one."""
    import sqlite3

    from services.index.settings import IndexSettings
    from services.index.store import IndexStore

    database = IndexSettings().database
    if not database.exists():
        return None
    store = IndexStore.open(database, readonly=True)
    try:
        return store.offsets()
    except sqlite3.Error:  # not initialised yet
        return None
    finally:
        store.close()


def _status_json(found: Any, unhealthy: list[str]) -> dict[str, Any]:
    parts = []
    for p in found.parts:
        part = {"name": p.name, "state": p.state, "healthy": p.healthy, "detail": p.detail}
        if p.lag is not None:
            part["lag"] = p.lag.total
            part["lag_by_topic"] = p.lag.by_topic()
        parts.append(part)
    return {"healthy": not unhealthy, "unhealthy": unhealthy, "parts": parts}


_STATE_STYLE = {"ok": "green", "ready": "green", "not ready": "yellow", "down": "red"}
#: Ingress topics listed under a consumer, at most (the most behind first), without --all.
_TOPIC_ROWS = 12


def _status_table(found: Any, *, all_topics: bool) -> Any:
    from rich.table import Table

    table = Table(title="Balkan Alert Bus", title_justify="left")
    for column in ("part", "state", "lag", "detail"):
        table.add_column(column, justify="right" if column == "lag" else "left")
    for part in found.parts:
        style = _STATE_STYLE.get(part.state, "dim")
        lag = "" if part.lag is None else str(part.lag.total)
        table.add_row(part.name, f"[{style}]{part.state}[/]", lag, part.detail)
        if part.lag is None:
            continue
        topics = sorted(part.lag.by_topic().items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        shown = topics if all_topics else [t for t in topics if sum(t[1].values())]
        for topic, partitions in shown[: None if all_topics else _TOPIC_ROWS]:
            each = ", ".join(f"p{p} {n}" for p, n in sorted(partitions.items()))
            table.add_row(f"  {topic}", "", str(sum(partitions.values())), each)
        if not all_topics and len(shown) > _TOPIC_ROWS:
            table.add_row("  …", "", "", f"{len(shown) - _TOPIC_ROWS} more topic(s) behind (--all)")
    return table


def _load_audit(file: Path | None) -> list[dict[str, Any]]:
    if file is None:
        from bus.admin import read_audit

        return _run(lambda: read_audit(_settings()))
    records = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BusError(f"{file}:{n}: not a JSON audit record: {exc.msg}") from exc
    return records


@audit_app.command("verify")
def audit_verify(
    file: Path | None = typer.Option(None, "--file", help="An exported audit (JSON lines)."),
) -> None:
    """Check every hash chain of bus.audit (one per fan-out shard), or of an export: OK, or
    the first broken index of each chain.

    Without --file, the lookup audit chain (bus.audit.lookups, the joint index's) is checked too.
    """
    from bus.audit import verify_chain, verify_chains

    verdicts = verify_chains(_load_audit(file))
    ok = all(v.ok for v in verdicts.values())
    total = sum(v.count for v in verdicts.values())
    out.print(f"{'OK' if ok else 'BROKEN'}: {total} audit record(s) in {len(verdicts)} "
              f"chain(s)", highlight=False)  # fmt: skip
    for chain, verdict in verdicts.items():
        out.print(f"chain {chain}: {verdict}", highlight=False)
    if file is None:
        from services.index.responder import read_lookup_audit

        lookups = verify_chain(_run(lambda: read_lookup_audit(_settings())))
        out.print(f"lookups: {lookups}", highlight=False)
        ok = ok and lookups.ok
    if not ok:
        raise typer.Exit(code=1)


@audit_app.command("export")
def audit_export(
    output: Path | None = typer.Option(None, "--out", help="File to write (default: stdout)."),
    per_decision: bool = typer.Option(
        False, "--decisions", help="One line per decision (for reading; not verifiable)."
    ),
) -> None:
    """Write bus.audit as JSON lines, one record (an alert, with every decision for it) per
    line, in log order; with --decisions, one line per decision instead."""
    from bus.audit import decisions

    records = _load_audit(None)
    if per_decision:
        records = list(decisions(records))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines, encoding="utf-8")
        err.print(f"Wrote {len(records)} audit record(s) to {output}")


@audit_app.command("show")
def audit_show(
    alert: str = typer.Option(..., "--alert", help="The alert id."),
    file: Path | None = typer.Option(None, "--file", help="An exported audit (JSON lines)."),
) -> None:
    """Who received an alert, who did not, and why (agreements, removed fields)."""
    from rich.table import Table

    from bus.audit import decisions

    records = [r for r in decisions(_load_audit(file)) if r.get("alert_id") == alert]
    if not records:
        raise BusError(f"No audit record for alert {alert}")
    # An alert is (origin, alert id): another country may have used the same id.
    for origin in sorted({str(r.get("origin")) for r in records}):
        mine = [r for r in records if str(r.get("origin")) == origin]
        first = mine[0]
        kind, tlp = first.get("msg_type", "ALERT"), first.get("tlp")
        table = Table(title=f"Alert {alert}: {first.get('alert_type')} from {origin}, {kind}, "
                            f"TLP {tlp}")  # fmt: skip
        for column in ("#", "partner", "decision", "agreements", "removed fields", "reason"):
            table.add_column(column)
        for r in mine:
            table.add_row(str(r.get("index")), r.get("partner") or "-", r.get("decision", "?"),
                          ", ".join(r.get("agreements", [])), ", ".join(r.get("redacted", [])),
                          r.get("reason", ""))  # fmt: skip
        out.print(table)


# -- access --------------------------------------------------------------------------------------


def _access(settings: BusSettings) -> Any:
    from bus.access.acl import derive_access
    from bus.agreements import load_agreements
    from bus.schemas import SchemaRegistry

    registry = SchemaRegistry.load(settings.schemas_dir)
    return derive_access(load_agreements(settings.agreements, schemas=registry), settings.topics)


@access_app.command("apply")
def access_apply(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would change; change nothing."
    ),
) -> None:
    """Make the broker's SCRAM users and ACLs match the agreements file (BUS_AGREEMENTS).

    One user per principal (each country, each partner, the fan-out, the index), its password
    generated into BUS_CREDENTIALS_DIR (mode 0600). A removed principal loses its ACLs, then its
    login. Run as the administrator (BUS_CLIENT_CONFIG).
    """
    from bus.access.apply import admin_client, apply_plan, check_admin, plan_access

    settings = _settings()
    check_admin(settings)
    access = _access(settings)
    client = admin_client(settings)
    plan = plan_access(settings, access, client)
    for line in plan.lines():
        out.print(("would " if dry_run else "") + line, highlight=False)
    for binding in plan.foreign:
        err.print(f"left alone (not written by the bus): {binding}", highlight=False)
    if plan.empty:
        err.print(f"Nothing to change: {len(access.principals)} principal(s), "
                  f"{len(access.grants)} ACL(s) in place.")  # fmt: skip
        return
    if dry_run:
        err.print("Dry run: nothing changed.")
        return
    apply_plan(settings, plan, client)
    err.print(f"Applied: {len(access.principals)} principal(s), {len(access.grants)} ACL(s); "
              f"passwords in {settings.credentials_dir} (mode 0600).")  # fmt: skip


@access_app.command("kit")
def access_kit(
    principal: str = typer.Argument(..., help="A partner or country id, e.g. europol or mk."),
    output: Path = typer.Option(..., "--out", help="Directory to write the kit into."),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="The address partners connect to (default: this one)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out directory."),
) -> None:
    """Write PRINCIPAL's onboarding kit: client.properties, ca.pem, keys/*.pub, schemas/."""
    from bus.access.kit import write_kit

    settings = _settings()
    files = write_kit(settings, _access(settings), principal, output,
                      bootstrap_servers=bootstrap, force=force)  # fmt: skip
    err.print(
        f"Wrote {len(files)} file(s) to {output} (mode 0600, directories 0700). Give "
        f"it to {principal} by a secure channel: client.properties holds its password."
    )


def main() -> None:
    try:
        app()
    except BusError as exc:
        raise SystemExit(_fail(exc).exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
