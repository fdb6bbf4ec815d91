"""One real Apache Kafka broker (KRaft) for the whole test session, started from the Maven jars.

Set BUS_TEST_BOOTSTRAP_SERVERS to run the suite against a broker you started yourself instead.
Every test uses its own uniquely named topics and groups, so tests never see each other's data.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from bus.kafka import Admin
from bus.kafka.local import LocalKafka
from bus.keys import generate_keypair
from bus.settings import BusSettings
from bus.topics import TopicSpec
from tests.conftest import REPO, unique


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("BUS_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    settings = BusSettings(
        kafka_data_dir=tmp_path_factory.mktemp("kafka"),
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
        kafka_heap_mb=1024,
    )
    broker = LocalKafka(settings)
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker of the test's own, started, for a test that stops or restarts it: doing that to
    the session's broker would harm every other test. Stopped after the test."""
    broker = LocalKafka(
        BusSettings(
            kafka_data_dir=tmp_path / "own-kafka",
            kafka_port=_free_port(),
            kafka_controller_port=_free_port(),
        )
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


#: Topic prefixes handed out during the running test; their topics are deleted after it.
_PREFIXES: list[str] = []


def prefixed(settings: BusSettings) -> BusSettings:
    """The same settings under a topic prefix of this test's own (deleted after the test)."""
    prefix = f"{unique('t')}."
    _PREFIXES.append(prefix)
    return settings.model_copy(update={"topic_prefix": prefix})


@pytest.fixture(autouse=True)
async def _delete_test_topics(bootstrap_servers: str) -> AsyncIterator[None]:
    # Every partition holds open files in the broker: without this, a long suite would run a
    # single test broker into its open-files limit.
    yield
    prefixes = tuple(_PREFIXES)
    _PREFIXES.clear()
    if not prefixes:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        for i in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[i : i + 100])
    finally:
        await admin.close()


@pytest.fixture
def settings(bootstrap_servers: str, keys_dir: Path) -> BusSettings:
    return BusSettings(
        bootstrap_servers=bootstrap_servers,
        keys_dir=keys_dir,
        schemas_dir=REPO / "schemas",
        publish_timeout_ms=20_000,
        handler_retry_backoff_ms=10,
        topic_partitions=3,
    )


@pytest.fixture
def country_keys(keys_dir: Path) -> Path:
    """Signing keys for a few countries and the hub."""
    for key_id in ("rs", "mk", "al", "ba", "gr", "me", "xk", "hub"):
        generate_keypair(keys_dir, key_id)
    return keys_dir


async def create_topics(settings: BusSettings, *names: str, partitions: int = 3) -> None:
    async with Admin(settings) as admin:
        await admin.ensure_topics([TopicSpec(n, partitions, 1) for n in names])


@pytest.fixture
async def admin(settings: BusSettings) -> AsyncIterator[Admin]:
    async with Admin(settings) as a:
        yield a
