"""The joint index on a real broker: lookups as agreed, over Kafka, HTTP and the command line;
owners told by hit notices; every lookup in a verifiable audit chain; nothing personal leaks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bus import AlertCodec, BusSettings, KeyRing, SchemaRegistry
from bus.audit import verify_chain
from bus.envelope import ReceivedNotice, open_message
from bus.kafka import read_to_end
from bus.models import HitNotice
from services.index.client import LookupFailed, lookup_over_kafka
from services.index.http import make_app
from services.index.responder import read_lookup_audit
from services.index.stats import write_export
from services.index.store import IndexStore
from tests.conftest import REPO
from tests.integration.conftest import prefixed
from tests.integration.index_support import (
    AGREEMENTS,
    PETROVIC,
    example_agreements,
    feed_samples,
    index_topics,
    running_index,
)
from tests.integration.test_adapters import open_all, read_all
from tests.unit.test_adapters_countries import persons

UNKNOWN = "it1." + "0" * 32
HTTP_TOKENS = {"europol": "europol-" + "e" * 32, "frontex": "frontex-" + "f" * 32}


def owners(result: Any) -> set[str]:
    return {h.owner for h in result.hits}


async def test_a_person_in_the_serbian_and_greek_feeds_hits_as_agreed(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    agreements = example_agreements(settings)
    await index_topics(settings, agreements)
    ingress = await feed_samples(settings, tmp_path, "rs", "gr")
    async with running_index(settings, tmp_path / "data") as service:
        # Over Kafka, as the command line asks.
        both = await lookup_over_kafka(settings, "europol", [PETROVIC, UNKNOWN])
        only_rs = await lookup_over_kafka(settings, "jc-tabanovce", [PETROVIC])
        # Austria asks about crossings and readmissions only: it sees the Greek crossing
        # where Petrović was a facilitator, not the Serbian trafficking arrest.
        route = await lookup_over_kafka(settings, "at", [PETROVIC, UNKNOWN])
        # No lookup agreement names Frontex: it has no lookup topics to ask on.
        with pytest.raises(LookupFailed, match="requester"):
            await lookup_over_kafka(settings, "frontex", [PETROVIC], timeout_s=5)
        assert owners(both.results[0]) == {"rs", "gr"}
        assert owners(only_rs.results[0]) == {"rs"}
        assert both.results[1].hit is False
        assert owners(route.results[0]) == {"gr"}
        assert {h.alert_type for h in route.results[0].hits} <= {
            "irregular-crossing",
            "readmission",
        }
        assert route.results[1].hit is False
        rs_hit = next(h for h in both.results[0].hits if h.owner == "rs")
        assert (rs_hit.alert_type, rs_hit.role) == ("trafficking-arrest", "suspect")
        assert rs_hit.contact

        # Over HTTP: the same answers; credentials decide who asks.
        transport = httpx.ASGITransport(
            app=make_app(service, {k: SecretStr(v) for k, v in HTTP_TOKENS.items()})
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://index") as http:
            auth = {"Authorization": f"Bearer {HTTP_TOKENS['europol']}"}
            got = (await http.post("/v1/lookup", json={"tokens": [PETROVIC, UNKNOWN]},
                                   headers=auth)).json()  # fmt: skip
            assert got["results"] == [r.model_dump(mode="json") for r in both.results]
            frontex = {"Authorization": f"Bearer {HTTP_TOKENS['frontex']}"}
            got = (await http.post("/v1/lookup", json={"tokens": [PETROVIC]},
                                   headers=frontex)).json()  # fmt: skip
            assert got["results"] == [{"token": PETROVIC, "hit": False, "hits": []}]
            assert (await http.get("/openapi.json")).json()["paths"]["/v1/lookup"]

        # The command line: a token computed from the names, in Greek script this time.
        env = {**os.environ, "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
               "BUS_TOPIC_PREFIX": settings.topic_prefix, "BUS_KEYS_DIR": str(settings.keys_dir),
               "BUS_AGREEMENTS": str(AGREEMENTS), "BUS_LOG_LEVEL": "WARNING"}  # fmt: skip
        # The service runs in this event loop: the command line must not block it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bus", "lookup", "--as", "europol", "--family-name",
            "Πέτροβιτς", "--given-names", "Μάρκο", "--date-of-birth", "1984-03-15",
            "--nationality", "rs", "--dev-identity-key", UNKNOWN,
            env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, errs = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, errs.decode()
        cli_stdout = out.decode()
        lines = [json.loads(line) for line in cli_stdout.splitlines()]
        assert [line["token"] for line in lines] == [UNKNOWN, PETROVIC]
        assert lines[1] == both.results[0].model_dump(mode="json")
        assert lines[0]["hit"] is False

    # Each owner of a hit finds a hit notice, signed by the hub, naming requester and alerts.
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    keyring = KeyRing(settings.keys_dir)
    notices: dict[str, list[HitNotice]] = {}
    for cc in ("rs", "gr", "mk"):
        for r in await read_to_end(settings, settings.topics.inbox(cc)):
            received = open_message(
                codec, keyring, names=settings.topics, topic=r.topic, partition=r.partition,
                offset=r.offset, key=r.key, value=r.value, headers=r.headers,
            )  # fmt: skip
            assert isinstance(received, ReceivedNotice)
            assert isinstance(received.notice, HitNotice)
            notices.setdefault(cc, []).append(received.notice)
    assert set(notices) == {"rs", "gr"}
    assert {n.requester for n in notices["rs"]} == {"europol", "jc-tabanovce"}
    assert {n.requester for n in notices["gr"]} == {"europol", "at"}
    to_gr = {n.requester: n for n in notices["gr"]}
    gr_alerts = {h.alert_id for h in both.results[0].hits if h.owner == "gr"}
    assert set(to_gr["europol"].alert_ids) == gr_alerts
    assert to_gr["europol"].agreement_ids == ["europol-trafficking-lookups"]
    assert to_gr["at"].agreement_ids == ["balkan-route-migrants-2018"]

    # Every lookup is in the lookup audit chain, which verifies; so does `bus audit verify`.
    audit = await read_lookup_audit(settings)
    assert [(a["requester"], a["channel"], a["tokens"], a["hits"]) for a in audit] == [
        ("europol", "kafka", 2, 1), ("jc-tabanovce", "kafka", 1, 1), ("at", "kafka", 2, 1),
        ("europol", "http", 2, 1), ("frontex", "http", 1, 0), ("europol", "kafka", 2, 1),
    ]  # fmt: skip
    assert audit[1]["agreements"] == ["jc-tabanovce-lookups"]
    assert verify_chain(audit).ok
    verify = subprocess.run([sys.executable, "-m", "bus", "audit", "verify"], env=env,
                            capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "lookups: OK: 6 audit record(s)" in verify.stdout

    # Nothing personal from the feeds in an answer, a notice, the index file or the statistics.
    personal: set[str] = set()
    for alert in open_all(settings, await read_all(settings, ingress)):
        for p in persons(alert):
            personal |= {v for v in (p.family_name, p.given_names, p.family_name_original,
                                     p.given_names_original) if v}  # fmt: skip
            if p.date_of_birth:
                personal |= {p.date_of_birth.isoformat(), p.date_of_birth.strftime("%d.%m.%Y")}
            if p.travel_document and p.travel_document.number:
                personal.add(p.travel_document.number)
    assert "Петровић" in personal
    # The database file and its write-ahead log (where the last commits may still be).
    db = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("index.sqlite3*"))
    assert PETROVIC is not None
    assert PETROVIC.encode() in db  # the check looks where the entries are
    store = IndexStore.open(tmp_path / "data" / "index.sqlite3", readonly=True)
    for fmt in ("csv", "json", "sdmx-csv"):
        write_export(store, tmp_path / f"stats.{fmt}", fmt, min_cell=1)
        db += (tmp_path / f"stats.{fmt}").read_bytes()
    outputs = json.dumps([r.model_dump(mode="json") for a in (both, only_rs) for r in a.results],
                         ensure_ascii=False) + cli_stdout  # fmt: skip
    outputs += "".join(n.model_dump_json() for ns in notices.values() for n in ns)
    leaks = sorted(v for v in personal if v in outputs or v.encode() in db)
    assert leaks == []


async def test_bad_lookups_get_a_clear_error_and_the_service_carries_on(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    await index_topics(settings, example_agreements(settings))
    async with running_index(settings, tmp_path / "data") as service:
        # Over Kafka: garbage, a request as someone else, a malformed token.
        from aiokafka import AIOKafkaProducer

        from bus.codec import AlertCodec as Codec
        from bus.kafka import iter_records

        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        codec = Codec(SchemaRegistry.load(settings.schemas_dir))
        topic = settings.topics.lookup_requests("europol")
        as_other = codec.encode_record("lookup-request", {
            "request_id": "9a1e8f2c-58b4-4d2e-9f0a-0c1d2e3f4a5b", "requester": "rs",
            "tokens": [UNKNOWN]})  # fmt: skip
        bad_token = codec.encode_record("lookup-request", {
            "request_id": "0b1e8f2c-58b4-4d2e-9f0a-0c1d2e3f4a5b", "requester": "europol",
            "tokens": ["Petrović Marko 1984"]})  # fmt: skip
        for value in (b"not avro at all", as_other, bad_token):
            await producer.send_and_wait(topic, value)
        await producer.stop()
        with pytest.raises(LookupFailed, match="requester"):
            await lookup_over_kafka(settings, "nobody", [UNKNOWN], timeout_s=5)
        ok = await lookup_over_kafka(settings, "europol", [UNKNOWN])  # still answering
        assert ok.results[0].hit is False
        errors = []
        async for batch in iter_records(settings, f"{settings.topic_prefix}lookup.europol.answers"):
            for r in batch:
                _, record = codec.decode_record(r.value)
                if record["error"]:
                    errors.append(record["error"])
        assert len(errors) == 3  # in any order: the requests went to random partitions
        for problem in ("Not a lookup-request record", "names requester 'rs'",
                        "expected an identity token"):  # fmt: skip
            assert any(problem in e for e in errors), (problem, errors)
        assert not any("Petrović" in e for e in errors)

        # Over HTTP: unknown requester, malformed token, too many tokens, malformed body.
        transport = httpx.ASGITransport(app=make_app(service, {"europol": SecretStr("t" * 40)}))
        async with httpx.AsyncClient(transport=transport, base_url="http://index") as http:
            auth = {"Authorization": "Bearer " + "t" * 40}
            r = await http.post("/v1/lookup", json={"tokens": [UNKNOWN]},
                                headers={"Authorization": "Bearer nobody"})  # fmt: skip
            assert r.status_code == 401
            assert "bearer token" in r.json()["detail"]
            r = await http.post("/v1/lookup", json={"tokens": ["it1.xyz"]}, headers=auth)
            assert r.status_code == 400
            assert "expected an identity token" in r.json()["detail"]
            r = await http.post("/v1/lookup", json={"tokens": [UNKNOWN] * 1001}, headers=auth)
            assert r.status_code == 413
            assert "1001 tokens" in r.json()["detail"]
            r = await http.post("/v1/lookup", content=b"{not json", headers=auth)
            assert r.status_code == 422
            r = await http.post("/v1/lookup", json={"tokens": [UNKNOWN]}, headers=auth)
            assert r.status_code == 200


async def test_concurrent_lookups_across_a_restart_make_one_unbroken_audit_chain(
    settings: BusSettings, country_keys: Path, tmp_path: Path
) -> None:
    """Lookups committed back to back (group commit, two producers taking turns) and a restart
    in between: every lookup is in the chain once, in one sequence that verifies."""
    settings = prefixed(settings).model_copy(update={"agreements": AGREEMENTS})
    await index_topics(settings, example_agreements(settings))
    asked: list[str] = []
    for _restart in range(2):
        async with running_index(settings, tmp_path / "data") as service:
            answers = await asyncio.gather(*(
                service.lookup("europol", [UNKNOWN], channel="http") for _ in range(12)
            ))  # fmt: skip
            for answer in answers:  # one after another too: the producers alternate
                asked.append(str(answer.request_id))
            for _ in range(3):
                asked.append(str((await service.lookup("europol", [UNKNOWN],
                                                       channel="http")).request_id))  # fmt: skip
    audit = await read_lookup_audit(settings)
    assert sorted(r["lookup_id"] for r in audit) == sorted(asked)
    assert len(asked) == 30
    assert verify_chain(audit).ok
