"""A misbehaving member against a running adapter and the real broker.

Into each country's drop folder go a symbolic link and a hard link to the adapter's own private
key, a FIFO, a directory holding more links, a record nested 5,000 levels deep (where the format
nests) and head counts of 3,000,000,000 and 10**20. The adapter keeps running, sets each aside
with its reason, publishes the good records, and the key's bytes appear nowhere in ``bus.dlq``
or ``quarantine/``.
"""

# ruff: noqa: RUF001  (Cyrillic letters are meant)

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bus import BusSettings
from services.adapters.dropfolder import DropFolder
from services.adapters.http import create_app
from services.adapters.mapping import CountryMapping
from tests.hostile_feeds import FIELDS, NESTING, deep_file, numbers_file, sample_records, suffix
from tests.integration.conftest import prefixed
from tests.integration.test_adapters import adapter, adapter_topics, open_all, read_all
from tests.unit.test_adapters_countries import sample_feed

HEAD_COUNTS = [3_000_000_000, 10**20]
DEPTH = 5_000
REFUSED = {
    "key": "a symbolic link; the adapter reads only regular files dropped here",
    "hardkey": "a hard link (one of 2 names of the same file); the adapter reads only regular "
    "files dropped here: copy the file in, do not link it",
    "pipe": "a FIFO (named pipe); the adapter reads only regular files dropped here",
    "folder": "a directory; the adapter reads only regular files dropped here",
}


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def report(drop: Path, name: str) -> list[dict[str, Any]]:
    path = drop / "quarantine" / f"{name}.report.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def walk_without_following(top: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry below ``top`` with its lstat; links are listed, never followed."""
    for folder, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            yield path, os.lstat(path)


@pytest.mark.parametrize("cc", ["ba", "gr", "me", "mk", "rs"])
async def test_a_hostile_drop_folder_is_set_aside_entry_by_entry_and_the_key_leaks_nowhere(
    cc: str, settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, cc)
    key = country_keys / f"{cc}.key"  # the adapter's own private key: it can read it
    secret = key.read_bytes()
    secrets = [secret.strip(), base64.b64decode(secret.strip())]  # the file, the raw seed
    drop = tmp_path / "drop"
    drop.mkdir()
    ext = suffix(cc)

    (drop / f"key{ext}").symlink_to(key)
    os.link(key, drop / f"hardkey{ext}")
    os.mkfifo(drop / f"pipe{ext}")  # nobody writes: opening it to read would block
    (drop / f"folder{ext}").mkdir()
    (drop / f"folder{ext}" / f"inner{ext}").symlink_to(key)
    os.link(key, drop / f"folder{ext}" / f"inner-hard{ext}")
    (drop / f"numbers{ext}").write_bytes(numbers_file(cc, HEAD_COUNTS))
    if cc in NESTING:
        (drop / f"deep{ext}").write_bytes(deep_file(cc, DEPTH))

    config = {"poll_interval_ms": 50, "settle_ms": 0}
    async with adapter(settings, cc, **config) as a, DropFolder(a, drop) as folder:
        stop = asyncio.Event()
        task = asyncio.create_task(folder.run(stop))
        try:
            own = {"done", "quarantine", ".state"}
            await wait_for(lambda: {p.name for p in drop.iterdir()} == own, 60, "every entry")
            # Still running; a good file dropped now is ingested as usual.
            (drop / f"later{ext}").write_bytes(sample_feed(cc).read_bytes())
            await wait_for(lambda: (drop / "done" / f"later{ext}").exists(), 60, "a good file")
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    # Each entry that is not a regular file: reported with why, removed, never read.
    for name, reason in REFUSED.items():
        [line] = report(drop, f"{name}{ext}")
        assert line["reason"] == reason
        assert line["record"] is None
    assert report(drop, f"key{ext}")[0]["link_target"] == str(key)
    assert not os.path.lexists(drop / "quarantine" / f"key{ext}")
    assert not os.path.lexists(drop / "quarantine" / f"hardkey{ext}")
    assert not os.path.lexists(drop / "quarantine" / f"pipe{ext}")
    assert sorted(p.name for p in (drop / "quarantine" / f"folder{ext}").iterdir()) == []
    assert key.read_bytes() == secret
    assert os.lstat(key).st_nlink == 1  # the other names are gone, the key is intact

    # The head counts no Avro int holds: each record set aside naming its native field.
    lines = report(drop, f"numbers{ext}")
    assert [(x["field"].rsplit(".", 1)[-1], x["reason"]) for x in lines] == [
        (FIELDS[cc].head_count,
         f"expected a number of at most 2147483647 (the largest Avro int), got {count}")
        for count in HEAD_COUNTS
    ]  # fmt: skip
    assert (drop / "done" / f"numbers{ext}").exists()

    # The record nested 5,000 levels: set aside alone (JSON Lines, XML), or its whole file
    # with it (a JSON document that deep is not parsed at all).
    if cc in ("ba", "me"):
        [line] = report(drop, f"deep{ext}")
        assert line["reason"] == "nested deeper than 32 levels"
        assert line["record"] == sample_records(cc) + 1
        assert (drop / "done" / f"deep{ext}").exists()
    elif cc in ("gr", "mk"):
        [line] = report(drop, f"deep{ext}")
        assert line["reason"].startswith("nested deeper than 256 levels, so the file is not read")
        assert line["record"] is None
        assert (drop / "quarantine" / f"deep{ext}").exists()

    # Every good record was published once, signed and valid.
    alerts = open_all(settings, await read_all(settings, topics))
    assert len(alerts) == sample_records(cc)
    assert len({al.alert_id for al in alerts}) == len(alerts)

    # The dead letters: one per refused entry (the reason, no value) and per record set aside.
    letters = await read_all(settings, [settings.topics.dlq])
    by_source: dict[str, list[Any]] = {}
    for letter in letters:
        headers = dict(letter.headers)
        by_source.setdefault(headers["bus-adapter-source"].decode(), []).append(letter)
        for secret_form in secrets:
            assert secret_form not in (letter.value or b"")
            assert secret_form not in (letter.key or b"")
            assert all(secret_form not in value for value in headers.values())
    for name, reason in REFUSED.items():
        [letter] = by_source[f"{name}{ext}"]
        headers = dict(letter.headers)
        assert letter.value is None
        assert headers["bus-dlq-error-class"] == b"NotRegular"
        assert headers["bus-dlq-error-message"].decode() == reason
    assert len(by_source[f"numbers{ext}"]) == len(HEAD_COUNTS)
    assert len(letters) == len(REFUSED) + len(HEAD_COUNTS) + (cc in NESTING)

    # Nothing in quarantine/ is a link to follow or holds the key's bytes.
    for path, st in walk_without_following(drop):
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), path
        assert stat.S_ISDIR(st.st_mode) or st.st_nlink == 1, path
        if stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
            assert all(secret_form not in content for secret_form in secrets), path


async def test_a_link_swapped_in_for_done_or_quarantine_stops_the_scan_with_a_clear_error(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    await adapter_topics(settings, "me")
    drop = tmp_path / "drop"
    drop.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (drop / "quarantine").symlink_to(elsewhere)
    async with adapter(settings, "me") as a:
        from services.adapters.errors import AdapterError

        with pytest.raises(AdapterError, match="quarantine is a symbolic link, not a directory"):
            DropFolder(a, drop)
        (drop / "quarantine").unlink()
        async with DropFolder(a, drop) as folder:
            (drop / "done").rmdir()
            (drop / "done").symlink_to(elsewhere)
            (drop / "a.jsonl").write_bytes(sample_feed("me").read_bytes())
            with pytest.raises(AdapterError, match="done is a symbolic link"):
                await folder.scan_once()
    assert list(elsewhere.iterdir()) == []
    assert (drop / "a.jsonl").exists()  # untouched, for when the folder is put right


# -- HTTP -------------------------------------------------------------------------------------

TOKEN = "mk-system-token-" + "y" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def mk_crossing() -> dict[str, Any]:
    records: list[dict[str, Any]] = json.loads(sample_feed("mk").read_text("utf-8"))["записи"]
    return next(r for r in records if r["тип"] == FIELDS["mk"].crossing)


async def test_http_answers_422_naming_depth_and_numbers_and_publishes_nothing(
    settings: BusSettings, country_keys: Path
) -> None:
    settings = prefixed(settings)
    topics = await adapter_topics(settings, "mk")
    async with adapter(settings, "mk") as a:
        app = create_app({"mk": a}, {"mk": SecretStr(TOKEN)})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            for levels in (DEPTH, 100_000):
                body = b'[{"x": ' + b"[" * levels + b"]" * levels + b"}]"
                response = await client.post("/v1/mk/alerts", content=body, headers=AUTH)
                assert response.status_code == 422, response.text
                [problem] = response.json()["detail"]
                assert problem["loc"] == ["body"]
                assert problem["msg"].startswith("line 1, column 262: nested deeper than 256")

            deep = '{"x": ' + "[" * 40 + "]" * 40 + "}"
            numbers = [{**mk_crossing(), "број_на_лица": n} for n in HEAD_COUNTS]
            body = f"[{json.dumps(mk_crossing(), ensure_ascii=False)}, {deep}, "
            body += ", ".join(json.dumps(n, ensure_ascii=False) for n in numbers) + "]"
            response = await client.post("/v1/mk/alerts", content=body.encode(), headers=AUTH)
            assert response.status_code == 422, response.text
            assert [(p["loc"], p["msg"]) for p in response.json()["detail"]] == [
                (["body", 1], "nested deeper than 32 levels"),
                *(
                    (["body", i + 2, "број_на_лица"],
                     f"expected a number of at most 2147483647 (the largest Avro int), got {n}")
                    for i, n in enumerate(HEAD_COUNTS)
                ),
            ]  # fmt: skip
    assert await read_all(settings, topics) == []


async def test_the_http_endpoint_answers_while_a_large_file_is_parsed_and_mapped(
    settings: BusSettings, country_keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing and mapping are made slow and blocking, as a very large file's would be: if they
    # ran on the event loop, the endpoint would not answer until they were done.
    settings = prefixed(settings)
    await adapter_topics(settings, "gr")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "large.json").write_bytes(sample_feed("gr").read_bytes())
    async with adapter(settings, "gr") as a, DropFolder(a, drop) as folder:
        feed_type = type(a.mapping.feed)
        slow_parse, slow_map = feed_type.parse, CountryMapping.map

        def parse(self: Any, data: bytes, limits: Any) -> Any:
            time.sleep(1.5)
            return slow_parse(self, data, limits)

        def map_record(self: CountryMapping, record: Any, ctx: Any) -> Any:
            time.sleep(0.05)
            return slow_map(self, record, ctx)

        monkeypatch.setattr(feed_type, "parse", parse)
        monkeypatch.setattr(CountryMapping, "map", map_record)
        app = create_app({"gr": a}, {"gr": SecretStr(TOKEN)})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            ingest = asyncio.create_task(folder.scan_once())
            # The ASGI app answers within this task: what a blocked event loop delays is this
            # task getting back to its next request, so the gaps between requests are measured.
            gaps, last = [], time.monotonic()
            while not ingest.done():
                assert (await client.get("/healthz")).status_code == 200
                await asyncio.sleep(0.02)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()
            [outcome] = await ingest
    assert outcome.published == sample_records("gr")
    assert len(gaps) >= 20  # the ingest took seconds, and the endpoint answered throughout
    assert max(gaps) < 0.5, gaps
