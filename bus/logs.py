"""structlog set-up: JSON lines when not on a terminal, key-value when a person is watching.

The Kafka client (aiokafka) logs through the standard library. Its records are passed to
structlog (``component=kafka-client``), so they have the bus's format, and each kind of
message (its format string) at most once per ``CLIENT_LOG_INTERVAL_S``, with the count of those
left out since: a client retrying against a broker that is starting up says so once, not a
hundred times. Its errors come out as warnings: what it retries is not yet the bus's error, and
what it gives up on reaches the bus as an exception, which the bus reports with its context.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

_configured = False

#: The shortest time between two records of the same kind from the Kafka client.
CLIENT_LOG_INTERVAL_S = 30.0


class ClientLogBridge(logging.Handler):
    """Hands a client library's stdlib log records to structlog, each kind rate-limited."""

    def __init__(
        self,
        interval_s: float = CLIENT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        # One entry per log call site of the library (its format string): a bounded number.
        self._last: dict[tuple[str, str], float] = {}
        self._left_out: dict[tuple[str, str], int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        kind = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._last[kind] = now
        context: dict[str, Any] = {"logger": record.name}
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            context["repeats_left_out"] = left_out
        if record.exc_info:
            context["exc_info"] = record.exc_info
        try:
            message = record.getMessage()
        except Exception:  # a library's broken format string must not break the caller
            message = str(record.msg)
        log = structlog.get_logger().bind(component="kafka-client")
        if record.levelno >= logging.WARNING:
            log.warning(message, **context)
        elif record.levelno >= logging.INFO:
            log.info(message, **context)
        else:
            log.debug(message, **context)


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging once; later calls only change the level."""
    global _configured
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    if not _configured:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    # aiokafka logs through the standard library: through structlog, rate-limited, and only
    # from WARNING up (its INFO lines narrate every connection).
    client = logging.getLogger("aiokafka")
    if not any(isinstance(h, ClientLogBridge) for h in client.handlers):
        client.addHandler(ClientLogBridge())
    client.propagate = False
    client.setLevel(logging.WARNING if numeric < logging.WARNING else numeric)
    _configured = True


def get_logger(name: str, **context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger with ``component=name`` and the given context bound to every line."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(
        component=name, **context
    )
    return logger
