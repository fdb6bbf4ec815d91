"""The fan-out killed with SIGKILL at random moments, five times, and restarted: still exact."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from pathlib import Path

from bus import BusSettings
from bus.admin import read_audit
from bus.audit import verify_chains
from tests.integration.fanout_support import (
    agreements_keys,
    check_inboxes,
    expected_inboxes,
    fanout_settings,
    fanout_topics,
    load_example_agreements,
    publish_all,
    read_inboxes,
    start_fanout_process,
    varied_alerts,
    wait_caught_up,
)
from tests.integration.test_pubsub import prefixed

AGREEMENTS = load_example_agreements()


async def _wait_for_ready(log: Path, times: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the log shows the service ready for the ``times``-th time (it restored its state)."""
    deadline = asyncio.get_running_loop().time() + 60
    while log.read_text().count('"fanout_ready"') < times:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert asyncio.get_running_loop().time() < deadline, "the fan-out did not get ready"
        await asyncio.sleep(0.05)


async def test_fanout_killed_five_times_still_delivers_exactly_the_entitled_set(
    settings: BusSettings, keys_dir: Path, tmp_path: Path
) -> None:
    settings = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(settings, AGREEMENTS)
    alerts = varied_alerts(10_000, AGREEMENTS, seed=9)
    await publish_all(settings, alerts)

    rng = random.Random(17)
    log = tmp_path / "fanout.log"
    kills = 0
    for n in range(1, 6):
        proc = start_fanout_process(settings, log)
        await _wait_for_ready(log, n, proc)
        await asyncio.sleep(rng.uniform(0.2, 2.0))  # a random moment: the point of the test
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    proc = start_fanout_process(settings, log)
    try:
        # Wait for it to be ready first: a predecessor may already have caught up.
        await _wait_for_ready(log, 6, proc)
        await wait_caught_up(settings, f"{settings.topic_prefix}bus-fanout", timeout_s=300)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert kills == 5
    assert log.read_text().count('"fanout_ready"') == 6

    expected = expected_inboxes(alerts, AGREEMENTS)
    total = sum(len(v) for v in expected.values())
    actual = await read_inboxes(settings, sorted(AGREEMENTS.partners), expect=total)
    assert check_inboxes(actual, expected) == total

    audit = await read_audit(settings)
    assert all(v.ok for v in verify_chains(audit).values())
    assert len(audit) == len(alerts)  # one record per alert: none lost, none twice
    assert len({(r["origin"], r["alert_id"]) for r in audit}) == len(alerts)
