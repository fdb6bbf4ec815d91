"""The local broker explains what is missing instead of failing obscurely."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bus import BusSettings, KafkaLocalError
from bus.kafka.local import LocalKafka, _kafka_cluster_id


def test_without_java_or_maven_the_message_names_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn on it
    monkeypatch.delenv("JAVA_HOME", raising=False)
    broker = LocalKafka(BusSettings(kafka_cache_dir=tmp_path / "cache", kafka_data_dir=tmp_path))
    with pytest.raises(KafkaLocalError) as info:
        broker.ensure_jars()
    message = str(info.value)
    assert "Java" in message
    assert "Maven" in message
    assert "docker compose up" in message


def test_status_of_a_broker_never_started_is_stopped(tmp_path: Path) -> None:
    status = LocalKafka(BusSettings(kafka_data_dir=tmp_path, kafka_port=1)).status()
    assert not status.running
    assert status.pid is None


def test_a_data_directory_keeps_the_security_it_was_formatted_with(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "meta.properties").write_text("formatted")  # a plain broker's data
    secure = BusSettings(kafka_data_dir=tmp_path, kafka_secure=True, kafka_port=1,
                         credentials_dir=tmp_path / "credentials")  # fmt: skip
    with pytest.raises(KafkaLocalError, match=r"formatted plain.*asks for a secure broker"):
        LocalKafka(secure).start()
    assert not LocalKafka(secure).status().secure


def test_a_cluster_id_never_starts_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert _kafka_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"  # the first draw gave '-wAA…'


def test_the_controller_port_follows_the_client_port_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second broker on one machine needs only a port of its own: its controller port is the
    # next one, not the first broker's 9093.
    monkeypatch.delenv("BUS_KAFKA_CONTROLLER_PORT", raising=False)
    monkeypatch.setenv("BUS_KAFKA_PORT", "41092")
    assert BusSettings().kafka_controller_port == 41093
    monkeypatch.setenv("BUS_KAFKA_CONTROLLER_PORT", "41100")
    assert BusSettings().kafka_controller_port == 41100
    monkeypatch.delenv("BUS_KAFKA_PORT")
    monkeypatch.delenv("BUS_KAFKA_CONTROLLER_PORT")
    assert (BusSettings().kafka_port, BusSettings().kafka_controller_port) == (9092, 9093)
