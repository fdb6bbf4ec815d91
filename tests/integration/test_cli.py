"""The `bus` command as an operator uses it, against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bus import BusSettings
from bus.kafka import read_to_end
from bus.schemas import SchemaRegistry
from tests.conftest import REPO
from tests.integration.test_pubsub import prefixed


def bus(settings: BusSettings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BUS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "BUS_KEYS_DIR": str(settings.keys_dir),
        "BUS_TOPIC_PREFIX": settings.topic_prefix,
        "BUS_COUNTRIES": '["rs","mk"]',
        "BUS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bus", *args], env=env, cwd=REPO, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


async def test_keys_topics_publish_tail_and_audit_from_the_command_line(
    settings: BusSettings, keys_dir: Path, tmp_path: Path
) -> None:
    settings = prefixed(settings)
    bus(settings, "keys", "generate", "rs")
    assert (keys_dir / "rs.key").stat().st_mode & 0o777 == 0o600
    refused = bus(settings, "keys", "generate", "rs", check=False)
    assert refused.returncode == 1
    assert "--force" in refused.stderr

    first = bus(settings, "topics", "apply")
    assert "created" in first.stderr
    again = bus(settings, "topics", "apply")
    assert ", 0 created" in again.stderr  # idempotent
    names = settings.topics
    for inbox in ("europol", "frontex", "jc-tabanovce"):  # partners of the agreements file
        assert f"created {names.inbox(inbox)}" in first.stderr
    # The joint index's topics: its audit chain, requests and answers of each requester only.
    for topic in (names.lookup_audit, names.lookup_requests("europol"),
                  names.lookup_answers("europol")):  # fmt: skip
        assert f"created {topic}" in first.stderr
    assert names.lookup_requests("frontex") not in first.stderr
    schemas = await read_to_end(settings, names.schemas)
    registry = SchemaRegistry.load(REPO / "schemas")
    assert {r.key.decode() for r in schemas} == {sv.fingerprint_hex for sv in registry}

    example = REPO / "examples" / "alerts" / "irregular-crossing.json"
    published = bus(settings, "publish", "--origin", "rs", str(example))
    result = json.loads(published.stdout)
    assert result["topic"] == names.ingress("rs", "irregular-crossing")

    wrong = bus(settings, "publish", "--origin", "mk", str(example), check=False)
    assert wrong.returncode == 1
    assert "header.origin 'rs'" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    broken = tmp_path / "readmission.json"
    data = json.loads((REPO / "examples" / "alerts" / "readmission.json").read_text())
    data["header"]["tlp"] = "PURPLE"
    broken.write_text(json.dumps(data))
    invalid = bus(settings, "publish", "--origin", "rs", str(broken), check=False)
    assert invalid.returncode == 1
    assert "header.tlp" in invalid.stderr

    tailed = bus(settings, "tail", result["topic"], "--from-beginning", "--max", "1")
    line = json.loads(tailed.stdout)
    assert line["verified"] is True
    assert line["alert"]["header"]["alert_id"] == result["alert_id"]


def test_audit_verify_reports_the_first_broken_index_of_an_export(
    tmp_path: Path, offline_settings: BusSettings
) -> None:
    from bus.audit import AuditChain

    chain = AuditChain()
    records = [
        chain.append({"alert_id": f"a{i}", "partner": "mk", "decision": "delivered"})
        for i in range(10)
    ]
    good = tmp_path / "audit.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in records))
    ok = bus(offline_settings, "audit", "verify", "--file", str(good))
    assert ok.stdout.startswith("OK: 10 audit record(s)")
    records[6]["partner"] = "europol"
    bad = tmp_path / "tampered.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in records))
    broken = bus(offline_settings, "audit", "verify", "--file", str(bad), check=False)
    assert broken.returncode == 1
    assert "BROKEN at index 6" in broken.stdout
    shown = bus(offline_settings, "audit", "show", "--alert", "a6", "--file", str(bad))
    assert "europol" in shown.stdout
