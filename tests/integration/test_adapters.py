"""National adapters against the real broker: sample feeds, broken records, tokens, HTTP."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import SecretStr

from bus import Alert, AlertCodec, BusSettings, KeyRing, SchemaRegistry
from bus.envelope import open_record
from bus.models import ALERT_TYPES
from services.adapters.adapter import Adapter
from services.adapters.dropfolder import DropFolder
from services.adapters.http import create_app
from services.adapters.identity import IdentityHasher
from services.adapters.mapping import load_mapping
from services.adapters.settings import AdapterSettings
from tests.integration.conftest import create_topics, prefixed
from tests.unit.test_adapters_countries import EXPECTED_TYPES, persons, sample_feed

PARTITIONS = 3


async def adapter_topics(settings: BusSettings, cc: str) -> list[str]:
    names = [settings.topics.ingress(cc, t) for t in ALERT_TYPES]
    await create_topics(settings, *names, settings.topics.dlq, partitions=PARTITIONS)
    return names


async def read_all(settings: BusSettings, topics: list[str]) -> list[ConsumerRecord[Any, Any]]:
    """Every committed record of ``topics``, read to their current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[Any, Any]] = []
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=5000)
            assert batch, f"no records within 5 s; still waiting for {sorted(map(str, remaining))}"
            for tp, items in batch.items():
                records += items
                if items[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def open_all(settings: BusSettings, records: list[ConsumerRecord[Any, Any]]) -> list[Alert]:
    """Decode and verify (signature and origin) every record."""
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    keyring = KeyRing(settings.keys_dir)
    return [
        open_record(
            codec, keyring, names=settings.topics, topic=r.topic, partition=r.partition,
            offset=r.offset, key=r.key, value=r.value, headers=r.headers,
        ).alert
        for r in records
    ]  # fmt: skip


def adapter(settings: BusSettings, cc: str, **config: Any) -> Adapter:
    return Adapter(
        settings,
        load_mapping(cc),
        identity=IdentityHasher.development(),
        config=AdapterSettings(**config),
    )


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path


@pytest.mark.parametrize("cc", sorted(EXPECTED_TYPES))
async def test_each_sample_feed_ingests_once_with_the_expected_alerts(
    cc: str, settings: BusSettings, country_keys: Path, drop: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, cc)
    feed = sample_feed(cc)
    shutil.copy(feed, drop / feed.name)

    async with adapter(settings, cc) as a, DropFolder(a, drop) as folder:
        [outcome] = await folder.scan_once()
        assert outcome.outcome == "done"
        assert dict(outcome.by_type) == EXPECTED_TYPES[cc]
        assert outcome.quarantined == 0
        assert (drop / "done" / feed.name).exists()
        assert not (drop / feed.name).exists()

        records = await read_all(settings, topics)
        alerts = open_all(settings, records)
        assert Counter(a.alert_type for a in alerts) == EXPECTED_TYPES[cc]
        assert all(r.topic == settings.topics.ingress(cc, al.alert_type)
                   for r, al in zip(records, alerts, strict=True))  # fmt: skip
        assert len({al.alert_id for al in alerts}) == len(alerts)

        # The same file again, under its own name and under another: nothing is published.
        shutil.copy(feed, drop / feed.name)
        shutil.copy(feed, drop / f"again-{feed.name}")
        outcomes = await folder.scan_once()
        assert [o.outcome for o in outcomes] == ["already_done", "already_done"]
        assert len(await read_all(settings, topics)) == len(records)
    assert not (await read_all(settings, [settings.topics.dlq]))


async def test_an_overlapping_export_publishes_only_the_new_records(
    settings: BusSettings, country_keys: Path, drop: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "rs")
    header, *rows = sample_feed("rs").read_text("utf-8").splitlines()
    (drop / "day1.csv").write_text("\n".join([header, *rows[:25]]) + "\n", "utf-8")
    (drop / "day2.csv").write_text("\n".join([header, *rows[15:]]) + "\n", "utf-8")
    async with adapter(settings, "rs") as a, DropFolder(a, drop) as folder:
        day1, day2 = await folder.scan_once()
    assert (day1.published, day1.skipped) == (25, 0)
    assert (day2.published, day2.skipped) == (len(rows) - 25, 10)
    assert len(await read_all(settings, topics)) == len(rows)


def break_rows(text: str) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """The Serbian sample with every fifth record broken; the broken (line → field, reason)."""
    reader = csv.DictReader(io.StringIO(text))
    names = list(reader.fieldnames or [])
    broken: dict[int, tuple[str, str]] = {}
    out = io.BytesIO()
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(names)
    out.write(header.getvalue().encode())
    for i, row in enumerate(reader):
        line, kind = i + 2, i // 5 % 4
        encoding = "utf-8"
        if i % 5 == 4:
            if kind == 0:
                row["орган"] = ""
                broken[line] = ("орган", "is missing")
            elif kind == 1:
                row["датум"] = "31.02.2014."
                broken[line] = ("датум", "expected a date like 31.12.2014. (dd.mm.yyyy.)")
            elif kind == 2:
                row["држављанство" if row["презиме"] else "правац_из"] = "Нарнија"
                field = "држављанство" if row["презиме"] else "правац_из"
                broken[line] = (field, "unknown country 'Нарнија'")
            else:
                encoding = "cp1251"  # this line was saved as Windows-1251
                broken[line] = ("ид_записа", "not valid UTF-8")
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=names, lineterminator="\n").writerow(row)
        out.write(buf.getvalue().encode(encoding))
    return out.getvalue(), broken


async def test_a_feed_with_a_fifth_broken_publishes_the_good_and_quarantines_the_bad(
    settings: BusSettings, country_keys: Path, drop: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "rs")
    data, broken = break_rows(sample_feed("rs").read_text("utf-8"))
    total = len(data.splitlines()) - 1
    assert len(broken) == total // 5
    (drop / "mixed.csv").write_bytes(data)

    async with adapter(settings, "rs", batch_size=7) as a, DropFolder(a, drop) as folder:
        [outcome] = await folder.scan_once()
    assert (outcome.published, outcome.quarantined) == (total - len(broken), len(broken))

    published = open_all(settings, await read_all(settings, topics))
    assert len(published) == total - len(broken)
    report = drop / "quarantine" / "mixed.csv.report.jsonl"
    lines = [json.loads(line) for line in report.read_text("utf-8").splitlines()]
    assert {int(x["position"].split()[1]): x["field"] for x in lines} == {
        line: field for line, (field, _) in broken.items()
    }
    for x in lines:
        assert broken[int(x["position"].split()[1])][1] in x["reason"]
        assert x["file"] == "mixed.csv"

    letters = await read_all(settings, [settings.topics.dlq])
    assert len(letters) == len(broken)
    for letter in letters:
        h = {k: v.decode("utf-8", "replace") for k, v in letter.headers}
        assert h["bus-dlq-stage"] == "adapter"
        assert h["bus-dlq-error-class"] == "RecordRejected"
        line = int(h["bus-adapter-position"].split()[1])
        assert h["bus-adapter-field"] == broken[line][0]
        assert letter.value  # the record as it was read


async def test_same_person_from_serbian_cyrillic_and_greek_feeds_has_one_token(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    tokens: dict[str, set[str]] = {}
    for cc in ("rs", "gr"):
        topics = await adapter_topics(settings, cc)
        folder_path = tmp_path / cc
        folder_path.mkdir()
        shutil.copy(sample_feed(cc), folder_path)
        async with adapter(settings, cc) as a, DropFolder(a, folder_path) as folder:
            await folder.scan_once()
        for alert in open_all(settings, await read_all(settings, topics)):
            for p in persons(alert):
                if p.family_name_original in ("Петровић", "Πέτροβιτς") and p.identity_token:
                    tokens.setdefault(cc, set()).add(p.identity_token)
    assert tokens["rs"] == tokens["gr"]
    assert len(tokens["rs"]) == 1


# -- HTTP --------------------------------------------------------------------------------------

TOKEN = "mk-system-token-" + "x" * 24


def mk_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(sample_feed("mk").read_text("utf-8"))["записи"]
    return records


@pytest.fixture
async def mk_http(
    settings: BusSettings, country_keys: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, BusSettings, list[str]]]:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "mk")
    async with adapter(settings, "mk") as a:
        app = create_app({"mk": a}, {"mk": SecretStr(TOKEN)})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            yield client, settings, topics


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_http_publishes_one_record_or_a_batch_and_answers_202_with_ids(
    mk_http: tuple[httpx.AsyncClient, BusSettings, list[str]],
) -> None:
    client, settings, topics = mk_http
    records = mk_records()
    one = await client.post("/v1/mk/alerts", json=records[0], headers=AUTH)
    assert one.status_code == 202, one.text
    batch = await client.post("/v1/mk/alerts", json=records[1:4], headers=AUTH)
    assert batch.status_code == 202, batch.text
    ids = one.json()["alert_ids"] + batch.json()["alert_ids"]
    assert len(ids) == 4
    assert batch.json()["results"][0]["topic"].startswith(settings.topic_prefix + "ingress.mk.")
    on_topic = open_all(settings, await read_all(settings, topics))
    assert sorted(str(a.alert_id) for a in on_topic) == sorted(ids)


async def test_http_422_names_the_field_and_publishes_nothing(
    mk_http: tuple[httpx.AsyncClient, BusSettings, list[str]],
) -> None:
    client, settings, topics = mk_http
    records = mk_records()[:3]
    with_persons = next(r for r in mk_records() if r.get("лица"))
    broken = json.loads(json.dumps(with_persons))
    broken["лица"][0]["датум_на_раѓање"] = "31/12/1990"
    response = await client.post("/v1/mk/alerts", json=[*records, broken], headers=AUTH)
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", 3, "лица[0].датум_на_раѓање"]
    assert "expected a date like 31.12.2014 (dd.mm.yyyy)" in problem["msg"]

    bad_json = await client.post(
        "/v1/mk/alerts", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"][0]["loc"] == ["body"]
    # NaN and Infinity are no JSON numbers: the body is refused as a feed file would be, whole,
    # the valid record before them included.
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        body = b"[" + json.dumps(records[0]).encode() + b', {"x": ' + constant + b"}]"
        refused = await client.post(
            "/v1/mk/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert refused.status_code == 422, constant
        [problem] = refused.json()["detail"]
        assert problem["type"] == "json_invalid"
        assert f"{constant.decode()} is not a JSON number" in problem["msg"]
    assert await read_all(settings, topics) == []


async def test_http_401_without_a_valid_token_and_openapi_served(
    mk_http: tuple[httpx.AsyncClient, BusSettings, list[str]],
) -> None:
    client, settings, topics = mk_http
    record = mk_records()[0]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await client.post("/v1/mk/alerts", json=record, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
    other = await client.post("/v1/rs/alerts", json=record, headers=AUTH)
    assert other.status_code == 404
    assert await read_all(settings, topics) == []

    spec = (await client.get("/openapi.json")).json()
    assert "/v1/{cc}/alerts" in spec["paths"]
    assert set(spec["paths"]["/v1/{cc}/alerts"]["post"]["responses"]) >= {"202", "401", "422"}
    assert (await client.get("/docs")).status_code == 200


async def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_the_watcher_takes_files_once_complete_and_leaves_partial_ones(
    settings: BusSettings, country_keys: Path, drop: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "me")
    lines = sample_feed("me").read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    config = {"poll_interval_ms": 50, "settle_ms": 0}
    async with adapter(settings, "me", **config) as a, DropFolder(a, drop) as folder:
        stop = asyncio.Event()
        task = asyncio.create_task(folder.run(stop))
        try:
            (drop / "b.jsonl.part").write_bytes(b"".join(lines[half:]))  # still being written
            (drop / "a.jsonl").write_bytes(b"".join(lines[:half]))
            await _wait_for(lambda: (drop / "done" / "a.jsonl").exists(), 30, "a.jsonl")
            assert (drop / "b.jsonl.part").exists()
            os.replace(drop / "b.jsonl.part", drop / "b.jsonl")  # the writer is done
            await _wait_for(lambda: (drop / "done" / "b.jsonl").exists(), 30, "b.jsonl")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    assert len(await read_all(settings, topics)) == len(lines)
