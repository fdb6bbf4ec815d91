"""What the chaos tests share: the `bus` command on brokers of the test's own, a paced publisher
that records every acknowledgement and how long each call took, and the checks made after a fault.

Results are judged only as a partner and an operator see them: the partner inboxes read
``read_committed``, ``bus.dlq``, and ``bus audit verify``. Nothing here knows how the fan-out
spreads its work, so the checks hold however many instances it runs and however it fences them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bus import Alert, BusSettings, Publisher
from bus.agreements import Agreements
from bus.errors import BusError
from bus.kafka import read_to_end, topic_partitions
from tests.conftest import REPO
from tests.integration.fanout_support import (
    check_inboxes,
    expected_inboxes,
    read_inboxes,
    varied_alerts,
)

#: The publishing countries of the chaos tests: few, so that a small cluster holds the topics.
ORIGINS = ("al", "mk", "rs")


@dataclass
class Bus:
    """The ``bus`` command run as an operator runs it, with the environment of one test."""

    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [sys.executable, "-m", "bus", *args], env=self.env, cwd=REPO,
                capture_output=True, text=True, timeout=timeout_s, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"bus {' '.join(args)} still ran after {timeout_s:.0f} s: {exc.stdout!r} "
                f"{exc.stderr!r}"
            ) from exc

    def check(self, *args: str, timeout_s: float = 180) -> str:
        """Run a command that must succeed; its standard output."""
        done = self.run(*args, timeout_s=timeout_s)
        assert done.returncode == 0, f"bus {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def fanout(self) -> subprocess.Popen[bytes]:
        """``bus fanout run`` as a user starts it (no instance options), logging to a file."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "fanout.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bus", "fanout", "run"], env=self.env, cwd=REPO,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.processes.append(proc)
        return proc

    def fanout_log(self) -> str:
        return (self.logs / "fanout.log").read_text(errors="replace")

    def stop_processes(self, timeout_s: float = 60) -> None:
        """SIGTERM every process started here, SIGKILL what is still there after ``timeout_s``."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def resume_all(pids: list[int]) -> None:
    """SIGCONT to every pid that may have been frozen (a frozen JVM ignores SIGTERM)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class Call:
    """One publish call: when it began, how long it took, and what it raised, if anything."""

    started: float
    took_s: float
    error: BaseException | None


@dataclass
class Stream:
    """A publisher that goes on until told to stop, retrying a refused batch until Kafka acks it.

    As a national adapter does: the same alerts again after a timeout, so that Kafka may hold
    some twice, and the fan-out must deliver them once.
    """

    settings: BusSettings
    agreements: Agreements
    batch: int = 20
    pause_s: float = 0.1
    max_alerts: int = 8000
    published: list[Alert] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            publishers = {
                cc: await stack.enter_async_context(Publisher(self.settings, origin=cc))
                for cc in ORIGINS
            }
            n = 0
            while not self.stop.is_set() and len(self.published) < self.max_alerts:
                origin = ORIGINS[n % len(ORIGINS)]
                alerts = varied_alerts(self.batch, self.agreements, seed=n, origins=(origin,))
                n += 1
                self.published += alerts
                while True:  # this batch until acknowledged
                    started = loop.time()
                    try:
                        results = await publishers[origin].publish_many(alerts)
                    except BusError as exc:
                        self.calls.append(Call(started, loop.time() - started, exc))
                        await asyncio.sleep(self.pause_s)
                        continue
                    self.calls.append(Call(started, loop.time() - started, None))
                    self.acked.update(str(r.alert_id) for r in results)
                    break
                await asyncio.sleep(self.pause_s)

    def failures(self) -> list[Call]:
        return [c for c in self.calls if c.error is not None]

    def summary(self) -> str:
        slowest = max((c.took_s for c in self.calls), default=0.0)
        return (
            f"{len(self.published)} alerts published in {len(self.calls)} calls, "
            f"{len(self.failures())} of them failed; the slowest took {slowest:.2f} s"
        )


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout_s: float, what: str
) -> None:
    """Until ``predicate()`` (plain or async) is true; fail naming ``what`` after the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


async def inbox_progress(settings: BusSettings, partners: list[str]) -> int:
    """How far the partner inboxes have come: the sum of their stable ends (read_committed).

    Grows with every transaction of the fan-out that ended; a cheap sign of it working.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
        request_timeout_ms=settings.request_timeout_ms, enable_auto_commit=False,
    )  # fmt: skip
    await asyncio.wait_for(consumer.start(), settings.connect_timeout_ms / 1000)
    try:
        layout = await topic_partitions(consumer, settings.request_timeout_ms)
        tps = [
            TopicPartition(settings.topics.inbox(p), n)
            for p in partners
            for n in layout.get(settings.topics.inbox(p), ())
        ]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), settings.request_timeout_ms / 1000)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def progress_or_zero(settings: BusSettings, partners: list[str]) -> int:
    """``inbox_progress``, or 0 while the cluster cannot say (a broker just died)."""
    try:
        return await inbox_progress(settings, partners)
    except Exception:
        return 0


async def assert_delivered_exactly_once(
    bus: Bus, settings: BusSettings, stream: Stream, *, timeout_s: float = 180
) -> int:
    """Every entitled partner holds each published alert exactly once; nothing more, no dead
    letters, and the audit verifies. Returns the number of copies in the inboxes."""
    published_ids = {str(a.alert_id) for a in stream.published}
    assert stream.acked == published_ids, "every batch is retried until Kafka acknowledged it"
    expected = expected_inboxes(stream.published, stream.agreements)
    total = sum(len(v) for v in expected.values())
    partners = sorted(stream.agreements.partners)
    actual = await read_inboxes(settings, partners, expect=total, timeout_s=timeout_s)
    by_partner: dict[str, int] = defaultdict(int)
    for partner, records in actual.items():
        by_partner[partner] = len(records)
    assert check_inboxes(actual, expected) == total, dict(by_partner)
    dead = await read_to_end(settings, settings.topics.dlq)
    assert dead == [], f"{len(dead)} dead letter(s), the first: {dict(dead[0].headers)}"
    verdict = bus.run("audit", "verify")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "OK" in verdict.stdout, verdict.stdout
    assert "BROKEN" not in verdict.stdout, verdict.stdout
    print(f"{stream.summary()}; {total} inbox copies")  # shown with `pytest -s`
    return total
