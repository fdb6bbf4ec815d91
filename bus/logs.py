"""structlog set-up: JSON lines when not on a terminal, key-value when a person is watching."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


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
    # aiokafka logs through the standard library; keep its noise at WARNING.
    if not _configured:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logging.getLogger("aiokafka").setLevel(
        logging.WARNING if numeric < logging.WARNING else numeric
    )
    _configured = True


def get_logger(name: str, **context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger with ``component=name`` and the given context bound to every line."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(
        component=name, **context
    )
    return logger
