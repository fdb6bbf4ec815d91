"""Field types and the frozen base shared by every model, so each rule is written once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Self, TypeVar

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    SerializationInfo,
    WrapSerializer,
)
from pydantic_core import CoreSchema, core_schema

from bus.errors import ValidationError

# The rules below that pydantic-core can check itself (country codes, Avro int ranges) are
# core schemas, not Python validators: an alert is validated without calling back into Python
# for them. Instants and dates keep Python validators: their rules (milliseconds, not seconds;
# no floats; UTC; whole milliseconds; only "YYYY-MM-DD") have no pydantic-core equivalent.


class _CountryCodeSchema:
    """Two ASCII letters, lower-cased (so "RS" and "XK" are accepted), checked in pydantic-core."""

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # First a string (its own type error for anything else), then the code. The message
        # says what a country code is; pydantic's error carries the value given.
        return core_schema.chain_schema(
            [
                handler(source),
                core_schema.custom_error_schema(
                    # Rust regex: ``$`` is the end of the text (no trailing newline slips by).
                    core_schema.str_schema(pattern=r"^[A-Za-z]{2}$", to_lower=True),
                    custom_error_type="country_code",
                    custom_error_message="expected a two-letter ISO 3166-1 alpha-2 country "
                    "code such as 'rs' or 'xk'",
                ),
            ]
        )


#: The instant Avro timestamps count from: 1970-01-01T00:00:00Z.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: ``2014-07-29T10:15:00Z``, with milliseconds or microseconds or neither.
_PLAIN_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3}(?:[0-9]{3})?)?Z"
)


def _epoch_millis(value: Any) -> Any:
    # The schemas carry instants as a plain Avro long: milliseconds since the Unix epoch, UTC.
    # An int here is such a count (pydantic alone would read it as seconds, or guess
    # milliseconds for large values). Floats and numeric strings are refused rather than
    # guessed at; ISO 8601 strings and datetimes go on to pydantic. The messages leave out the
    # value: it may be personal data.
    if type(value) is str and ":" in value:  # an ISO 8601 timestamp; no number holds a ":"
        if _PLAIN_UTC.fullmatch(value):
            # The common form, as systems write it: read here, a fifth of pydantic's time
            # with the normalising after it. Any other (or an impossible date) goes on.
            try:
                return datetime.fromisoformat(value)  # aware, its tzinfo is UTC
            except ValueError:
                pass
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return EPOCH + value * _MILLISECOND
        except OverflowError:
            raise ValueError(
                "expected milliseconds since the Unix epoch within years 1 to 9999, got an "
                "integer out of that range"
            ) from None
    if isinstance(value, bool | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        got = "a string holding a number" if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"expected an integer count of milliseconds since the Unix epoch or an ISO 8601 "
            f"timestamp such as '2014-07-29T10:15:00Z', got {got}"
        )
    return value


def _utc_millis(value: datetime) -> datetime:
    # Avro carries whole milliseconds: truncating here makes a decoded alert equal the one that
    # was encoded. The common cases (UTC already, or a zero offset as "Z" gives) take one call.
    micros = value.microsecond // 1000 * 1000
    if value.tzinfo is UTC:  # from epoch milliseconds, or a datetime normalised before
        return value if micros == value.microsecond else value.replace(microsecond=micros)
    offset = None if value.tzinfo is None else value.utcoffset()
    if offset is None:
        raise ValueError(
            f"expected a timezone-aware datetime such as '2014-07-29T10:15:00Z', got the naive "
            f"{value.isoformat()!r}; add 'Z' or an offset such as '+02:00'"
        )
    if not offset:  # the same wall time in UTC, as astimezone(UTC) would give it
        return value.replace(tzinfo=UTC, microsecond=micros, fold=0)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError("expected an instant within years 1 to 9999 UTC") from None
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)  # an offset may hold some


def _iso_date(value: Any) -> Any:
    # The schemas carry dates as a plain Avro string, an ISO 8601 calendar date "YYYY-MM-DD";
    # pydantic alone would also take Unix timestamps and datetime strings. The message leaves out
    # the value: dates of birth are personal data.
    malformed = isinstance(value, str) and _ISO_DATE.fullmatch(value) is None
    if malformed or isinstance(value, int | float):  # bool is an int
        got = "a string in another format" if isinstance(value, str) else type(value).__name__
        raise ValueError(f"expected an ISO 8601 calendar date 'YYYY-MM-DD', got {got}")
    return value


def to_epoch_millis(value: datetime) -> int:
    """Milliseconds since the Unix epoch of a timezone-aware ``value``, by exact integer arithmetic
    (floor division, so instants before 1970 are negative and sub-millisecond parts dropped)."""
    return (value - EPOCH) // _MILLISECOND


@dataclass(frozen=True)
class AvroIntRange:
    """The whole numbers an Avro ``int`` or ``long`` holds; an annotation refusing the rest.

    fastavro writes an ``int`` above 2**31 - 1 without complaint (as bytes other Avro readers
    refuse or misread) and raises ``OverflowError`` above 2**63 - 1, so the models refuse such
    numbers first, naming the field. The message leaves out the value, like the others here.

    The range is checked in pydantic-core by steps of their own after the integer (a chain),
    not by the integer's ``ge``/``le``: a field's own bounds (``Field(ge=0)``) go into the
    integer step and can neither widen the Avro range nor be replaced by it.
    """

    avro_type: str
    low: int
    high: int

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.chain_schema(
            [
                handler(source),
                core_schema.custom_error_schema(
                    core_schema.int_schema(le=self.high),
                    custom_error_type="avro_int_range",
                    custom_error_message=f"expected at most {self.high}, the largest Avro "
                    f"{self.avro_type}, got a larger number",
                ),
                core_schema.custom_error_schema(
                    core_schema.int_schema(ge=self.low),
                    custom_error_type="avro_int_range",
                    custom_error_message=f"expected at least {self.low}, the smallest Avro "
                    f"{self.avro_type}, got a smaller number",
                ),
            ]
        )


INT32_RANGE = AvroIntRange("int", -(2**31), 2**31 - 1)
INT64_RANGE = AvroIntRange("long", -(2**63), 2**63 - 1)

#: A whole number an Avro ``int`` (32-bit) holds. Combine it with other bounds freely
#: (``count: Int32 = Field(ge=0)``): the range is a check of its own, which a second
#: ``ge``/``le`` cannot override or be overridden by. For a nullable bounded field write the
#: bounds first, ``Annotated[int, Field(ge=0), INT32_RANGE] | None``, so that pydantic-core
#: checks them too (after the range, pydantic would check them in Python: slower, as correct).
Int32 = Annotated[int, INT32_RANGE]
#: A whole number an Avro ``long`` (64-bit) holds.
Int64 = Annotated[int, INT64_RANGE]

#: A lower-case ISO 3166-1 alpha-2 country code (``xk`` for Kosovo); upper case is lowered.
CountryCode = Annotated[str, _CountryCodeSchema()]

#: A timezone-aware instant, normalised to UTC and truncated to milliseconds; naive is rejected.
#: Besides datetimes and ISO 8601 strings it takes an int: milliseconds since the Unix epoch, the
#: Avro form (``to_avro`` writes that).
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(_epoch_millis),
    AfterValidator(_utc_millis),
    WrapSerializer(lambda value, handler, info: _serialize_instant(value, handler, info)),
]

#: Serialization context under which ``model_dump`` writes the Avro form (see ``to_avro``).
_AVRO_CONTEXT = {"avro": True}


def _serialize_instant(value: datetime, handler: Any, info: SerializationInfo) -> Any:
    if info.context is _AVRO_CONTEXT:
        return to_epoch_millis(value)
    return handler(value)


#: A calendar date; as a string it must be ISO 8601 "YYYY-MM-DD", the Avro form (``to_avro``
#: writes that). Numbers are refused.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class Record(BaseModel):
    """Base of every model: immutable, and unknown fields are errors rather than silently lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_avro(self) -> dict[str, Any]:
        """This record as the dict fastavro's writer takes, fields in schema order.

        Enums become their symbols and UUIDs their canonical lower-case text; datetimes become
        milliseconds since the Unix epoch (an int) and dates ISO 8601 "YYYY-MM-DD" strings, as
        the schemas, which use no Avro logical types, declare them.
        """
        # pydantic's JSON mode already writes enums as symbols, UUIDs as text and dates as
        # "YYYY-MM-DD"; under the Avro context, instants become epoch milliseconds. Doing it in
        # pydantic-core is several times faster than walking the model in Python.
        record: dict[str, Any] = self.model_dump(mode="json", context=_AVRO_CONTEXT)
        return record


_R = TypeVar("_R", bound="Record")


def validate_avro(model: type[_R], record: dict[str, Any], avro_name: str, hint: str = "") -> _R:
    """``model`` built from a dict as fastavro's reader returns it.

    Raises ``bus.errors.ValidationError`` naming the first field that does not fit; the message
    leaves out the offending value, which may be personal data.
    """
    try:
        return model.model_validate(record)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ValidationError(
            f"{avro_name} record does not fit the model at {field or '<root>'!r}: "
            f"{first['msg']} ({exc.error_count()} error(s) in all){hint}",
            field=field or None,
        ) from exc


class ContractRecord(Record):
    """A record type the bus itself writes (a notice, a lookup), beside the alert types."""

    #: Kebab-case record type, as in ``schemas/<record_type>/`` and the ``bus-type`` header.
    record_type: ClassVar[str]
    #: Full name of the Avro record, e.g. ``eu.balkanalertbus.WithdrawalNotice``.
    avro_name: ClassVar[str]

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        return validate_avro(cls, record, cls.avro_name)
