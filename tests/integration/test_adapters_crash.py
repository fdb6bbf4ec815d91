"""An adapter killed with SIGKILL in the middle of a 5,000-record file, then restarted."""

# ruff: noqa: RUF001  (Cyrillic letters are meant)

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

from bus import Alert, AlertCodec, BusSettings, SchemaRegistry
from services.adapters.mapping import alert_id_for
from services.fanout.service import FanoutService
from tests.conftest import REPO
from tests.integration.fanout_support import (
    check_inboxes,
    expected_inboxes,
    fanout_settings,
    fanout_topics,
    load_example_agreements,
    read_inboxes,
)
from tests.integration.test_adapters import adapter_topics, prefixed, read_all
from tests.integration.test_fanout import run_until
from tests.unit.test_adapters_countries import sample_feed

AGREEMENTS = load_example_agreements()
RECORDS = 5000
BATCH = 100


def big_feed() -> tuple[bytes, set[str], set[int]]:
    """5,000 Serbian records made from the sample, one in 50 with a bad date.

    Returns the file, the alert ids of the valid records and the lines of the broken ones.
    """
    rows = list(csv.DictReader(io.StringIO(sample_feed("rs").read_text("utf-8"))))
    names = list(rows[0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    valid: set[str] = set()
    broken: set[int] = set()
    for i in range(RECORDS):
        row = dict(rows[i % len(rows)])
        row.update({"ид_записа": f"МУП-Т-{i:05d}", "верзија": "1", "статус": "активан"})
        if i % 50 == 49:
            row["датум"] = "32.13.2014."
            broken.add(i + 2)
        else:
            valid.add(str(alert_id_for("rs", row["ид_записа"], 1)))
        writer.writerow(row)
    return out.getvalue().encode("utf-8"), valid, broken


def _env(settings: BusSettings) -> dict[str, str]:
    return {
        **os.environ,
        "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "BUS_KEYS_DIR": str(settings.keys_dir),
        "BUS_TOPIC_PREFIX": settings.topic_prefix,
        "BUS_IDENTITY_KEY": "crash-test-identity-key-" + "0" * 16,
        "BUS_LOG_FORMAT": "json",
        "BUS_LOG_LEVEL": "INFO",
        "BUS_ADAPTER_BATCH_SIZE": str(BATCH),
        # Slow enough that the kill lands mid-file: 5,000 records take over a second.
        "BUS_ADAPTER_MAX_RECORDS_PER_SECOND": "4000",
        "PYTHONPATH": str(REPO),
    }


async def _published_at_least(process: asyncio.subprocess.Process, count: int) -> int:
    """Read the adapter's JSON log until a batch acknowledgement reports ``count`` published."""
    assert process.stderr is not None
    async for raw in process.stderr:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if event.get("event") == "batch_acked" and event["published"] >= count:
            return int(event["published"])
    raise AssertionError("the adapter ended before publishing enough")


async def test_adapter_killed_mid_file_loses_nothing_and_partners_get_each_record_once(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "rs")
    drop = tmp_path / "drop"
    drop.mkdir()
    data, valid, broken = big_feed()
    (drop / "rs-big.csv").write_bytes(data)
    cmd = [sys.executable, "-m", "services.adapters", "run", "rs", "--watch", str(drop), "--once"]

    first = await asyncio.create_subprocess_exec(
        *cmd, env=_env(settings), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        seen = await asyncio.wait_for(_published_at_least(first, 1500), 90)
        # Not synchronisation: a random pause of about one batch period, so that the kill
        # lands anywhere in a batch (while it is in flight, too), not always right after one.
        await asyncio.sleep(random.uniform(0, 0.1))
    finally:
        first.kill()  # SIGKILL: no cleanup, no flush
        await first.wait()
    assert seen < len(valid), "the kill must land mid-file"
    assert (drop / "rs-big.csv").exists(), "a file is done only when every record is"

    second = await asyncio.create_subprocess_exec(
        *cmd, env=_env(settings), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(second.wait(), 120) == 0
    assert (drop / "done" / "rs-big.csv").exists()

    records = await read_all(settings, topics)
    ids = Counter(dict(r.headers)["bus-alert-id"].decode() for r in records)
    assert set(ids) == valid  # every valid record, nothing else
    in_flight = sum(ids.values()) - len(ids)
    print(f"\n{len(valid)} valid records; {in_flight} sent twice (in flight at the kill)")
    assert in_flight <= BATCH  # the fan-out delivers each alert id once

    # Every valid record reaches each entitled partner exactly once, through the fan-out.
    fanout = fanout_settings(settings)
    await fanout_topics(fanout, AGREEMENTS)
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    first_seen: dict[str, Alert] = {}
    for r in sorted(records, key=lambda r: r.timestamp):
        alert = codec.decode(r.value).alert
        first_seen.setdefault(str(alert.alert_id), alert)
    service = FanoutService(fanout)
    await run_until(service, len(records))
    assert service.stats.duplicates == in_flight
    expected = expected_inboxes(list(first_seen.values()), AGREEMENTS)
    total = sum(len(v) for v in expected.values())
    assert total >= len(valid)
    actual = await read_inboxes(fanout, sorted(AGREEMENTS.partners), expect=total)
    assert check_inboxes(actual, expected) == total

    report = drop / "quarantine" / "rs-big.csv.report.jsonl"
    lines = [json.loads(x) for x in report.read_text("utf-8").splitlines()]
    assert {int(x["position"].split()[1]) for x in lines} == broken
    assert all(x["field"] == "датум" for x in lines)
