"""Field types and the frozen base shared by every model, so each rule is written once."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_COUNTRY_CODE = re.compile(r"[a-z]{2}")


def _country_code(value: Any) -> Any:
    # Lower-case before pydantic checks the type, so that "RS" and "XK" are accepted.
    if isinstance(value, str):
        lowered = value.lower()
        if _COUNTRY_CODE.fullmatch(lowered) is None:
            raise ValueError(
                f"expected a two-letter ISO 3166-1 alpha-2 country code such as 'rs' or 'xk', "
                f"got {value!r}"
            )
        return lowered
    return value


def _utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"expected a timezone-aware datetime such as '2014-07-29T10:15:00Z', got the naive "
            f"{value.isoformat()!r}; add 'Z' or an offset such as '+02:00'"
        )
    # Avro timestamp-millis holds milliseconds: truncating here makes a decoded alert equal
    # the one that was encoded.
    utc = value.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


#: A lower-case ISO 3166-1 alpha-2 country code (``xk`` for Kosovo); upper case is lowered.
CountryCode = Annotated[str, BeforeValidator(_country_code)]

#: A timezone-aware instant, normalised to UTC and truncated to milliseconds; naive is rejected.
UtcDatetime = Annotated[datetime, AfterValidator(_utc_millis)]


class Record(BaseModel):
    """Base of every model: immutable, and unknown fields are errors rather than silently lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_avro(self) -> dict[str, Any]:
        """This record as the dict fastavro's writer takes, fields in schema order."""
        return {name: _to_avro_value(getattr(self, name)) for name in type(self).model_fields}


def _to_avro_value(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_avro()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_to_avro_value(item) for item in value]
    if isinstance(value, str | int | float | bool | date | None):  # datetime is a date
        return value
    raise TypeError(f"no Avro form for {type(value).__name__}: {value!r}")
