"""docker-compose.yml offers the single node by default and, as profile `cluster`, the same
three-node cluster as `bus kafka start --nodes 3`. Docker cannot run here: its structure is
checked instead."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import REPO


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key repeated in one mapping (PyYAML keeps the last)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    repeated = {k for k in keys if keys.count(k) > 1}
    if repeated:
        raise yaml.constructor.ConstructorError(
            None, None, f"repeated keys {repeated}", node.start_mark
        )
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.load((REPO / "docker-compose.yml").read_text(), _StrictLoader)
    return compose


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(_compose()["services"])


def test_the_single_node_still_starts_by_default(services: dict[str, Any]) -> None:
    single = services["kafka"]
    assert "profiles" not in single
    assert single["ports"] == ["9092:9092"]
    assert single["environment"]["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1


def test_the_cluster_profile_runs_three_nodes_of_one_quorum(services: dict[str, Any]) -> None:
    nodes = [services[f"kafka-{i}"] for i in (1, 2, 3)]
    envs = [node["environment"] for node in nodes]
    assert all(node["profiles"] == ["cluster"] for node in nodes)
    assert [env["KAFKA_NODE_ID"] for env in envs] == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs}
    assert voters == {"1@kafka-1:29093,2@kafka-2:29093,3@kafka-3:29093"}
    for i, (node, env) in enumerate(zip(nodes, envs, strict=True), start=1):
        port = 9091 + i  # the same client ports as `bus kafka start --nodes 3`
        assert node["ports"] == [f"{port}:{port}"]
        assert f"EXTERNAL://:{port}" in env["KAFKA_LISTENERS"]
        assert f"EXTERNAL://127.0.0.1:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert f"INTERNAL://kafka-{i}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert node["volumes"] == [f"kafka-{i}-data:/var/lib/kafka/data"]


def test_the_cluster_replicates_three_times_and_needs_two(services: dict[str, Any]) -> None:
    for i in (1, 2, 3):
        env = services[f"kafka-{i}"]["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2


def test_every_named_volume_is_declared() -> None:
    compose = _compose()
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert used <= set(compose["volumes"])
