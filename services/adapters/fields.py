"""Reading one native record's fields by a country's conventions, with precise rejections.

A mapping never indexes the raw dict: it asks ``NativeRecord`` for a typed value, and a missing,
malformed or unknown value raises ``RecordRejected`` naming the native field and what was
expected, e.g. ``датум_рођења: expected a date like 31.12.2014. (dd.mm.yyyy.), got '31.02.1990.'``.

    rec = NativeRecord(row, SERBIAN)
    rec.date("датум_рођења")                      # datetime.date
    rec.instant("датум", "време")                 # local time in Europe/Belgrade → UTC
    rec.country("држављанство")                   # "Грчка" → "gr"
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from services.adapters.country_names import country_code
from services.adapters.errors import RecordRejected

T = TypeVar("T")

#: The largest whole number a native field may give: every count of the alerts is an Avro ``int``
#: (32-bit; ``bus.models`` refuses more too, but here the reason names the native field).
MAX_WHOLE_NUMBER = 2**31 - 1

_FORMAT_NAMES = {"%d": "dd", "%m": "mm", "%Y": "yyyy", "%H": "HH", "%M": "MM", "%S": "SS"}
_AMOUNT = re.compile(r"[\d.,\s']+")
_CHOICE_SPACES = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class Conventions:
    """How one country writes values: language, local time zone, date and number formats."""

    language: str
    timezone: ZoneInfo
    date_formats: tuple[str, ...]
    time_formats: tuple[str, ...] = ("%H:%M", "%H:%M:%S")
    #: Formats of a date and time in one field; each date format followed by a space and each
    #: time format is also tried.
    datetime_formats: tuple[str, ...] = ()
    #: True where "2.000,50" means two thousand and a half (most of the region).
    decimal_comma: bool = True
    yes: tuple[str, ...] = ("yes", "true", "1")
    no: tuple[str, ...] = ("no", "false", "0")

    def all_datetime_formats(self) -> tuple[str, ...]:
        combined = tuple(f"{d} {t}" for d in self.date_formats for t in self.time_formats)
        return self.datetime_formats + combined


def human_format(fmt: str) -> str:
    """``%d.%m.%Y.`` → ``dd.mm.yyyy.``, for messages."""
    for code, name in _FORMAT_NAMES.items():
        fmt = fmt.replace(code, name)
    return fmt


def _example(fmt: str) -> str:
    return datetime(2014, 12, 31, 23, 59).strftime(fmt)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _too_large(maximum: int, number: int) -> str:
    bound = " (the largest Avro int)" if maximum == MAX_WHOLE_NUMBER else ""
    return f"expected a number of at most {maximum}{bound}, got {_short(number)}"


def choice_key(text: str) -> str:
    """Fold a code word for lookup: no accents, lower case, spaces and dashes as underscores."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _CHOICE_SPACES.sub("_", plain.casefold().strip())


class NativeRecord:
    """Typed access to a native record's fields; every problem names the field."""

    def __init__(self, data: Mapping[str, Any], conventions: Conventions, prefix: str = "") -> None:
        self._data = data
        self.conventions = conventions
        self._prefix = prefix

    def _reject(self, name: str, reason: str) -> RecordRejected:
        return RecordRejected(reason, field=f"{self._prefix}{name}")

    def value(self, name: str) -> Any:
        """The raw value, or None when absent, null or blank."""
        value = self._data.get(name)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def has(self, name: str) -> bool:
        return self.value(name) is not None

    # -- text and numbers --------------------------------------------------------------------

    def opt_text(self, name: str) -> str | None:
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._reject(name, f"expected text, got {type(value).__name__}")
        return " ".join(str(value).split())

    def text(self, name: str) -> str:
        value = self.opt_text(name)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    def opt_integer(
        self, name: str, *, minimum: int = 0, maximum: int = MAX_WHOLE_NUMBER
    ) -> int | None:
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self._reject(name, f"expected a whole number, got {type(value).__name__}")
        try:
            number = int(value) if isinstance(value, int) else int(value.strip().replace(" ", ""))
        except ValueError:
            raise self._reject(name, f"expected a whole number, got {_short(value)}") from None
        if number < minimum:
            raise self._reject(name, f"expected a number of at least {minimum}, got {number}")
        if number > maximum:
            raise self._reject(name, _too_large(maximum, number))
        return number

    def integer(self, name: str, *, minimum: int = 0, maximum: int = MAX_WHOLE_NUMBER) -> int:
        value = self.opt_integer(name, minimum=minimum, maximum=maximum)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    def opt_amount(self, name: str) -> float | None:
        """A money amount such as "2.000 €", "2000", "2 000,00 EUR" (decimal mark by country)."""
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            digits = "".join(_AMOUNT.findall(value)).replace(" ", "").replace("'", "")
            thousands, decimal = (".", ",") if self.conventions.decimal_comma else (",", ".")
            try:
                number = float(digits.replace(thousands, "").replace(decimal, "."))
            except ValueError:
                raise self._reject(name, f"expected an amount, got {_short(value)}") from None
        else:
            raise self._reject(name, f"expected an amount, got {type(value).__name__}")
        if number < 0 or number != number or number == float("inf"):
            raise self._reject(name, f"expected a positive amount, got {_short(value)}")
        return number

    # -- dates and times ---------------------------------------------------------------------

    def opt_date(self, name: str) -> dt.date | None:
        value = self.opt_text(name)
        if value is None:
            return None
        for fmt in self.conventions.date_formats:
            try:
                return datetime.strptime(value, fmt).date()
            except ValueError:
                continue
        fmt = self.conventions.date_formats[0]
        raise self._reject(
            name,
            f"expected a date like {_example(fmt)} ({human_format(fmt)}), got {_short(value)}",
        )

    def date(self, name: str) -> dt.date:
        value = self.opt_date(name)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    def opt_instant(self, date_field: str, time_field: str | None = None) -> datetime | None:
        """A local date and time (one field, or a date field and a time field) as UTC.

        The country's time zone applies unless the value carries its own offset (ISO 8601). A
        time missing from its own field reads as midnight. In the hour repeated when summer time
        ends, the first (summer) reading is taken.
        """
        if self.value(date_field) is None:
            return None
        if time_field is None:
            return self._datetime_field(date_field)
        day = self.date(date_field)
        clock = self.opt_text(time_field)
        if clock is None:
            local = datetime(day.year, day.month, day.day)
        else:
            local = self._time(time_field, clock, day)
        return local.replace(tzinfo=self.conventions.timezone).astimezone(UTC)

    def instant(self, date_field: str, time_field: str | None = None) -> datetime:
        value = self.opt_instant(date_field, time_field)
        if value is None:
            raise self._reject(date_field, "is missing; it is required")
        return value

    def _time(self, name: str, clock: str, day: dt.date) -> datetime:
        for fmt in self.conventions.time_formats:
            try:
                t = datetime.strptime(clock, fmt).time()
            except ValueError:
                continue
            return datetime.combine(day, t)
        fmt = self.conventions.time_formats[0]
        raise self._reject(
            name, f"expected a time like 23:59 ({human_format(fmt)}), got {_short(clock)}"
        )

    def _datetime_field(self, name: str) -> datetime:
        text = self.text(name)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is None:
            for fmt in self.conventions.all_datetime_formats():
                try:
                    parsed = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
        if parsed is None:
            fmt = self.conventions.all_datetime_formats()[0]
            raise self._reject(
                name,
                f"expected a date and time like {_example(fmt)} ({human_format(fmt)}), "
                f"got {_short(text)}",
            )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.conventions.timezone)
        return parsed.astimezone(UTC)

    # -- countries, code words, flags --------------------------------------------------------

    def opt_country(self, name: str) -> str | None:
        value = self.opt_text(name)
        if value is None:
            return None
        code = country_code(value)
        if code is None:
            raise self._reject(
                name,
                f"unknown country {_short(value)}; expected a country name (in a language of "
                "the region or English) or an ISO 3166 code",
            )
        return code

    def country(self, name: str) -> str:
        value = self.opt_country(name)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    def countries(self, name: str, *, separators: str = ",;") -> list[str]:
        """Countries from a list, or from text such as "Грчка > Албанија > Црна Гора"."""
        return [self._country_name(name, item) for item in self.words(name, separators)]

    def _country_name(self, name: str, text: str) -> str:
        code = country_code(text)
        if code is None:
            raise self._reject(name, f"unknown country {_short(text)} in the list")
        return code

    def words(self, name: str, separators: str = ",;", *, item: str | None = None) -> list[str]:
        """The items of a list field, or of text split at any of ``separators``; XML's
        ``<primaoci><primalac>rs</primalac>…</primaoci>`` arrives as a dict holding ``item``."""
        value = self.value(name)
        if value is None:
            return []
        if item is not None and isinstance(value, Mapping) and set(value) == {item}:
            value = value[item]
            value = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            items = value
        elif isinstance(value, str):
            items = re.split("[" + re.escape(separators) + "]", value)
        else:
            raise self._reject(name, f"expected a list, got {type(value).__name__}")
        out = []
        for item in items:
            if not isinstance(item, str | int):
                raise self._reject(name, f"expected a list of texts, got {type(item).__name__}")
            if str(item).strip():
                out.append(" ".join(str(item).split()))
        return out

    def counts(
        self, name: str, *, separators: str = ",;", pair: str = ":"
    ) -> list[tuple[str, int]]:
        """(country, count) pairs from {"Сирија": 12} or "Сирија: 12; Авганистан: 9"."""
        value = self.value(name)
        if value is None:
            return []
        if isinstance(value, dict):
            items = [(str(k), v) for k, v in value.items()]
        else:
            items = []
            for word in self.words(name, separators):
                country, sep, count = word.rpartition(pair)
                if not sep:
                    raise self._reject(
                        name, f"expected 'country{pair} count' items, got {_short(word)}"
                    )
                items.append((country.strip(), count.strip()))
        out = []
        for country, count in items:
            code = self._country_name(name, country)
            if isinstance(count, bool) or not isinstance(count, int | str):
                raise self._reject(name, f"expected a count for {country}, got {_short(count)}")
            try:
                number = int(count)
            except ValueError:
                reason = f"expected a count for {country}, got {_short(count)}"
                raise self._reject(name, reason) from None
            if number < 0:
                raise self._reject(name, f"expected a count of at least 0 for {country}")
            if number > MAX_WHOLE_NUMBER:
                raise self._reject(name, f"for {country}: {_too_large(MAX_WHOLE_NUMBER, number)}")
            out.append((code, number))
        return out

    def opt_choice(self, name: str, options: Mapping[str, T]) -> T | None:
        """One of ``options``, matched ignoring case, accents, and space-versus-underscore."""
        value = self.opt_text(name)
        return None if value is None else self._lookup(name, value, options)

    def choices(
        self,
        name: str,
        options: Mapping[str, T],
        *,
        separators: str = ",;",
        item: str | None = None,
    ) -> list[T]:
        """Several of ``options``, from a list or from text split at ``separators``."""
        words = self.words(name, separators, item=item)
        return [self._lookup(name, word, options) for word in words]

    def _lookup(self, name: str, value: str, options: Mapping[str, T]) -> T:
        folded = {choice_key(k): v for k, v in options.items()}
        key = choice_key(value)
        if key not in folded:
            allowed = ", ".join(sorted(options))
            raise self._reject(name, f"unknown value {_short(value)}; expected one of: {allowed}")
        return folded[key]

    def choice(self, name: str, options: Mapping[str, T]) -> T:
        value = self.opt_choice(name, options)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    def opt_flag(self, name: str) -> bool | None:
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        options = dict.fromkeys(self.conventions.yes, True)
        options.update(dict.fromkeys(self.conventions.no, False))
        return self.opt_choice(name, options)

    def flag(self, name: str) -> bool:
        value = self.opt_flag(name)
        if value is None:
            raise self._reject(name, "is missing; it is required")
        return value

    # -- nested records ----------------------------------------------------------------------

    def child(self, name: str) -> NativeRecord | None:
        """A nested object (JSON object, XML element with children), or None if absent."""
        value = self.value(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._reject(name, f"expected an object, got {type(value).__name__}")
        return NativeRecord(value, self.conventions, f"{self._prefix}{name}.")

    def children(self, name: str, item: str | None = None) -> list[NativeRecord]:
        """A list of nested objects. XML's ``<osobe><osoba/>…</osobe>`` arrives as a dict holding
        ``item``; a single object is a list of one."""
        value = self.value(name)
        if value is None:
            return []
        if item is not None and isinstance(value, Mapping) and set(value) == {item}:
            value = value[item]
        items: Sequence[Any] = value if isinstance(value, list) else [value]
        out = []
        for i, element in enumerate(items):
            if not isinstance(element, Mapping):
                kind = type(element).__name__
                raise self._reject(f"{name}[{i}]", f"expected an object, got {kind}")
            out.append(NativeRecord(element, self.conventions, f"{self._prefix}{name}[{i}]."))
        return out
