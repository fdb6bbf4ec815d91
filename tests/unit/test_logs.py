"""The Kafka client's own log records: through structlog, at a sensible level, rate-limited."""

from __future__ import annotations

import logging

import structlog
from structlog.testing import capture_logs

from bus.logs import ClientLogBridge, configure_logging


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _client_logger(bridge: ClientLogBridge) -> logging.Logger:
    logger = logging.getLogger("aiokafka.test-bridge")
    logger.handlers[:] = [bridge]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_a_hundred_repeats_of_one_message_come_out_once_then_counted() -> None:
    clock = _Clock()
    logger = _client_logger(ClientLogBridge(interval_s=30, clock=clock))
    with capture_logs() as logs:
        for _ in range(100):
            logger.error("Topic %s not found in cluster metadata", "bus.schemas")
        logger.warning("Got error produce response on %s, retrying", "bus.schemas-0")
        clock.now = 31
        logger.error("Topic %s not found in cluster metadata", "bus.audit")
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("Topic bus.schemas not found in cluster metadata", "warning"),
        ("Got error produce response on bus.schemas-0, retrying", "warning"),
        ("Topic bus.audit not found in cluster metadata", "warning"),
    ]
    assert all(e["component"] == "kafka-client" for e in logs)
    assert logs[2]["repeats_left_out"] == 99
    assert "repeats_left_out" not in logs[0]


def test_client_info_is_info_and_debug_is_debug() -> None:
    logger = _client_logger(ClientLogBridge(clock=_Clock()))
    with capture_logs() as logs:
        logger.info("Discovered coordinator %s", 1)
        logger.debug("Sending request %s", 7)
    assert [e["log_level"] for e in logs] == ["info", "debug"]


def test_configure_logging_routes_aiokafka_through_structlog_once() -> None:
    client = logging.getLogger("aiokafka")
    saved = (structlog.get_config(), client.handlers[:], client.propagate, client.level)
    try:
        configure_logging("INFO", "json")
        configure_logging("INFO", "json")
        assert [type(h) for h in client.handlers].count(ClientLogBridge) == 1
        assert client.propagate is False
        assert client.level == logging.WARNING  # its INFO narrates every connection
    finally:
        config, client.handlers[:], client.propagate, level = saved
        client.setLevel(level)
        structlog.configure(**config)
