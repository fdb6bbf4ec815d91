"""`make demo`: the whole loop on sample data, on a local broker unless one is configured.

1. starts (or reuses) a local Kafka, generates the signing keys it needs, applies the topics;
2. starts the fan-out with the sample sharing agreements (examples/agreements.yaml);
3. publishes the sample alert of every type (examples/alerts/) as its country, and feeds every
   sample national feed (examples/feeds/<cc>/) through that country's adapter;
4. shows, per partner, how many alerts arrived in its inbox and one of them decoded, a redacted
   copy among them.

The samples date from 2014 and 2018, so by today's clock most would have expired and reach
nobody. The demo therefore replays them as history: its fan-out judges each alert's expiry as of
the moment it was issued (a clock only a replay can set; ``bus fanout run`` always uses the
wall clock). Every other rule applies as it does in production.

Run it again and the adapters publish nothing new (their files are journaled and their alert ids
are deterministic): that is the "nothing twice" guarantee, shown.

`make demo SECURE=1` (``--secure``) runs the same loop on a secure broker (SASL_SSL, ACLs from
the agreements): the administrator applies topics and access, every adapter and publisher
connects as its country, the fan-out as ``fanout``, the joint index as ``index``, each inbox is
read as its partner and each lookup is made with the requester's onboarding kit. It
uses its own data directory and ports (``…/kafka-data-secure``, 9094 and 9095) unless
BUS_KAFKA_DATA_DIR, BUS_KAFKA_PORT or BUS_CLIENT_CONFIG say otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bus import (
    AlertCodec,
    BusError,
    BusSettings,
    Publisher,
    SchemaRegistry,
    generate_keypair,
)
from bus.admin import apply_topics
from bus.agreements import Agreements, load_agreements
from bus.audit import verify_chain
from bus.envelope import header_map
from bus.kafka import read_to_end
from bus.kafka.local import LocalKafka
from bus.logs import configure_logging
from bus.models import ALERT_MODELS, ALERT_TYPES, Alert, HitNotice
from bus.ops.settings import OpsSettings
from bus.schemas import NOTICE_TYPES
from services.adapters import Adapter, DropFolder, IdentityHasher, available_countries, load_mapping
from services.fanout.service import FanoutService

EXAMPLES = Path(__file__).resolve().parent
NOTICES = {t.encode() for t in NOTICE_TYPES}
WORK = Path(".bus") / "demo"
WIDTH = None if sys.stdout.isatty() else 120
console = Console(stderr=True, width=WIDTH)


Principals = Callable[[str], BusSettings]


def ensure_secure_broker(settings: BusSettings) -> tuple[BusSettings, Principals]:
    """A secure broker (local unless BUS_CLIENT_CONFIG names one) and every principal's access."""
    from bus.access.acl import derive_access
    from bus.access.apply import admin_client, apply_plan, plan_access
    from bus.access.credentials import CredentialStore

    if not os.environ.get("BUS_CLIENT_CONFIG"):
        update: dict[str, Any] = {"kafka_secure": True}
        if not os.environ.get("BUS_KAFKA_DATA_DIR"):
            update["kafka_data_dir"] = settings.kafka_data_dir.with_name("kafka-data-secure")
        port = settings.kafka_port if os.environ.get("BUS_KAFKA_PORT") else 9094
        update["kafka_port"] = port
        if not os.environ.get("BUS_KAFKA_CONTROLLER_PORT"):
            update["kafka_controller_port"] = port + 1
        broker = LocalKafka(settings.model_copy(update=update))
        console.print(f"Starting a secure local Apache Kafka {broker.version} (KRaft) …")
        status = broker.start()
        assert status.client_config is not None
        console.print(f"Kafka is up at [bold]{status.bootstrap_servers}[/] (SASL_SSL, ACLs "
                      f"enforced, pid {status.pid}); stop it with [bold]BUS_KAFKA_DATA_DIR="
                      f"{status.data_dir} .venv/bin/bus kafka stop[/]")  # fmt: skip
        settings = BusSettings(client_config=status.client_config)
    registry = SchemaRegistry.load(settings.schemas_dir)
    access = derive_access(load_agreements(settings.agreements, schemas=registry), settings.topics)
    client = admin_client(settings)
    plan = plan_access(settings, access, client)
    apply_plan(settings, plan, client)
    console.print(f"Access: {len(access.principals)} principals, {len(access.grants)} ACLs from "
                  f"the agreements ({len(plan.lines())} change(s) now); passwords in "
                  f"{settings.credentials_dir}")  # fmt: skip
    store = CredentialStore(settings.credentials_dir)

    def principal(name: str) -> BusSettings:
        path = store.path(settings.topic_prefix + name)
        return settings.model_copy(
            update={"client_config": path, "sasl_username": settings.topic_prefix + name,
                    "sasl_password": store.load(settings.topic_prefix + name).password}
        )  # fmt: skip

    return settings, principal


def ensure_broker(settings: BusSettings) -> BusSettings:
    if os.environ.get("BUS_BOOTSTRAP_SERVERS"):
        console.print(f"Using the Kafka cluster at [bold]{settings.bootstrap_servers}[/]")
        return settings
    broker = LocalKafka(settings)
    console.print(f"Starting a local Apache Kafka {broker.version} (KRaft) …")
    status = broker.start()
    console.print(f"Kafka is up at [bold]{status.bootstrap_servers}[/] (pid {status.pid}); "
                  "stop it with [bold].venv/bin/bus kafka stop[/]")  # fmt: skip
    return settings.model_copy(update={"bootstrap_servers": status.bootstrap_servers})


def sample_alerts() -> list[Alert]:
    """The sample alert of every type, with a fresh id so that every run shows the whole loop."""
    alerts = []
    for t in ALERT_TYPES:
        data = json.loads((EXAMPLES / "alerts" / f"{t}.json").read_text("utf-8"))
        data["header"]["alert_id"] = str(uuid.uuid4())
        alerts.append(ALERT_MODELS[t].model_validate(data))
    return alerts


def _cluster_dir(settings: BusSettings) -> str:
    """A directory name for the cluster the demo talks to."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", settings.bootstrap_servers)


async def feed_adapters(settings: BusSettings, principal: Principals) -> int:
    """Every sample national feed through its country's adapter, as a drop folder."""
    identity = IdentityHasher.development()  # a public key: for the demo only
    published = 0
    # A drop folder's journal remembers what reached *this* cluster: another broker (the secure
    # one, say) gets folders of its own, so its inboxes fill too.
    cluster = _cluster_dir(settings)
    for cc in available_countries():
        drop = WORK / "drop" / cluster / cc
        drop.mkdir(parents=True, exist_ok=True)
        for source in sorted((EXAMPLES / "feeds" / cc).iterdir()):
            if source.is_file() and not (drop / "done" / source.name).exists():
                shutil.copy(source, drop / source.name)
        async with (
            Adapter(principal(cc), load_mapping(cc), identity=identity) as adapter,
            DropFolder(adapter, drop) as folder,
        ):
            outcomes = await folder.scan_once()
        counts = Counter[str]()
        for outcome in outcomes:
            counts.update(outcome.by_type)
            published += outcome.published
        quarantined = sum(o.quarantined for o in outcomes)
        summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "nothing new"
        console.print(f"Adapter [bold]{cc}[/]: {summary}"
                      + (f", {quarantined} set aside" if quarantined else ""))  # fmt: skip
    return published


async def run(settings: BusSettings, principal: Principals) -> None:
    registry = SchemaRegistry.load(settings.schemas_dir)
    agreements = load_agreements(settings.agreements, schemas=registry)
    countries = {p.country for p in agreements.partners.values() if p.country}
    for key_id in sorted(countries | {"hub"}):
        if not (settings.keys_dir / f"{key_id}.key").exists():
            generate_keypair(settings.keys_dir, key_id)
    console.print(f"Signing keys in {settings.keys_dir} for {len(countries)} countries and the hub")

    created, total = await apply_topics(settings)
    console.print(f"Topics: {total} in place ({len(created)} created now)")
    partners = sorted(agreements.partners)
    before = {p: len(await read_to_end(principal(p), settings.topics.inbox(p))) for p in partners}

    fanout = FanoutService(principal("fanout"), agreements=agreements, clock=_as_issued)
    task = asyncio.create_task(fanout.run())
    await fanout.wait_ready()
    console.print(f"Fan-out running with {len(agreements.agreements)} agreements, "
                  f"{len(partners)} partners")  # fmt: skip

    alerts = sample_alerts()
    for alert in alerts:
        async with Publisher(principal(alert.origin), origin=alert.origin) as pub:
            result = await pub.publish(alert)
        console.print(f"Published {alert.alert_type:<24} as {alert.origin} → "
                      f"{result.topic}[{result.partition}]@{result.offset}")  # fmt: skip
    published = len(alerts) + await feed_adapters(settings, principal)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60

    # Poll the service's counters until it has routed everything published above.
    def routed() -> int:
        return fanout.stats.alerts + fanout.stats.duplicates + fanout.stats.refused

    while routed() < published and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    fanout.stop()
    await task
    s = fanout.stats
    console.print(f"Fan-out routed {s.alerts} alert(s): {s.delivered} copies delivered, "
                  f"{s.notices} withdrawal notice(s), {s.denied} decisions denied, "
                  f"{s.expired} expired, {s.duplicates} duplicate(s) dropped")  # fmt: skip
    await asyncio.sleep(1)  # let the last transaction markers reach every partition
    show_inboxes(settings, partners, before, await _inboxes(settings, partners, principal))
    await joint_index(settings, agreements, principal)


def _as_issued(alert: Alert) -> datetime:
    """The replay clock: each sample alert is routed a minute after it was issued."""
    return alert.header.issued_at + timedelta(minutes=1)


async def _inboxes(
    settings: BusSettings, partners: list[str], principal: Principals
) -> dict[str, list[Any]]:
    """Each inbox read as its own partner: on a secure bus, nobody else could."""
    return {p: await read_to_end(principal(p), settings.topics.inbox(p)) for p in partners}


def show_inboxes(
    settings: BusSettings,
    partners: list[str],
    before: dict[str, int],
    inboxes: dict[str, list[Any]],
) -> None:
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    table = Table(title="Partner inboxes (read_committed)", width=WIDTH)
    for column in ("partner", "new", "total", "notices", "one of them", "removed fields"):
        table.add_column(column, overflow="fold")
    redacted_example = None
    for p in partners:
        records = inboxes[p]
        # Withdrawal notices from the fan-out, hit notices from the joint index (a run before
        # this one on the same broker left some): everything else in an inbox is an alert.
        alerts = [r for r in records if header_map(r.headers).get("bus-type") not in NOTICES]
        notices = len(records) - len(alerts)
        if not alerts:
            table.add_row(p, str(len(records) - before[p]), str(len(records)), str(notices), "-",
                          "")  # fmt: skip
            continue
        redacted = [r for r in alerts if header_map(r.headers).get("bus-redacted")]
        pick = (redacted or alerts)[-1]
        alert = codec.decode(pick.value).alert
        removed = header_map(pick.headers).get("bus-redacted", b"").decode()
        if removed and redacted_example is None:
            redacted_example = (p, alert, removed)
        table.add_row(p, str(len(records) - before[p]), str(len(records)), str(notices),
                      f"{alert.alert_type} from {alert.origin}, {str(alert.alert_id)[:8]}…",
                      removed)  # fmt: skip
    Console(width=WIDTH).print(table)
    if redacted_example:
        p, alert, removed = redacted_example
        console.print(f"\n{p}'s copy of {alert.alert_id} ({alert.alert_type}), re-signed by the "
                      f"hub with [bold]{removed}[/] removed:")  # fmt: skip
        print(json.dumps(alert.model_dump(mode="json"), ensure_ascii=False, indent=2))


def main() -> None:
    settings = BusSettings()
    configure_logging("WARNING", settings.log_format)
    try:
        if "--secure" in sys.argv[1:] or settings.kafka_secure:
            settings, principal = ensure_secure_broker(settings)
        else:
            settings = ensure_broker(settings)
            principal = lambda _name: settings  # noqa: E731 - without security, one identity
        asyncio.run(run(settings, principal))
        if settings.principal:
            show_kit(settings)
        ops = OpsSettings()
        console.print(f"\nMetrics: `bus fanout run`, `bus index run` and `bus adapter run` serve "
                      f"/metrics, /healthz and /readyz on {ops.metrics_host}:"
                      f"{ops.fanout_metrics_port}, :{ops.index_metrics_port} and "
                      f":{ops.adapter_metrics_port}; `bus status` shows the whole bus.",
                      highlight=False)  # fmt: skip
    except BusError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


def show_kit(settings: BusSettings) -> None:
    """Write one partner's onboarding kit and show how a client outside the project uses it."""
    from bus.access.acl import derive_access
    from bus.access.kit import write_kit

    access = derive_access(load_agreements(settings.agreements), settings.topics)
    kit = WORK / "kit-frontex"
    write_kit(settings, access, "frontex", kit, force=True)
    console.print(f"\nfrontex's onboarding kit is in [bold]{kit}[/] (client.properties, ca.pem, "
                  "keys/, schemas/). Any Kafka client can use it, e.g.:\n  .venv/bin/python "
                  f"examples/partner_consumer.py --kit {kit} --topic "
                  f"{settings.topics.inbox('frontex')} --max 3")  # fmt: skip


# -- The joint index and the statistics ----------------------------------------------------------

#: The index judges expiry as of the middle of the 2014 samples (a replay clock, as for the
#: fan-out above; `bus index run` always uses the wall clock).
INDEX_AS_OF = datetime(2014, 6, 15, tzinfo=UTC)


async def joint_index(settings: BusSettings, agreements: Agreements, principal: Principals) -> None:
    """Fold ingress into the index, look Marko Petrović up as three requesters, show the hit
    notices his owners received and a statistics table. On a secure bus the index runs as
    ``index`` and each requester asks with nothing but its onboarding kit."""
    from services.index.client import lookup_over_kafka
    from services.index.responder import read_lookup_audit
    from services.index.service import IndexService
    from services.index.settings import IndexSettings
    from services.index.stats import stats_table

    # Its database holds the offsets of one cluster's ingress: another broker gets its own.
    index_settings = IndexSettings(data_dir=WORK / "index" / _cluster_dir(settings))
    service = IndexService(principal("index"), index_settings, agreements=agreements,
                           clock=lambda: INDEX_AS_OF)  # fmt: skip
    await service.catch_up()
    console.print(f"\nJoint index at {index_settings.database}: {service.store.counts()}")
    task = asyncio.create_task(service.run())
    await service.wait_ready()
    while service._responder is None:  # noqa: ASYNC110 (the demo only)
        await asyncio.sleep(0.05)
    # The same person as the Serbian police wrote him (Петровић, Cyrillic) and the Greek police
    # (Πέτροβιτς): the token is computed here from the Greek spelling.
    token = IdentityHasher.development().token(
        "Πέτροβιτς", "Μάρκο", date(1984, 3, 15), "rs", language="el"
    )
    assert token is not None
    # Europol sees both owners; the Tabanovce centre Serbia's alerts only; Austria (the
    # Balkan-route agreement) crossings and readmissions only.
    for requester in ("europol", "jc-tabanovce", "at"):
        answer = await lookup_over_kafka(_requester(settings, requester), requester, [token])
        console.print(f"[bold]bus lookup --as {requester}[/] (Πέτροβιτς Μάρκο, 1984-03-15, rs):")
        for result in answer.results:
            print(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
    service.stop()
    await task
    await asyncio.sleep(0.5)
    for cc in ("rs", "gr"):
        for r in await read_to_end(principal(cc), settings.topics.inbox(cc)):
            if header_map(r.headers).get("bus-type") == HitNotice.record_type.encode():
                notice = AlertCodec(SchemaRegistry.load(settings.schemas_dir)).decode_message(
                    r.value
                )
                console.print(f"Hit notice in partner.{cc}.inbox: "
                              f"{notice.notice.model_dump_json()}")  # fmt: skip
    audit = await read_lookup_audit(settings)
    console.print(f"Lookup audit (bus.audit.lookups): {verify_chain(audit)}")
    table = stats_table(service.store, "irregular-crossing-persons", by=["reporting_country"],
                        min_cell=index_settings.stats_min_cell)  # fmt: skip
    title = (f"{table.indicator.title} by month and reporting country (cells below "
             f"{table.min_cell} suppressed: ·; docs/statistics.md)")  # fmt: skip
    out = Table(title=title, width=WIDTH)
    for column in ("month", "reporting country", "persons"):
        out.add_column(column)
    for cell in table.cells:
        out.add_row(cell.month, *cell.dims, "·" if cell.value is None else str(cell.value))
    Console(width=WIDTH).print(out)


def _requester(settings: BusSettings, requester: str) -> BusSettings:
    """How ``requester`` connects: on a secure bus, with its onboarding kit and nothing else."""
    if not settings.principal:
        return settings
    from bus.access.acl import derive_access
    from bus.access.kit import write_kit

    access = derive_access(load_agreements(settings.agreements), settings.topics)
    kit = WORK / f"kit-{requester}"
    write_kit(settings, access, requester, kit, force=True)
    return BusSettings(client_config=kit / "client.properties", keys_dir=kit / "keys",
                       schemas_dir=kit / "schemas", topic_prefix=settings.topic_prefix)  # fmt: skip


if __name__ == "__main__":
    main()
