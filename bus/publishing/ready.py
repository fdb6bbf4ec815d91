"""One alert made ready to produce, the same in the publishing process and in a worker.

``prepare_chunk`` validates, checks the origin, encodes and signs a list of alerts, and stops at
the first that cannot be: it returns the ones made ready before it and a ``ChunkFailure`` naming
it. A ``Ready`` is plain data (strings, bytes, an int), cheap to send over a pipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pydantic

from bus import errors
from bus.batching import murmur2
from bus.codec import AlertCodec
from bus.errors import BusError, OriginMismatch, ValidationError
from bus.keys import Signer
from bus.models import ALERT_MODELS, Alert


class Ready(NamedTuple):
    """An alert validated, encoded and signed: what its record needs, and no model."""

    alert_type: str
    alert_id: str
    key: bytes
    value: bytes
    signature: bytes
    #: murmur2 of ``key``, from which the partition is chosen as aiokafka's partitioner does.
    key_hash: int

    @classmethod
    def of(cls, alert: Alert, value: bytes, signature: bytes) -> Ready:
        key = alert.record_key
        return cls(alert.alert_type, str(alert.alert_id), key, value, signature, murmur2(key))


class ChunkFailure(NamedTuple):
    """The first alert of a chunk that could not be made ready, and why (no alert content)."""

    position: int  # in the chunk
    error: str  # the name of a ``bus.errors`` class
    message: str
    field: str | None

    @classmethod
    def of(cls, position: int, exc: BaseException) -> ChunkFailure:
        if isinstance(exc, BusError):
            return cls(position, type(exc).__name__, str(exc), getattr(exc, "field", None))
        return cls(position, "BusError", f"{type(exc).__name__}: {exc}", None)

    def exception(self) -> BusError:
        """The error as the publishing process raises it, of the class the worker raised."""
        cls = getattr(errors, self.error, None)
        if not (isinstance(cls, type) and issubclass(cls, BusError)):
            cls = BusError
        if cls is ValidationError:
            return ValidationError(self.message, field=self.field)
        try:
            return cls(self.message)
        except TypeError:  # a class that wants more than a message
            return BusError(self.message)


def parse_alert(data: Mapping[str, Any], alert_type: str | None = None) -> Alert:
    """Validate an Avro-shaped dict (as in ``examples/alerts/``) into its alert model.

    The type comes from ``alert_type`` or from the dict's ``alert_type`` key. A problem raises
    ``ValidationError`` naming the field, e.g. ``header.occurred_at``.
    """
    if not isinstance(data, Mapping):
        raise ValidationError(
            "An alert is a mapping of its fields (as in examples/alerts/) or an alert model; "
            f"got {_kind(data)}",
            field="(alert)",
        )
    body = dict(data)
    declared = body.pop("alert_type", None)
    kind = alert_type or declared
    if not isinstance(kind, str) or kind not in ALERT_MODELS:
        raise ValidationError(
            f"Alert type {kind!r} is not known; expected one of {', '.join(sorted(ALERT_MODELS))} "
            "(give it as the 'alert_type' key or --type)",
            field="alert_type",
        )
    try:
        return ALERT_MODELS[kind].model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(kind, exc) from exc


def validation_error(alert_type: str, exc: pydantic.ValidationError) -> ValidationError:
    """The first problem, naming the field and the kind of value that came, never the value:
    a name or a date of birth is personal data, and error messages end up in logs."""
    errors_ = exc.errors()
    first = errors_[0]
    where = ".".join(str(p) for p in first["loc"]) or "(alert)"
    more = f" (and {len(errors_) - 1} more problem(s))" if len(errors_) > 1 else ""
    got = "" if first["type"] == "missing" else f" (got {_kind(first['input'])})"
    return ValidationError(
        f"Invalid {alert_type} alert: field {where}: {first['msg']}{got}{more}", field=where
    )


def _kind(value: Any) -> str:
    if isinstance(value, str | bytes | list | dict):
        return f"{type(value).__name__} of length {len(value)}"
    return "null" if value is None else type(value).__name__


def check_origin(alert: Alert, origin: str) -> None:
    """Refuse an alert that claims another country than the one publishing it."""
    if alert.origin != origin:
        raise OriginMismatch(
            f"Alert {alert.alert_id} has header.origin {alert.origin!r}, but this publisher "
            f"publishes as {origin!r}; a country publishes only its own alerts"
        )


def prepare_alert(
    item: Alert | Mapping[str, Any], codec: AlertCodec, signer: Signer, origin: str
) -> tuple[Alert, bytes, bytes]:
    """Validate, check the origin, encode and sign one alert: (alert, value, signature).

    Raises what the problem is (``ValidationError``, ``OriginMismatch``)."""
    alert = item if isinstance(item, Alert) else parse_alert(item)
    check_origin(alert, origin)
    value = codec.encode(alert)
    return alert, value, signer.sign(value)


def make_ready(
    item: Alert | Mapping[str, Any], codec: AlertCodec, signer: Signer, origin: str
) -> Ready:
    """``prepare_alert``, as the plain data its record needs."""
    return Ready.of(*prepare_alert(item, codec, signer, origin))


def prepare_chunk(
    items: Sequence[Alert | Mapping[str, Any]], codec: AlertCodec, signer: Signer, origin: str
) -> tuple[list[Ready], ChunkFailure | None]:
    """Make each alert ready in order; stop at the first that cannot be, and name it."""
    ready: list[Ready] = []
    for index, item in enumerate(items):
        try:
            ready.append(make_ready(item, codec, signer, origin))
        except Exception as exc:  # every alert's problem is reported, none ends the worker
            return ready, ChunkFailure.of(index, exc)
    return ready, None
