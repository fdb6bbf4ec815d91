"""Preparing alerts in worker processes (``BUS_PUBLISH_WORKERS``), without a broker.

What a publisher relies on: the workers make exactly the records this process would, in the
order given; the first alert that cannot be prepared is the error, whoever prepared it; and a
worker that dies or hangs costs time, never an alert.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from bus import BusSettings, generate_keypair
from bus.codec import AlertCodec
from bus.errors import BusError, ConfigError, OriginMismatch, SignatureError, ValidationError
from bus.keys import Signer
from bus.models import Alert
from bus.publishing import ChunkFailure, PreparingPool, Ready, frames, make_ready
from bus.schemas import SchemaRegistry
from tests.factories import make_alert, mixed_alerts

Item = Alert | Mapping[str, Any]


def as_dict(alert: Alert) -> dict[str, Any]:
    """The Avro-shaped dict a national system would hand over, as in ``examples/alerts/``."""
    return {**alert.to_avro(), "alert_type": alert.alert_type}


def some_alerts(count: int) -> list[Item]:
    """Models and dicts, every type, many keys."""
    alerts = mixed_alerts(count, ("rs",))
    return [as_dict(a) if i % 3 else a for i, a in enumerate(alerts)]


@pytest.fixture
def settings(offline_settings: BusSettings) -> BusSettings:
    generate_keypair(offline_settings.keys_dir, "rs")
    return offline_settings


@pytest.fixture
def here(settings: BusSettings) -> Any:
    codec = AlertCodec(SchemaRegistry.load(settings.schemas_dir))
    signer = Signer.load(settings.keys_dir, "rs")
    return lambda alert: make_ready(alert, codec, signer, "rs")


@pytest.fixture
async def pool(settings: BusSettings) -> AsyncIterator[PreparingPool]:
    pool = PreparingPool(settings, origin="rs", workers=2)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def prepare_all(pool: PreparingPool, alerts: list[Item], here: Any) -> list[Ready]:
    out: list[Ready] = []
    async for chunk in pool.prepare(alerts, here):
        out.extend(chunk)
    return out


def test_a_frame_holds_one_object_and_a_short_stream_ends() -> None:
    stream = io.BytesIO(frames.encode((7, [b"x" * 70_000, "y"])) + frames.encode("next"))
    assert frames.read(stream) == (7, [b"x" * 70_000, "y"])
    assert frames.read(stream) == "next"
    assert frames.read(stream) is None
    truncated = frames.encode("whole")[:-1]
    assert frames.read(io.BytesIO(truncated)) is None


def test_a_workers_failure_becomes_the_error_this_process_would_raise() -> None:
    invalid = ChunkFailure.of(3, ValidationError("Invalid x alert: field a.b", field="a.b"))
    raised = invalid.exception()
    assert type(raised) is ValidationError
    assert raised.field == "a.b"
    assert str(raised) == "Invalid x alert: field a.b"
    assert type(ChunkFailure.of(0, OriginMismatch("o")).exception()) is OriginMismatch
    assert type(ChunkFailure.of(0, SignatureError("s")).exception()) is SignatureError
    # Anything else (a bug) still reaches the caller as a BusError naming what it was.
    surprise = ChunkFailure.of(1, KeyError("k")).exception()
    assert type(surprise) is BusError
    assert "KeyError" in str(surprise)
    assert type(ChunkFailure(0, "NoSuchError", "m", None).exception()) is BusError


async def test_workers_make_exactly_the_records_this_process_makes_in_order(
    pool: PreparingPool, here: Any
) -> None:
    alerts = some_alerts(1500)
    prepared = await prepare_all(pool, alerts, here)
    # Ed25519 signatures are deterministic: the same key and bytes give the same signature.
    assert prepared == [here(a) for a in alerts]


async def test_the_first_alert_that_cannot_be_prepared_is_the_error(
    pool: PreparingPool, here: Any
) -> None:
    alerts = some_alerts(1500)
    late_date = as_dict(make_alert("readmission", "rs"))
    late_date["header"] = {**late_date["header"], "occurred_at": "yesterday"}
    alerts[700] = late_date  # in a chunk in the middle
    alerts[1400] = make_alert("readmission", "mk")  # another country's, later
    with pytest.raises(ValidationError, match=r"header\.occurred_at") as caught:
        await prepare_all(pool, alerts, here)
    assert caught.value.field == "header.occurred_at"

    alerts[700] = make_alert("readmission", "rs")
    with pytest.raises(OriginMismatch, match="'mk'"):
        await prepare_all(pool, alerts, here)
    # The pool is still whole: a refused call leaves no chunk behind to be answered later.
    alerts[1400] = make_alert("readmission", "rs")
    assert await prepare_all(pool, alerts, here) == [here(a) for a in alerts]
    assert all(pool.usable(i) for i in range(2))


async def test_an_alert_that_cannot_cross_a_pipe_is_prepared_here(
    pool: PreparingPool, here: Any
) -> None:
    # A dict holding something pickle refuses: this process prepares that chunk and names the
    # problem as it would without workers.
    alerts = some_alerts(1200)
    odd = as_dict(make_alert("readmission", "rs"))
    odd["summary"] = lambda: None
    alerts[900] = odd
    with pytest.raises(ValidationError, match="summary"):
        await prepare_all(pool, alerts, here)


@pytest.mark.parametrize("stop", ["kill", "freeze"])
async def test_a_worker_that_dies_or_hangs_costs_time_never_an_alert(
    settings: BusSettings, here: Any, stop: str
) -> None:
    settings = settings.model_copy(update={"publish_timeout_ms": 2000})
    pool = PreparingPool(settings, origin="rs", workers=2)
    await pool.start()
    victim = pool.pids[0]
    try:
        os.kill(victim, signal.SIGKILL if stop == "kill" else signal.SIGSTOP)
        alerts = some_alerts(1500)
        with capture_logs() as logs:
            prepared = await prepare_all(pool, alerts, here)
        assert prepared == [here(a) for a in alerts]
        lost = [e for e in logs if e["event"] == "publish_worker_lost"]
        assert len(lost) == 1
        assert lost[0]["pid"] == victim
        assert not pool.usable(0)
        assert pool.usable(1)
        # The frozen one was killed: nothing is left behind, stopped or not.
        for _ in range(50):
            if not _alive(victim):
                break
            await asyncio.sleep(0.1)
        assert not _alive(victim)
        # The next call does without it.
        assert await prepare_all(pool, alerts[:1000], here) == prepared[:1000]
    finally:
        await pool.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_a_worker_that_cannot_load_the_key_fails_the_start_naming_it(
    offline_settings: BusSettings,
) -> None:
    pool = PreparingPool(offline_settings, origin="rs", workers=2)  # no key for rs
    with pytest.raises(ConfigError, match=r"could not start.*rs") as caught:
        await pool.start()
    assert "BEGIN" not in str(caught.value)
    assert pool.pids == []  # every worker was stopped


async def test_closing_ends_every_worker(settings: BusSettings) -> None:
    pool = PreparingPool(settings, origin="rs", workers=2)
    await pool.start()
    pids = pool.pids
    assert all(_alive(pid) for pid in pids)
    await pool.close()
    assert not any(_alive(pid) for pid in pids)
