"""A wrong password, mechanism, protocol or CA gets no connection, and our clients say which."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from pydantic import SecretStr

from bus import BusSettings, Publisher, Subscriber
from bus.access.apply import admin_client, current_state
from bus.access.tls import ensure_tls
from bus.errors import AuthenticationFailed, KafkaError, TlsError
from bus.kafka import Admin
from tests.integration.fanout_support import agreements_keys
from tests.integration.secure.conftest import SecureEnv, ck_config

WRONG_PASSWORD = f"not-the-password-{secrets.token_hex(8)}"


def no_metadata(config: dict[str, Any]) -> list[str]:
    """Ask for metadata with ``config``; assert none comes; return what librdkafka reported."""
    errors: list[str] = []
    client = AdminClient({**config, "error_cb": lambda e: errors.append(e.str())})
    with pytest.raises(KafkaException):
        client.list_topics(timeout=4)
    client.poll(1)  # serves the error callbacks
    return errors


@pytest.fixture
def bad(secure_env: SecureEnv, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """librdkafka configurations that must not connect, by what is wrong with them."""
    good = ck_config(secure_env.credentials("mk"))
    other_ca = ensure_tls(tmp_path / "other-ca").ca_cert
    return {
        "password": good | {"sasl.password": WRONG_PASSWORD},
        "mechanism": good | {"sasl.mechanism": "SCRAM-SHA-256"},
        "plaintext": {"bootstrap.servers": good["bootstrap.servers"]},
        "ca": good | {"ssl.ca.location": str(other_ca)},
    }


async def test_a_client_that_is_not_ours_gets_no_connection(
    bad: dict[str, dict[str, Any]], secure_env: SecureEnv
) -> None:
    assert AdminClient(ck_config(secure_env.credentials("mk"))).list_topics(timeout=10).brokers
    errors = {what: no_metadata(config) for what, config in bad.items()}
    assert all(errors.values()), errors
    assert any("Authentication failed" in e for e in errors["password"])
    assert any("SCRAM-SHA-256" in e for e in errors["mechanism"])
    assert any("certificate verify failed" in e for e in errors["ca"])


def _bad_settings(env: SecureEnv, what: str, tmp_path: Path) -> BusSettings:
    good = env.as_principal("mk")
    update: dict[str, Any] = {
        "password": {"sasl_password": SecretStr(WRONG_PASSWORD)},
        "mechanism": {"sasl_mechanism": "SCRAM-SHA-256"},
        "plaintext": {"security_protocol": "PLAINTEXT"},
        "ca": {"ssl_ca_file": ensure_tls(tmp_path / "other-ca").ca_cert},
        "user": {"sasl_username": env.principal("nobody")},
    }[what]
    return good.model_copy(update=update)


@pytest.mark.parametrize(
    ("what", "error", "sentence"),
    [
        ("password", AuthenticationFailed,
         r"authentication failed for user '{mk}' \(SCRAM-SHA-512\)"),
        ("user", AuthenticationFailed,
         r"authentication failed for user '{nobody}' \(SCRAM-SHA-512\)"),
        ("mechanism", AuthenticationFailed,
         r"authentication failed for user '{mk}' \(SCRAM-SHA-256\): the broker does not accept"),
        ("plaintext", TlsError, r"expects TLS, but this client connects with PLAINTEXT"),
        ("ca", TlsError, r"the broker's certificate is not signed by .*other-ca/ca.pem"),
    ],
)  # fmt: skip
async def test_our_clients_say_why_they_cannot_connect(
    secure_env: SecureEnv,
    keys_dir: Path,
    tmp_path: Path,
    what: str,
    error: type[KafkaError],
    sentence: str,
) -> None:
    agreements_keys(keys_dir, secure_env.agreements)
    settings = _bad_settings(secure_env, what, tmp_path)
    pattern = sentence.format(mk=secure_env.principal("mk"), nobody=secure_env.principal("nobody"))

    with pytest.raises(error, match=pattern) as publishing:
        async with Publisher(settings, origin="mk"):
            pass
    with pytest.raises(error, match=pattern):
        async with Admin(settings):
            pass

    async def handle(_: object) -> None:
        return None

    with pytest.raises(error, match=pattern):
        async with Subscriber(settings, group_id=f"{settings.sasl_username}.g",
                              pattern="^nothing$", handler=handle):  # fmt: skip
            pass
    assert "Unable to bootstrap" not in str(publishing.value)
    assert WRONG_PASSWORD not in str(publishing.value)


async def test_the_controller_listener_is_on_loopback_and_refuses_clients_without_its_login(
    secure_env: SecureEnv,
) -> None:
    port = secure_env.broker.env["BUS_KAFKA_CONTROLLER_PORT"]
    server = (secure_env.broker.data_dir / "server.properties").read_text()
    assert f"CONTROLLER://127.0.0.1:{port}" in server
    assert "CONTROLLER:SASL_PLAINTEXT" in server
    # Creating an ACL through the controller port without its login: no connection, no ACL.
    client = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    binding = AclBinding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:intruder",
                         "*", AclOperation.ALL, AclPermissionType.ALLOW)  # fmt: skip
    future = client.create_acls([binding], request_timeout=5)[binding]
    with pytest.raises(KafkaException):
        future.result(timeout=15)
    _, bindings = current_state(secure_env.admin, admin_client(secure_env.admin))
    assert not [b for b in bindings if b.principal == "User:intruder"]
    # … nor with the administrator's SCRAM login, which that listener does not take.
    admin = ck_config(secure_env.broker.admin_config)
    errors = no_metadata({**admin, "bootstrap.servers": f"127.0.0.1:{port}"})
    assert errors
