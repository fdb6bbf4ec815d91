"""The chaos tests start, freeze and kill brokers of their own: they need no session broker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.chaos.support import ORIGINS, Bus
from tests.integration.fanout_support import AGREEMENTS, agreements_keys, load_example_agreements


@pytest.fixture(autouse=True)
def _delete_test_topics() -> None:
    """Nothing to clean on the session broker: the brokers, and their topics, go with the test."""


@pytest.fixture
def chaos_bus(tmp_path: Path, keys_dir: Path) -> Bus:
    """The environment an operator would set up: keys, the example agreements, three origins.

    ``BUS_BOOTSTRAP_SERVERS`` is filled in once the test has started its brokers.
    """
    agreements_keys(keys_dir, load_example_agreements())
    env = {
        **os.environ,
        "BUS_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        "BUS_KAFKA_HEAP_MB": "384",
        "BUS_KEYS_DIR": str(keys_dir),
        "BUS_AGREEMENTS": str(AGREEMENTS),
        "BUS_SCHEMAS_DIR": str(REPO / "schemas"),
        "BUS_COUNTRIES": json.dumps(list(ORIGINS)),
        "BUS_LOG_FORMAT": "json",
        "BUS_FANOUT_METRICS_PORT": "0",  # no fixed port: other runs may share this machine
        "PYTHONPATH": str(REPO),
    }
    for name in ("BUS_KAFKA_SECURE", "BUS_TOPIC_PREFIX", "BUS_CLIENT_CONFIG",
                 "BUS_TOPIC_REPLICATION_FACTOR"):  # fmt: skip
        env.pop(name, None)
    return Bus(env, tmp_path / "logs")
