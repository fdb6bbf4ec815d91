"""What goes wrong in an adapter, under the bus's one exception tree.

    BusError
    └── AdapterError        an adapter cannot run (configuration, an unknown country)
        ├── RecordRejected  one native record cannot become an alert (names the field)
        ├── FeedRejected    a whole file cannot be read (size, encoding, syntax)
        └── BatchRejected   an HTTP batch holds rejected records; nothing was published

Reasons name the native field (``датум_рођења``, ``ημ_γέννησης``) and say what was expected, so
that the national system's operators can fix the record at its source. An error no code
foresaw becomes a rejection too, ``unexpected <class>: <message>`` (see ``unexpected``): one
hostile or odd record or file must never stop the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

from bus.errors import BusError


class AdapterError(BusError):
    """An adapter cannot run: a setting, a key or a mapping is missing or wrong."""


#: How much of an unforeseen error's message a reason keeps.
_MAX_UNEXPECTED_CHARS = 500


class RecordRejected(AdapterError):
    """One native record cannot become an alert; ``field`` names the native field, if any.

    ``unexpected`` holds the error no code foresaw, when that is why (see ``unexpected``).
    """

    def __init__(
        self, reason: str, *, field: str | None = None, unexpected: Exception | None = None
    ) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.unexpected = unexpected


class FeedRejected(AdapterError):
    """A whole file cannot be read; ``where`` says where the problem is, if known."""

    def __init__(self, reason: str, *, where: str | None = None) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where


class BatchRejected(AdapterError):
    """Records of a batch were rejected; ``problems`` holds (index, field, reason) for each."""

    def __init__(self, problems: Sequence[tuple[int, str | None, str]]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"record {first[0]}: {first[1] or '(record)'}: {first[2]}{more}")
        self.problems = list(problems)


def unexpected_reason(exc: BaseException) -> str:
    """``unexpected <class>: <message>``, the message cut to a readable length."""
    message = str(exc)
    if len(message) > _MAX_UNEXPECTED_CHARS:
        message = message[:_MAX_UNEXPECTED_CHARS] + "..."
    return f"unexpected {type(exc).__name__}: {message}"


def unexpected(exc: Exception) -> RecordRejected:
    """The rejection of a record for an error no code foresaw (raise it ``from exc``)."""
    return RecordRejected(unexpected_reason(exc), unexpected=exc)
