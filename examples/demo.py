"""`make demo`: the whole loop on sample data, on a local broker unless one is configured.

Starts (or reuses) a local Kafka, generates the signing keys it needs, applies the topics,
publishes the sample alert of every type as its country, and shows them decoded by a subscriber.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bus import BusError, BusSettings, Publisher, ReceivedAlert, Subscriber, generate_keypair
from bus.admin import apply_topics
from bus.kafka_local import LocalKafka
from bus.logs import configure_logging
from bus.models import ALERT_MODELS, ALERT_TYPES

EXAMPLES = Path(__file__).resolve().parent / "alerts"
console = Console(stderr=True, width=None if sys.stderr.isatty() else 110)


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


async def run(settings: BusSettings) -> None:
    alerts = [
        ALERT_MODELS[t].model_validate_json((EXAMPLES / f"{t}.json").read_text("utf-8"))
        for t in ALERT_TYPES
    ]
    for key_id in sorted({a.origin for a in alerts} | {"hub"}):
        if not (settings.keys_dir / f"{key_id}.key").exists():
            generate_keypair(settings.keys_dir, key_id)
            console.print(f"Generated signing key [bold]{key_id}[/] in {settings.keys_dir}")

    created, total = await apply_topics(settings)
    console.print(f"Topics: {total} in place ({len(created)} created now)")

    published = {}
    for alert in alerts:
        async with Publisher(settings, origin=alert.origin) as pub:
            result = await pub.publish(alert)
        published[(result.topic, result.partition, result.offset)] = alert
        console.print(f"Published {alert.alert_type:<24} as {alert.origin} → "
                      f"{result.topic}[{result.partition}]@{result.offset}")  # fmt: skip

    seen: list[ReceivedAlert] = []
    done = asyncio.Event()

    async def handle(received: ReceivedAlert) -> None:
        if (received.topic, received.partition, received.offset) in published:
            seen.append(received)
            if len(seen) == len(published):
                done.set()

    topics = sorted({t for t, _, _ in published})
    group = f"demo-{int(time.time())}"
    async with Subscriber(settings, group_id=group, topics=topics, handler=handle) as sub:
        task = asyncio.create_task(sub.run())
        await asyncio.wait_for(done.wait(), 60)
        sub.stop()
        await task

    table = Table(title="Decoded and verified by a subscriber", show_lines=False)
    for column in ("type", "origin", "signed by", "alert id", "TLP", "summary"):
        table.add_column(column)
    for r in sorted(seen, key=lambda r: r.alert_type):
        table.add_row(r.alert_type, r.alert.origin, r.key_id, str(r.alert.alert_id)[:8] + "…",
                      r.alert.header.tlp.value, _summary(r))  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 110).print(table)
    first = sorted(seen, key=lambda r: r.alert_type)[0]
    console.print(f"\nOne of them in full ({first.alert_type}):")
    print(json.dumps(first.alert.model_dump(mode="json"), ensure_ascii=False, indent=2))


def _summary(r: ReceivedAlert) -> str:
    data = r.alert.model_dump()
    for key in ("place", "border_section", "conflict_zone", "legal_basis", "assisting_mission"):
        if data.get(key):
            return str(data[key])[:60]
    return ""


def main() -> None:
    settings = BusSettings()
    configure_logging("WARNING", settings.log_format)
    try:
        settings = ensure_broker(settings)
        asyncio.run(run(settings))
    except BusError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
