"""An inbox the fan-out may not write: the copy is never audited as delivered, the rest flows.

The broker refuses the fan-out (a DENY ACL on one partner's inbox, as a careless operator might
leave): the fan-out retries the alert a bounded number of times, then routes it without that
copy, audits ``failed`` with the reason and dead-letters it; the other partners get it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import confluent_kafka.admin as ck

from bus import Publisher
from bus.access.apply import admin_client
from bus.admin import read_audit
from bus.audit import decisions
from bus.kafka import read_to_end
from bus.policy import decide
from services.fanout.service import FanoutService
from tests.factories import make_alert
from tests.integration.fanout_support import agreements_keys, fanout_topics
from tests.integration.secure.conftest import SecureEnv


def _deny_write(env: SecureEnv, topic: str, principal: str) -> None:
    binding = ck.AclBinding(
        ck.ResourceType.TOPIC, topic, ck.ResourcePatternType.LITERAL, f"User:{principal}", "*",
        ck.AclOperation.WRITE, ck.AclPermissionType.DENY,
    )  # fmt: skip
    client = admin_client(env.admin)
    for future in client.create_acls([binding]).values():
        future.result(timeout=30)


async def test_a_copy_the_broker_does_not_let_the_fanout_write_is_failed_not_delivered(
    secure_env: SecureEnv, keys_dir: Path
) -> None:
    env = secure_env
    agreements_keys(keys_dir, env.agreements)
    await fanout_topics(env.admin, env.agreements)
    env.topics.append(env.admin.topics.dlq)  # the fixture deletes this test's topics after it
    europol = env.admin.topics.inbox("europol")
    await asyncio.to_thread(_deny_write, env, europol, env.principal("fanout"))

    denied = make_alert("trafficking-arrest", "rs", tlp="AMBER", explicit_recipients=[])
    entitled = {d.partner_id for d in decide(denied, env.agreements) if d.deliver}
    assert "europol" in entitled
    async with Publisher(env.as_principal("rs"), origin="rs") as pub:
        await pub.publish(denied)

    fanout = FanoutService(env.as_principal("fanout"), agreements=env.agreements)
    task = asyncio.create_task(fanout.run())
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while fanout.stats.transactions < 1:
            assert not task.done(), task.exception()
            assert asyncio.get_running_loop().time() < deadline, fanout.stats
            await asyncio.sleep(0.2)
    finally:
        fanout.stop()
        await asyncio.wait_for(task, 60)
    assert fanout.stats.aborted >= 3
    assert fanout.stats.failed == 1

    audit = {r["partner"]: r for r in decisions(await read_audit(env.admin))}
    assert audit["europol"]["decision"] == "failed"
    assert "TopicAuthorizationFailed" in audit["europol"]["reason"]
    assert {p for p, r in audit.items() if r["decision"] == "delivered"} == entitled - {"europol"}
    for partner in entitled - {"europol"}:
        [copy] = await read_to_end(env.admin, env.admin.topics.inbox(partner))
        assert dict(copy.headers)["bus-alert-id"] == str(denied.alert_id).encode()
    assert await read_to_end(env.admin, europol) == []
    [letter] = await read_to_end(env.admin, env.admin.topics.dlq)
    headers = {k: v.decode("utf-8", "replace") for k, v in letter.headers}
    assert headers["bus-dlq-stage"] == "deliver"
    assert europol in headers["bus-dlq-error-message"]
