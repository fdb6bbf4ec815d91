"""The single broker frozen (SIGSTOP) for two minutes under load, then resumed (SIGCONT).

A frozen broker is worse than a dead one: its port still accepts connections, and nothing
answers on them. Each publish call returns or raises a clear timeout within its configured
timeout, an operator's command fails with a clear error instead of hanging, and the fan-out
(`bus fanout run`, as a user runs it) neither dies nor hangs: once the broker is back, it
carries on by itself, and every acknowledged alert reaches each entitled partner exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import BusSettings
from bus.errors import PublishTimeout
from bus.kafka.local import LocalKafka
from tests.conftest import REPO
from tests.integration.chaos.support import (
    ORIGINS,
    Bus,
    Stream,
    assert_delivered_exactly_once,
    progress_or_zero,
    resume_all,
    wait_for,
)
from tests.integration.fanout_support import load_example_agreements
from tests.integration.ports import free_port_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

AGREEMENTS = load_example_agreements()
PARTNERS = sorted(AGREEMENTS.partners)
FROZEN_S = 120
#: The publisher's own timeouts: short, so that the two minutes hold many timed-out calls.
TIMEOUT_MS = 5_000
#: What a call may take beyond its timeout: the event loop's own latency on a busy machine.
SLACK_S = 1.5


@pytest.fixture
def broker(chaos_bus: Bus) -> Iterator[Bus]:
    port = free_port_run(2)
    chaos_bus.env |= {"BUS_KAFKA_PORT": str(port), "BUS_KAFKA_CONTROLLER_PORT": str(port + 1)}
    data_dir = Path(chaos_bus.env["BUS_KAFKA_DATA_DIR"])
    try:
        yield chaos_bus
    finally:
        chaos_bus.stop_processes()
        pid_file = data_dir / "broker.pid"
        if pid_file.exists():
            resume_all([int(pid_file.read_text())])
        LocalKafka(
            BusSettings(kafka_data_dir=data_dir, kafka_port=port, kafka_controller_port=port + 1)
        ).stop()


async def test_the_broker_frozen_two_minutes_under_load_blocks_nothing_and_loses_nothing(
    broker: Bus, keys_dir: Path
) -> None:
    bootstrap = broker.check("kafka", "start").strip().splitlines()[-1]
    broker.env["BUS_BOOTSTRAP_SERVERS"] = bootstrap
    broker.check("topics", "apply")
    settings = BusSettings(
        bootstrap_servers=bootstrap, keys_dir=keys_dir, schemas_dir=REPO / "schemas",
        agreements=Path(broker.env["BUS_AGREEMENTS"]), countries=ORIGINS,
        publish_timeout_ms=TIMEOUT_MS, request_timeout_ms=TIMEOUT_MS,
        connect_timeout_ms=TIMEOUT_MS,
    )  # fmt: skip
    fanout = broker.fanout()
    stream = Stream(settings, AGREEMENTS, batch=20, pause_s=0.1)
    publishing = asyncio.create_task(stream.run())
    pid = int((Path(broker.env["BUS_KAFKA_DATA_DIR"]) / "broker.pid").read_text())
    try:
        await wait_for(lambda: len(stream.acked) >= 400 or publishing.done(), 120,
                       "400 alerts acknowledged")  # fmt: skip
        await wait_for(lambda: _above(settings, 0), 120, "the fan-out writing inboxes")

        os.kill(pid, signal.SIGSTOP)
        frozen_at = asyncio.get_running_loop().time()
        at_freeze = len(stream.acked)
        # An operator's command meanwhile fails, within its own timeouts, saying why.
        started = time.monotonic()
        verify = await asyncio.to_thread(
            broker.run, "audit", "verify", timeout_s=FROZEN_S - 10
        )  # fmt: skip
        verify_took_s = time.monotonic() - started
        await asyncio.sleep(FROZEN_S - (asyncio.get_running_loop().time() - frozen_at))
        assert fanout.poll() is None, broker.fanout_log()[-3000:]
        assert not publishing.done(), "the publisher goes on through the outage"
        os.kill(pid, signal.SIGCONT)
        resumed_at = asyncio.get_running_loop().time()
        at_resume = len(stream.acked)

        await wait_for(lambda: len(stream.acked) >= at_resume + 400 or publishing.done(), 180,
                       "400 more alerts acknowledged after the broker came back")  # fmt: skip
        assert not publishing.done(), publishing.exception()
        stream.stop.set()
        await asyncio.wait_for(publishing, 120)
    finally:
        resume_all([pid])
        stream.stop.set()
        publishing.cancel()

    # Nothing was acknowledged while the broker was frozen (an acknowledgement means Kafka has
    # it), and no call took longer than its timeout allows.
    assert at_resume - at_freeze <= stream.batch
    slowest = max(stream.calls, key=lambda c: c.took_s)
    assert slowest.took_s <= TIMEOUT_MS / 1000 + SLACK_S, slowest
    during = [c for c in stream.calls if frozen_at <= c.started < resumed_at]
    assert len(during) >= FROZEN_S // (TIMEOUT_MS / 1000) // 2, "the publisher kept trying"
    assert all(isinstance(c.error, PublishTimeout) for c in during[:-1]), during
    assert "no answer from Kafka within 5000 ms" in str(during[0].error)

    assert verify.returncode != 0, verify.stdout
    assert verify_took_s < 60, (
        f"bus audit verify took {verify_took_s:.0f} s against a frozen broker"
    )
    assert "Kafka" in verify.stderr + verify.stdout, verify.stderr

    await assert_delivered_exactly_once(broker, settings, stream)
    # The same fan-out process, never restarted, did all of it; and it still stops when told.
    assert fanout.poll() is None, broker.fanout_log()[-3000:]
    fanout.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert await asyncio.to_thread(fanout.wait, 60) == 0, broker.fanout_log()[-3000:]
    assert time.monotonic() - stopping < 30
    # No client of a failed session outlived it (still retrying what it held, at exit).
    assert "Task was destroyed but it is pending" not in broker.fanout_log()


async def _above(settings: BusSettings, mark: int) -> bool:
    return await progress_or_zero(settings, PARTNERS) > mark
