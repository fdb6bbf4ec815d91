"""Offboarding cuts a partner off within seconds; our own clients name a missing ACL."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from bus import Publisher, Subscriber
from bus.access.credentials import CredentialStore
from bus.access.kit import write_kit
from bus.agreements import Agreements
from bus.errors import AccessDenied, AuthenticationFailed, ConfigError
from bus.kafka import read_to_end
from tests.factories import make_alert
from tests.integration.fanout_support import agreements_keys
from tests.integration.secure.conftest import SecureEnv, ck_config

GONE = "jc-tabanovce"


def without(agreements: Agreements, partner: str) -> Agreements:
    return Agreements(
        partners={k: v for k, v in agreements.partners.items() if k != partner},
        agreements=tuple(
            dataclasses.replace(a, recipients=a.recipients - {partner})
            for a in agreements.agreements
        ),
    )


async def test_an_offboarded_partner_is_cut_off_within_seconds(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env, names = secure_env, secure_env.admin.topics
    inbox = names.inbox(GONE)
    await env.create_topics(inbox)
    agreements_keys(keys_dir, env.agreements)
    write_kit(env.admin, env.access, GONE, tmp_path / "kit")
    kit = ck_config(tmp_path / "kit" / "client.properties")
    admin = Producer(ck_config(env.broker.admin_config))
    admin.produce(inbox, b"before")
    admin.flush(10)

    consumer = Consumer({**kit, "group.id": f"{env.principal(GONE)}.inbox",
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 500})  # fmt: skip
    consumer.subscribe([inbox])
    first = None
    deadline = time.monotonic() + 30
    while first is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            first = msg.value()
    assert first == b"before"

    changes = await asyncio.to_thread(env.apply, without(env.agreements, GONE))
    cut_at = time.monotonic()
    principal = env.principal(GONE)
    removals = [line for line in changes if principal in line]
    assert removals
    assert all(line.startswith("- ") for line in removals)
    assert removals[-1] == f"- user {principal}"  # ACLs first, then the login

    # A fetch already waiting at the broker (up to fetch.wait.max.ms) was authorised before the
    # cut and may still return; a record written after that is never delivered.
    error, late, produced = None, [], False
    while time.monotonic() - cut_at < 10 and (error is None or not produced):
        if not produced and time.monotonic() - cut_at > 1.0:
            admin.produce(inbox, b"after")
            admin.flush(10)
            produced = True
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            error = error or msg.error()
        else:
            late.append(msg.value())
    elapsed = time.monotonic() - cut_at
    for _ in range(10):  # and nothing arrives afterwards either
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            late.append(msg.value())
    consumer.close()
    assert error is not None, "the connected consumer kept fetching for 10 s"
    assert "AUTHORIZATION_FAILED" in error.name()
    assert elapsed < 10
    assert b"after" not in late

    # Its credentials no longer log in, and the bus keeps no password for it.
    errors: list[str] = []
    client = AdminClient({**kit, "error_cb": lambda e: errors.append(e.str())})
    with pytest.raises(Exception, match=r"."):
        client.list_topics(timeout=4)
    client.poll(1)
    assert any("Authentication failed" in e for e in errors)
    assert not CredentialStore(env.admin.credentials_dir).exists(principal)
    # Applying again changes nothing.
    assert await asyncio.to_thread(env.apply) == []


async def test_an_offboarded_partner_using_our_client_is_told_so(
    secure_env: SecureEnv, keys_dir: Path
) -> None:
    env = secure_env
    settings = env.as_principal(GONE)
    await asyncio.to_thread(env.apply, without(env.agreements, GONE))
    with pytest.raises(AuthenticationFailed, match=f"user '{env.principal(GONE)}'"):
        await read_to_end(settings, env.admin.topics.inbox(GONE))


async def test_our_clients_name_the_principal_the_resource_and_the_operation(
    secure_env: SecureEnv, keys_dir: Path
) -> None:
    env, names = secure_env, secure_env.admin.topics
    agreements_keys(keys_dir, env.agreements)
    await env.create_topics(names.ingress("rs", "readmission"), names.audit, names.inbox("mk"))
    mk = env.as_principal("mk")
    europol = env.as_principal("europol")

    # A country's key and alert, published with another country's credentials.
    alert = make_alert("readmission", "rs")
    async with Publisher(mk, origin="rs") as pub:
        with pytest.raises(AccessDenied) as info:
            await pub.publish(alert)
    message = str(info.value)
    assert f"principal '{env.principal('mk')}'" in message
    assert "WRITE" in message
    assert names.ingress("rs", "readmission") in message

    # A partner reading the audit, or another partner's inbox.
    with pytest.raises(AccessDenied, match=rf"'{env.principal('europol')}' READ on topic"):
        await read_to_end(europol, names.audit)

    async def handle(_: object) -> None:
        return None

    with pytest.raises((AccessDenied, ConfigError), match=env.principal("europol")):
        async with Subscriber(europol, group_id=f"{env.principal('europol')}.x",
                              topics=[names.inbox("mk")], handler=handle,
                              notice_handler=handle):  # fmt: skip
            pass
    # … or using another partner's consumer group.
    with pytest.raises(AccessDenied, match=rf"READ on consumer group '{env.principal('mk')}\.x'"):
        async with Subscriber(
            europol,
            group_id=f"{env.principal('mk')}.x",
            pattern=f"^{env.prefix}partner\\.europol\\..*",
            handler=handle,
        ) as s:
            await asyncio.wait_for(s.run(), 30)
