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
import sys
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


def make_pool(settings: BusSettings, workers: int = 2) -> PreparingPool:
    key = Signer.load(settings.keys_dir, "rs").public_key
    return PreparingPool(settings, origin="rs", workers=workers, public_key=key)


@pytest.fixture
async def pool(settings: BusSettings) -> AsyncIterator[PreparingPool]:
    pool = make_pool(settings)
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
    assert len(pool.pids) == 2


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
    pool = make_pool(settings)
    await pool.start()
    victim, other = pool.pids
    try:
        os.kill(victim, signal.SIGKILL if stop == "kill" else signal.SIGSTOP)
        alerts = some_alerts(1500)
        with capture_logs() as logs:
            prepared = await prepare_all(pool, alerts, here)
        assert prepared == [here(a) for a in alerts]
        lost = [e for e in logs if e["event"] == "publish_worker_lost"]
        assert len(lost) == 1
        assert lost[0]["pid"] == victim
        assert pool.pids == [other]
        # The frozen one was killed: nothing is left behind, stopped or not.
        for _ in range(50):
            if not _alive(victim):
                break
            await asyncio.sleep(0.1)
        assert not _alive(victim)
        # The next call starts a worker in its place first.
        with capture_logs() as logs:
            assert await prepare_all(pool, alerts[:1000], here) == prepared[:1000]
        assert [e["event"] for e in logs] == ["publish_workers_replaced"]
        assert len(pool.pids) == 2
        assert victim not in pool.pids
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
    pool = PreparingPool(offline_settings, origin="rs", workers=2, public_key=bytes(32))
    with pytest.raises(ConfigError, match=r"could not start.*rs") as caught:
        await pool.start()
    assert "BEGIN" not in str(caught.value)
    assert pool.pids == []  # every worker was stopped


async def test_closing_ends_every_worker(settings: BusSettings) -> None:
    pool = make_pool(settings)
    await pool.start()
    pids = pool.pids
    assert all(_alive(pid) for pid in pids)
    await pool.close()
    assert not any(_alive(pid) for pid in pids)


async def test_what_is_not_an_alert_is_a_validation_error_whoever_prepares_it(
    pool: PreparingPool, here: Any
) -> None:
    for junk in (None, 5, "an alert", ["a", "list"]):
        alerts = some_alerts(1500)
        alerts[800] = junk  # type: ignore[call-overload]
        with pytest.raises(ValidationError, match="mapping of its fields") as caught:
            await prepare_all(pool, alerts, here)
        assert caught.value.field == "(alert)"
        with pytest.raises(ValidationError, match="mapping of its fields"):
            here(junk)


class AlertDict(dict[str, Any]):
    """A mapping type only this process knows (as a class of a caller's own script is)."""


async def test_an_alert_a_worker_cannot_read_is_prepared_here(
    pool: PreparingPool, here: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pickled as __main__.AlertDict: the workers' __main__ has no such class, so they cannot
    # unpickle a chunk holding one. They say so and live on; this process prepares the chunk.
    monkeypatch.setattr(AlertDict, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "AlertDict", AlertDict, raising=False)
    alerts = some_alerts(1500)
    alerts = [AlertDict(a) if isinstance(a, dict) and i > 1000 else a for i, a in enumerate(alerts)]
    pids = pool.pids
    with capture_logs() as logs:
        prepared = await prepare_all(pool, alerts, here)
    assert prepared == [here(a) for a in alerts]
    assert pool.pids == pids
    assert logs == []


async def test_closing_the_pool_under_a_call_leaves_the_call_to_this_process(
    settings: BusSettings, here: Any
) -> None:
    settings = settings.model_copy(update={"publish_timeout_ms": 1000})
    pool = make_pool(settings)
    await pool.start()
    os.kill(pool.pids[0], signal.SIGSTOP)  # it will not answer: close() waits for it
    alerts = some_alerts(3000)
    call = asyncio.create_task(prepare_all(pool, alerts, here))
    await asyncio.sleep(0.05)
    await pool.close(grace_s=2)
    assert await call == [here(a) for a in alerts]


def _workers_of_this_process() -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"bus.publishing" in cmdline:
            found.append(int(stat.parent.name))
    return found


async def test_a_start_cancelled_leaves_no_worker_running(settings: BusSettings) -> None:
    for delay in (0, 0.01, 0.2):
        pool = make_pool(settings)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.start(), delay)
        for _ in range(50):
            if not _workers_of_this_process():
                break
            await asyncio.sleep(0.1)
        assert _workers_of_this_process() == []
        await pool.close()


async def test_a_worker_with_another_key_than_the_publishers_is_refused(
    settings: BusSettings, tmp_path: Path
) -> None:
    # The key file was replaced after the publisher loaded its key: its workers would sign
    # with another key than the one it signs with.
    generate_keypair(tmp_path, "rs")
    other = Signer.load(tmp_path, "rs").public_key
    pool = PreparingPool(settings, origin="rs", workers=1, public_key=other)
    with pytest.raises(ConfigError, match="another public key"):
        await pool.start()
    assert _workers_of_this_process() == []


async def test_a_worker_whose_output_starts_with_noise_is_refused_at_once(
    settings: BusSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sitecustomize.py").write_text("print('hello from sitecustomize')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    settings = settings.model_copy(update={"connect_timeout_ms": 60_000})
    pool = make_pool(settings, workers=1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConfigError, match="something else than its frames"):
        await pool.start()
    assert asyncio.get_running_loop().time() - started < 30  # not the whole timeout
