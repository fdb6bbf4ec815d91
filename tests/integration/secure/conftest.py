"""One secure broker (SASL_SSL, SCRAM-SHA-512, ACLs enforced) for the security tests' session.

It is started lazily, the first time a test asks for it, through the command an operator uses
(`bus kafka start --secure`), whose output is kept so that tests can check it shows no secret.
Each test gets its own topic prefix, hence its own principals (``<prefix><id>``), its own
credentials directory and its own topics.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus.access.acl import Access, derive_access
from bus.access.apply import admin_client, apply_plan, plan_access
from bus.agreements import Agreements, load_agreements
from bus.kafka import Admin
from bus.kafka.local import LocalKafka
from bus.schemas import SchemaRegistry
from bus.settings import BusSettings
from bus.topics import TopicSpec
from tests.conftest import REPO, unique
from tests.integration.conftest import _free_port

AGREEMENTS = REPO / "examples" / "agreements.yaml"


@dataclass
class SecureBrokerInfo:
    bootstrap_servers: str
    data_dir: Path
    admin_config: Path
    #: What `bus kafka start --secure` printed (stdout and stderr).
    start_output: str
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBrokerInfo]:
    base = tmp_path_factory.mktemp("secure-kafka")
    env = {
        **os.environ,
        "BUS_KAFKA_DATA_DIR": str(base / "data"),
        "BUS_CREDENTIALS_DIR": str(base / "credentials"),
        "BUS_KAFKA_PORT": str(_free_port()),
        "BUS_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "BUS_KAFKA_HEAP_MB": "512",
        "BUS_LOG_FORMAT": "json",
    }
    env.pop("BUS_CLIENT_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bus", "kafka", "start", "--secure"],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in proc.stdout.splitlines()
        if line.startswith("export ")
    )
    settings = BusSettings(
        kafka_data_dir=base / "data", credentials_dir=base / "credentials",
        kafka_port=int(env["BUS_KAFKA_PORT"]), kafka_secure=True,
    )  # fmt: skip
    broker = LocalKafka(settings)
    try:
        yield SecureBrokerInfo(
            bootstrap_servers=broker.bootstrap_servers,
            data_dir=base / "data",
            admin_config=Path(exports["BUS_CLIENT_CONFIG"]),
            start_output=proc.stdout + proc.stderr,
            env={k: v for k, v in env.items() if k.startswith("BUS_")} | exports,
        )
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _delete_test_topics() -> None:
    # Overrides the plain suite's clean-up (which would start the plain broker): each secure
    # test deletes its own topics through `secure_env`.
    return


@dataclass
class SecureEnv:
    """One test's view of the secure broker: the administrator and everything it applied."""

    admin: BusSettings
    agreements: Agreements
    access: Access
    broker: SecureBrokerInfo
    topics: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.admin.topic_prefix

    def principal(self, pid: str) -> str:
        return self.prefix + pid

    def credentials(self, pid: str) -> Path:
        return self.admin.credentials_dir / f"{self.principal(pid)}.properties"

    def as_principal(self, pid: str, **update: Any) -> BusSettings:
        """Settings of the project's own clients acting as ``pid`` (its client.properties)."""
        return BusSettings(
            client_config=self.credentials(pid), topic_prefix=self.prefix,
            keys_dir=self.admin.keys_dir, schemas_dir=self.admin.schemas_dir,
            agreements=self.admin.agreements, credentials_dir=self.admin.credentials_dir,
            publish_timeout_ms=20_000, connect_timeout_ms=20_000, **update,
        )  # fmt: skip

    def apply(self, agreements: Agreements | None = None) -> list[str]:
        """`bus access apply` as a function: returns the plan's lines."""
        if agreements is not None:
            self.agreements = agreements
            self.access = derive_access(agreements, self.admin.topics)
        client = admin_client(self.admin)
        plan = plan_access(self.admin, self.access, client)
        apply_plan(self.admin, plan, client)
        return plan.lines()

    async def create_topics(self, *names: str, partitions: int = 1) -> None:
        async with Admin(self.admin) as admin:
            await admin.ensure_topics([TopicSpec(n, partitions, 1) for n in names])
        self.topics += names


def ck_config(properties: Path, **extra: Any) -> dict[str, Any]:
    """A client.properties read the way a partner would, for confluent-kafka."""
    config: dict[str, Any] = {}
    for line in properties.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            config[key.strip()] = value.strip()
    return config | extra


@pytest.fixture
async def secure_env(
    secure_broker: SecureBrokerInfo, tmp_path: Path, keys_dir: Path
) -> AsyncIterator[SecureEnv]:
    prefix = f"{unique('s')}."
    admin = BusSettings(
        client_config=secure_broker.admin_config, credentials_dir=tmp_path / "credentials",
        topic_prefix=prefix, keys_dir=keys_dir, schemas_dir=REPO / "schemas",
        agreements=AGREEMENTS, publish_timeout_ms=20_000,
    )  # fmt: skip
    agreements = load_agreements(AGREEMENTS, schemas=SchemaRegistry.load(REPO / "schemas"))
    env = SecureEnv(admin, agreements, derive_access(agreements, admin.topics), secure_broker)
    await asyncio.to_thread(env.apply)
    yield env
    # Every principal of this test goes: its ACLs, then its login.
    client = admin_client(admin)
    nobody = Access(prefix, {})
    await asyncio.to_thread(lambda: apply_plan(admin, plan_access(admin, nobody, client), client))
    if env.topics:
        async with Admin(admin) as a:
            existing = await a.list_topics()
            doomed = [t for t in existing if t.startswith(prefix)]
            if doomed:
                await a._client.delete_topics(doomed)
