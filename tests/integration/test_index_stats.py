"""Statistics and the index on a real broker: the worked example of docs/statistics.md through
Kafka and the command line, exports that parse, charts, and a ``kill -9`` that changes nothing."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bus import Alert, BusSettings, Publisher
from bus.models import ALERT_TYPES
from services.index.indicators import INDICATORS
from services.index.service import IndexService
from services.index.settings import IndexSettings
from services.index.stats import stats_table
from services.index.store import IndexStore
from tests.conftest import REPO
from tests.factories import make_alert
from tests.integration.conftest import create_topics, prefixed
from tests.integration.index_support import AGREEMENTS
from tests.unit.test_index_store import crossing, worked_example
from tests.unit.test_index_suppression import secondary_example


def _env(settings: BusSettings, data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "BUS_TOPIC_PREFIX": settings.topic_prefix, "BUS_KEYS_DIR": str(settings.keys_dir),
            "BUS_AGREEMENTS": str(AGREEMENTS), "BUS_DATA_DIR": str(data_dir),
            "BUS_LOG_LEVEL": "WARNING", "BUS_LOOKUP_HTTP_PORT": "0", "BUS_INDEX_METRICS_PORT": "0",
            **extra}  # fmt: skip


async def _publish(settings: BusSettings, alerts: list[Alert]) -> None:
    for origin in sorted({a.origin for a in alerts}):
        async with Publisher(settings, origin=origin) as pub:
            await pub.publish_many([a for a in alerts if a.origin == origin])


def _bus(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bus", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_worked_example_through_kafka_and_the_command_line(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    await create_topics(settings, *(settings.topics.ingress("rs", t) for t in ALERT_TYPES))
    await _publish(settings, worked_example())
    data = tmp_path / "data"
    env = _env(settings, data)
    await asyncio.to_thread(_bus, env, "index", "rebuild")

    table = _bus(env, "stats", "show", "irregular-crossing-persons", "--by", "nationality",
                 "--from", "2014-01", "--to", "2014-01")  # fmt: skip
    rows = {line.split("│")[2].strip(): line.split("│")[3].strip()
            for line in table.splitlines() if "2014-01" in line}  # fmt: skip
    assert rows == {"af": "4", "sy": "13", "unknown": "4"}
    assert _bus(env, "stats", "list").split() == [i.id for i in INDICATORS]

    _bus(env, "stats", "export", "--format", "sdmx-csv", "--out", str(tmp_path / "s.csv"))
    with (tmp_path / "s.csv").open(encoding="utf-8", newline="") as f:
        sdmx = list(csv.DictReader(f))
    assert list(sdmx[0])[:3] == ["DATAFLOW", "FREQ", "REPORTING_COUNTRY"]
    assert list(sdmx[0])[-4:] == ["UNIT_MEASURE", "TIME_PERIOD", "OBS_VALUE", "OBS_STATUS"]
    persons = {(r["TIME_PERIOD"], r["NATIONALITY"]): (r["OBS_VALUE"], r["OBS_STATUS"])
               for r in sdmx if "IRREGULAR_CROSSING_PERSONS" in r["DATAFLOW"]}  # fmt: skip
    assert persons == {
        ("2014-01", "sy"): ("13", "A"),
        ("2014-01", "af"): ("4", "A"),
        ("2014-01", "unknown"): ("4", "A"),
        ("2014-02", "af"): ("", "C"),
    }
    asylum = [(r["TIME_PERIOD"], r["OBS_VALUE"], r["NATIONALITY"]) for r in sdmx
              if "ASYLUM" in r["DATAFLOW"]]  # fmt: skip
    assert asylum == [("2014-01", "9", "_Z")]

    _bus(env, "stats", "chart", "irregular-crossing-persons", "--by", "nationality",
         "--out", str(tmp_path / "charts"))  # fmt: skip
    png = (tmp_path / "charts" / "irregular-crossing-persons.png").read_bytes()
    svg = (tmp_path / "charts" / "irregular-crossing-persons.svg").read_text("utf-8")
    assert png.startswith(b"\x89PNG")
    assert "<svg" in svg


def _shown(text: str) -> dict[tuple[str, ...], str]:
    """The rows of a `bus stats show` table: dimension values -> the value printed."""
    out: dict[tuple[str, ...], str] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("│")[1:-1]]
        if fields and fields[0].startswith("2014-"):
            out[tuple(fields[1:-1])] = fields[-1]
    return out


async def test_secondary_suppression_through_kafka_and_the_command_line(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    """docs/statistics.md, "Worked example: secondary suppression": no `--by` and no export
    gives af at Tabanovce (2) back, and every one marks the cells hidden to protect it alike."""
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    await create_topics(settings, settings.topics.ingress("rs", "irregular-crossing"))
    await _publish(settings, secondary_example())
    env = _env(settings, tmp_path / "data")
    await asyncio.to_thread(_bus, env, "index", "rebuild")

    def show(*by: str) -> dict[tuple[str, ...], str]:
        args = [a for d in by for a in ("--by", d)]
        return _shown(_bus(env, "stats", "show", "irregular-crossing-persons", *args))

    t, m = "Tabanovce", "Miratovac"
    assert show("nationality", "border_section") == {
        ("af", m): "·", ("af", t): "·", ("iq", m): "·", ("iq", t): "·",
        ("sy", m): "7", ("sy", t): "12",
    }  # fmt: skip
    assert show("border_section", "nationality")[(t, "af")] == "·"
    assert show("nationality") == {("af",): "8", ("iq",): "9", ("sy",): "19"}
    assert show("border_section") == {(m,): "17", (t,): "19"}
    assert show()[("rs", "af", t, "mk-rs")] == "·"

    _bus(env, "stats", "export", "--format", "sdmx-csv", "--out", str(tmp_path / "s.csv"))
    with (tmp_path / "s.csv").open(encoding="utf-8", newline="") as f:
        sdmx = {(r["NATIONALITY"], r["BORDER_SECTION"]): (r["OBS_VALUE"], r["OBS_STATUS"])
                for r in csv.DictReader(f) if "CROSSING_PERSONS" in r["DATAFLOW"]}  # fmt: skip
    assert sdmx == {
        ("af", m): ("", "C"), ("af", t): ("", "C"), ("iq", m): ("", "C"), ("iq", t): ("", "C"),
        ("sy", m): ("7", "A"), ("sy", t): ("12", "A"),
    }  # fmt: skip
    _bus(env, "stats", "export", "--format", "json", "--out", str(tmp_path / "s.json"))
    data = json.loads((tmp_path / "s.json").read_text("utf-8"))
    (persons,) = [i for i in data["indicators"] if i["id"] == "irregular-crossing-persons"]
    hidden = sorted((o["nationality"], o["border_section"]) for o in persons["observations"]
                    if o["suppressed"] and o["value"] is None)  # fmt: skip
    assert hidden == [("af", m), ("af", t), ("iq", m), ("iq", t)]


def _stream() -> list[Alert]:
    """Alerts of two countries with updates, cancellations, duplicates and an exercise."""
    alerts: list[Alert] = []
    for i in range(900):
        origin = ("rs", "mk")[i % 2]
        day = f"2014-{1 + i % 12:02d}-{1 + i % 28:02d}"
        a = crossing(day, 3 + i % 17, {"sy": 1 + i % 5}, i % 4, case_ref=f"C-{i}")
        a = a.model_copy(update={"header": a.header.model_copy(update={"origin": origin})})
        alerts.append(a)
        if i % 5 == 0:
            alerts.append(crossing(day, 40 + i % 7, {"af": 2}, 1, msg_type="UPDATE",
                                   references=[str(a.alert_id)], case_ref=f"C-{i}"))  # fmt: skip
            alerts[-1] = alerts[-1].model_copy(update={"header": alerts[-1].header.model_copy(
                update={"origin": origin})})  # fmt: skip
        if i % 7 == 0:
            alerts.append(a)  # a duplicate
    for i in range(100):
        arrest = make_alert("trafficking-arrest", ("rs", "mk")[i % 2], case_ref=f"T-{i}",
                            occurred_at=datetime(2014, 1 + i % 12, 3, tzinfo=UTC))  # fmt: skip
        alerts.append(arrest)
        if i % 9 == 0:
            alerts.append(
                make_alert(
                    "trafficking-arrest",
                    arrest.origin,
                    msg_type="CANCEL",
                    references=[str(arrest.alert_id)],
                    case_ref=f"T-{i}",
                )
            )
    return alerts


async def test_index_and_statistics_killed_mid_stream_equal_an_uninterrupted_run(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    await create_topics(
        settings,
        *(
            settings.topics.ingress(cc, t)
            for cc in ("rs", "mk")
            for t in ("irregular-crossing", "trafficking-arrest")
        ),
    )
    alerts = _stream()
    await _publish(settings, alerts)
    total = len(alerts)

    killed = tmp_path / "killed"
    env = _env(settings, killed, BUS_INDEX_MAX_BATCH="20")
    database = killed / "index.sqlite3"

    def consumed() -> int:
        if not database.exists():
            return 0
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            try:
                return int(conn.execute("SELECT coalesce(sum(next_offset), 0) FROM offsets")
                           .fetchone()[0])  # fmt: skip
            except sqlite3.OperationalError:  # the tables are not there yet
                return 0

    async def run_until(condition: int, *, kill: bool) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "bus", "index", "run", "--no-http"],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = asyncio.get_running_loop().time() + 120
            while consumed() < condition:
                assert asyncio.get_running_loop().time() < deadline, f"stuck at {consumed()}"
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        finally:
            proc.wait(60)
        return consumed()

    first = await run_until(total // 3, kill=True)
    assert 0 < first < total, "killed after everything was read: no test of a restart"
    second = await run_until(2 * total // 3, kill=True)
    assert second < total
    assert await run_until(total, kill=False) == total

    whole = IndexService(settings, IndexSettings(data_dir=tmp_path / "whole"))
    await whole.catch_up()
    after = IndexStore.open(database, readonly=True)
    assert after.snapshot() == whole.store.snapshot()
    for ind in INDICATORS:
        assert stats_table(after, ind.id, min_cell=1) == stats_table(whole.store, ind.id,
                                                                     min_cell=1)  # fmt: skip
    counts = after.counts()
    assert counts["facts"] > 0
    assert counts["entries"] > 0
