"""Several fan-out instances, started and stopped under load, give what one instance gives.

Instances share the shards through the ``bus-fanout-shards`` consumer group: no partition list,
no forked audit chain (one chain per shard, each verified), follow-ups routed with the alert
they follow up, and a frozen instance's late writes fenced by its successor.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced

from bus import Alert, BusSettings
from bus.admin import read_audit
from bus.audit import decisions, verify_chains
from bus.batching import partition_for
from bus.errors import BusError
from bus.kafka import make_producer, read_to_end, stop_client
from bus.models import WithdrawalNotice
from services.fanout.service import FanoutService
from tests.factories import make_alert
from tests.integration.conftest import create_topics
from tests.integration.fanout_support import (
    agreements_keys,
    check_inboxes,
    expected_inboxes,
    expected_notices,
    fanout_settings,
    fanout_topics,
    follow_ups,
    load_example_agreements,
    publish_all,
    read_inboxes,
    start_fanout_process,
    varied_alerts,
    wait_caught_up,
    without_case_ref,
)
from tests.integration.test_pubsub import prefixed

AGREEMENTS = load_example_agreements()
ROUNDS = 8
PER_ROUND = 150


@pytest.fixture
async def env(settings: BusSettings, keys_dir: Path) -> BusSettings:
    s = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, AGREEMENTS)
    await fanout_topics(s, AGREEMENTS)
    return s


def _rounds() -> list[list[Alert]]:
    """Originals, and from the second round on follow-ups (UPDATE, CANCEL) of the round before."""
    originals = without_case_ref(varied_alerts(ROUNDS * PER_ROUND, AGREEMENTS, seed=21))
    rounds = []
    for n in range(ROUNDS):
        fresh = originals[n * PER_ROUND : (n + 1) * PER_ROUND]
        before = originals[(n - 1) * PER_ROUND : n * PER_ROUND] if n else []
        rounds.append(fresh + follow_ups(before[::3], seed=n))
    return rounds


async def _check_exactly_once(settings: BusSettings, published: list[Alert]) -> None:
    expected = expected_inboxes(published, AGREEMENTS)
    want_notices = expected_notices(published, AGREEMENTS)
    total = sum(len(v) for v in expected.values()) + sum(len(v) for v in want_notices.values())
    notices: dict[str, list[WithdrawalNotice]] = {}
    actual = await read_inboxes(
        settings, sorted(AGREEMENTS.partners), expect=total, notices=notices
    )
    assert check_inboxes(actual, expected) > 500
    got_notices = {p: [str(n.follow_up_id) for n in ns] for p, ns in notices.items()}
    for partner, ids in got_notices.items():
        assert len(ids) == len(set(ids)), f"{partner} got a notice twice"
    assert {p: set(ids) for p, ids in got_notices.items()} == dict(want_notices)
    assert sum(len(v) for v in want_notices.values()) > 0, "the test must exercise notices"

    audit = await read_audit(settings)
    verdicts = verify_chains(audit)
    assert sorted(verdicts) == [0, 1, 2]
    assert all(v.ok for v in verdicts.values()), verdicts
    alerts = [(r["origin"], r["alert_id"]) for r in audit]
    assert len(alerts) == len(set(alerts)) == len(published), "an alert audited twice, or not"
    decided = [(r["origin"], r["alert_id"], r["partner"]) for r in decisions(audit)]
    assert len(decided) == len(set(decided)) == len(published) * len(AGREEMENTS.partners)


async def _publish_rounds(
    settings: BusSettings, rounds: list[list[Alert]], between: Callable[[int], Awaitable[None]]
) -> list[Alert]:
    published: list[Alert] = []
    for n, batch in enumerate(rounds):
        await publish_all(settings, batch)
        published += batch
        await between(n)
    return published


async def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_two_then_three_instances_started_and_stopped_give_one_instances_inboxes(
    env: BusSettings,
) -> None:
    running: dict[str, tuple[FanoutService, asyncio.Task[None]]] = {}

    async def start(name: str) -> None:
        service = FanoutService(env)
        running[name] = (service, asyncio.create_task(service.run()))

    async def stop(name: str) -> None:
        service, task = running.pop(name)
        service.stop()
        await asyncio.wait_for(task, 120)

    def spread() -> bool:
        owned = [set(s.shards) for s, _ in running.values()]
        return sum(len(o) for o in owned) == 3 and all(owned)

    split_seen: list[list[list[int]]] = []

    async def between(n: int) -> None:
        if n == 0:
            await start("b")  # two instances
        elif n == 2:
            await start("c")  # three
        elif n == 4:
            await stop("a")  # back to two, under load
        elif n == 5:
            await start("a")  # three again
        elif n == 6:
            await stop("b")
            await stop("c")  # one
        if n in (1, 3):
            await _wait(spread, "the instances to share the shards")
            split_seen.append([s.shards for s, _ in running.values()])
        for _, task in running.values():
            assert not task.done(), task.exception()

    await start("a")
    try:
        await running["a"][0].wait_ready()
        published = await _publish_rounds(env, _rounds(), between)
        await wait_caught_up(env, f"{env.topic_prefix}bus-fanout", timeout_s=300)
    finally:
        for name in list(running):
            await stop(name)
    assert [len(seen) for seen in split_seen] == [2, 3], split_seen
    await _check_exactly_once(env, published)


async def test_a_fanout_refuses_an_audit_topic_without_a_partition_per_shard(
    settings: BusSettings, keys_dir: Path
) -> None:
    s = fanout_settings(prefixed(settings))
    agreements_keys(keys_dir, AGREEMENTS)
    await create_topics(s, s.topics.fanout_shards)
    await create_topics(s, s.topics.audit, partitions=1)
    service = FanoutService(s)
    with pytest.raises(BusError, match=r"bus.audit has 1 partition\(s\) but .*shards has 3"):
        await asyncio.wait_for(service.run(), 60)


async def test_an_instance_stops_when_the_shard_count_changes_under_it(env: BusSettings) -> None:
    # Instances counting different shards would map an ingress partition to two shards and
    # route it twice: the one that started with the old count takes no shard and stops.
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

    old = FanoutService(env, agreements=AGREEMENTS)
    old_run = asyncio.create_task(old.run())
    await old.wait_ready(120)
    assert old.shards == [0, 1, 2]
    admin = AIOKafkaAdminClient(bootstrap_servers=env.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_partitions(
            {t: NewPartitions(total_count=4) for t in (env.topics.fanout_shards, env.topics.audit)}
        )
    finally:
        await admin.close()
    new = FanoutService(env, agreements=AGREEMENTS)
    new_run = asyncio.create_task(new.run())
    try:
        with pytest.raises(BusError, match=r"now has 4 partition\(s\); this fan-out instance "
                           r"started with 3"):  # fmt: skip
            await asyncio.wait_for(old_run, 120)
        # Once the old instance has left the group, the new one holds all four shards.
        await _wait(lambda: new.shards == [0, 1, 2, 3], "the new instance holding 4 shards")
        await new.wait_ready(120)
    finally:
        new.stop()
        await asyncio.wait_for(new_run, 60)


def _keyed_to(shards: list[int], origin: str, **header: Any) -> Alert:
    """An irregular-crossing alert whose case reference lands on one of ``shards`` (of 3)."""
    for i in range(1000):
        case_ref = f"{origin.upper()}-SHARDED-{i}"
        if partition_for(case_ref.encode(), [0, 1, 2]) in shards:
            return make_alert("irregular-crossing", origin, tlp="GREEN", case_ref=case_ref,
                              explicit_recipients=[], **header)  # fmt: skip
    raise AssertionError(f"no case reference lands on shards {shards}")


async def test_an_instance_checks_a_follow_up_against_an_alert_another_instance_routed(
    env: BusSettings,
) -> None:
    # The alert is routed by one instance after both took their shards; a follow-up naming it
    # from another country lands on a shard of the other instance, which learns of the alert
    # from bus.fanout.state as it is committed, and refuses the follow-up as one instance would.
    first, second = (FanoutService(env, agreements=AGREEMENTS) for _ in range(2))
    runs = [asyncio.create_task(first.run())]
    try:
        await first.wait_ready(120)
        runs.append(asyncio.create_task(second.run()))
        await _wait(
            lambda: bool(first.shards) and bool(second.shards)
            and len(first.shards) + len(second.shards) == 3,
            "two instances sharing the shards",
        )  # fmt: skip
        await first.wait_ready(120)
        await second.wait_ready(120)
        original = _keyed_to(first.shards, "rs")
        await publish_all(env, [original])
        alert_id = str(original.alert_id)
        await _wait(lambda: first.stats.alerts == 1, "the alert routed by the first instance")
        await _wait(lambda: second.routed.recipients("rs", alert_id) is not None,
                    "the second instance learning of it")  # fmt: skip
        assert second.routed.origins(alert_id) == {"rs"}
        update = _keyed_to(second.shards, "mk", msg_type="UPDATE", references=[alert_id])
        await publish_all(env, [update])
        await _wait(lambda: second.stats.refused + second.stats.alerts >= 1,
                    "the follow-up handled by the second instance")  # fmt: skip
        assert (second.stats.refused, second.stats.alerts) == (1, 0)
        audit = [
            r for r in decisions(await read_audit(env)) if r["alert_id"] == str(update.alert_id)
        ]
        assert [r["decision"] for r in audit] == ["refused"]
    finally:
        first.stop()
        second.stop()
        await asyncio.wait_for(asyncio.gather(*runs), 60)


# -- a zombie ------------------------------------------------------------------------------


def _start(settings: BusSettings, log: Path) -> subprocess.Popen[bytes]:
    """An instance that the group gives up on 6 s after it stops answering."""
    return start_fanout_process(settings, log, BUS_SESSION_TIMEOUT_MS="6000")


def _events(log: Path, event: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


@pytest.mark.parametrize("turn", ["", "-2"])
async def test_taking_a_shard_fences_the_open_transaction_of_its_previous_holder(
    env: BusSettings, turn: str
) -> None:
    # A previous holder of shard 0 (either of its two producers) wrote a copy in a transaction
    # it has not committed yet; the instance that takes the shard fences it, so the copy never
    # shows and the late commit is refused.
    zombie = make_producer(env, transactional_id=f"{env.topic_prefix}bus-fanout-shard-0{turn}",
                           client_suffix="zombie")  # fmt: skip
    await zombie.start()
    service = FanoutService(env, agreements=AGREEMENTS)
    running = None
    try:
        await zombie.begin_transaction()
        inbox = env.topics.inbox("europol")
        await (await zombie.send(inbox, key=b"late", value=b"a late write"))
        running = asyncio.create_task(service.run())
        await service.wait_ready(120)
        with pytest.raises(ProducerFenced):
            await zombie.commit_transaction()
        assert [r.value for r in await read_to_end(env, inbox)] == []
    finally:
        service.stop()
        if running is not None:
            await asyncio.wait_for(running, 60)
        await stop_client(zombie, 10_000)


async def test_a_frozen_instance_is_fenced_and_its_late_writes_never_show(
    env: BusSettings, tmp_path: Path
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("zombie", "successor")}
    procs = {"zombie": _start(env, logs["zombie"])}
    frozen = False
    try:
        await _wait(lambda: bool(_events(logs["zombie"], "fanout_ready")), "the first instance")
        procs["successor"] = start_fanout_process(
            env, logs["successor"], BUS_SESSION_TIMEOUT_MS="6000"
        )

        def readies(name: str) -> list[list[int]]:
            return [list(e["shards"]) for e in _events(logs[name], "fanout_ready")]  # type: ignore[call-overload]

        async def between(n: int) -> None:
            nonlocal frozen
            for name, proc in procs.items():
                assert proc.poll() is None, logs[name].read_text()[-3000:]
            if n == 0:
                await _wait(lambda: any(0 < len(r) < 3 for r in readies("successor")),
                            "the instances to share the shards")  # fmt: skip
            elif n == 1:
                # Frozen mid-work (a round was just published): whatever it holds open stays
                # open until its successor fences it.
                procs["zombie"].send_signal(signal.SIGSTOP)
                frozen = True
            elif n == 2:
                await _wait(lambda: [0, 1, 2] in readies("successor"),
                            "the successor to take every shard")  # fmt: skip
            elif n == 3:
                released = len(_events(logs["zombie"], "fanout_shards_released"))
                procs["zombie"].send_signal(signal.SIGCONT)
                frozen = False
                await _wait(
                    lambda: len(_events(logs["zombie"], "fanout_shards_released")) > released,
                    "the zombie to learn it lost its shards",
                )

        published = await _publish_rounds(env, _rounds()[:6], between)
        await wait_caught_up(env, f"{env.topic_prefix}bus-fanout", timeout_s=300)
    finally:
        if frozen:
            procs["zombie"].send_signal(signal.SIGCONT)
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=120)
    # Frozen with a transaction open, it woke up, tried to finish it and was refused (fenced);
    # frozen between transactions, it had nothing open to finish. Either way it learnt that it
    # lost its shards (waited for above), and nothing it wrote late shows: every partner holds
    # each alert exactly once, and the audit verifies.
    await _check_exactly_once(env, published)
