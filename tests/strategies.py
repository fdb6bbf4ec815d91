"""Hypothesis strategies for alerts, derived from the pydantic models' own annotations.

Deriving from the models (not from the examples) means a new field is generated the day it is
added; constraints (country codes, ``ge``/``le`` bounds) are read from the field metadata.
"""

from __future__ import annotations

import types
import uuid
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Union, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bus.models import ALERT_MODELS, Alert, MessageType
from bus.models._common import _CountryCodeSchema

COUNTRIES = ("al", "at", "ba", "de", "fr", "gr", "hr", "me", "mk", "rs", "si", "xk", "sy", "af")
PARTNERS = ("rs", "mk", "al", "europol", "frontex", "jc-tabanovce")
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24)


def _is_country(metadata: list[Any]) -> bool:
    return any(isinstance(m, _CountryCodeSchema) for m in metadata)


def _bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    # Field(ge=0) inside Annotated[int, Field(ge=0), INT32_RANGE] holds its bounds as metadata.
    expanded = [inner for m in metadata for inner in getattr(m, "metadata", [m])]
    for m in expanded:
        if isinstance(m, annotated_types.Ge):
            lo = int(m.ge)  # type: ignore[call-overload]
        elif isinstance(m, annotated_types.Le):
            hi = int(m.le)  # type: ignore[call-overload]
    return lo, hi


def _for_type(tp: Any, metadata: list[Any], name: str) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return st.none() | _for_type(inner[0], metadata, name)
    if origin is list:
        (item,) = get_args(tp)
        return st.lists(_for_type(item, metadata, name), max_size=3)
    if get_origin(tp) is not None and hasattr(tp, "__metadata__"):  # Annotated
        args = get_args(tp)
        return _for_type(args[0], [*metadata, *args[1:]], name)
    if hasattr(tp, "__metadata__"):
        return _for_type(tp.__origin__, [*metadata, *tp.__metadata__], name)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_dicts(tp)
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return st.sampled_from([m.value for m in tp])
    if tp is uuid.UUID:
        return st.uuids().map(str)
    if tp is datetime:
        return st.datetimes(
            min_value=datetime(1950, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        )
    if tp is date:
        return st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1))
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo, hi = _bounds(metadata)
        return st.integers(min_value=lo if lo is not None else -(2**31), max_value=hi or 2**31 - 1)
    if tp is float:
        return st.floats(min_value=0, max_value=1e9, allow_nan=False)
    if tp is str:
        if _is_country(metadata):
            return st.sampled_from(COUNTRIES)
        if name == "explicit_recipients":
            return st.sampled_from(PARTNERS)
        min_len = max((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)),
                      default=0)  # fmt: skip
        return _TEXT.filter(lambda t: len(t) >= min_len) if min_len else _TEXT
    raise TypeError(f"no strategy for {tp!r} ({name})")


def _field(name: str, info: FieldInfo) -> st.SearchStrategy[Any]:
    return _for_type(info.annotation, list(info.metadata), name)


def model_dicts(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({n: _field(n, i) for n, i in model.model_fields.items()})


def _fix_header(data: dict[str, Any]) -> dict[str, Any]:
    header = data["header"]
    if header["msg_type"] != MessageType.ALERT and not header["references"]:
        header["references"] = [str(uuid.uuid4())]
    header["references"] = [r for r in header["references"] if r != header["alert_id"]]
    if header["msg_type"] != MessageType.ALERT and not header["references"]:
        header["msg_type"] = MessageType.ALERT.value
    # Compare with a margin: the model truncates both to milliseconds.
    if header["expires_at"] is not None and header["expires_at"] - header["issued_at"] < timedelta(
        seconds=1
    ):
        header["expires_at"] = header["issued_at"] + timedelta(days=30)
    return data


def alerts(alert_type: str | None = None) -> st.SearchStrategy[Alert]:
    """Valid alerts of one type, or of every type."""
    kinds = [alert_type] if alert_type else sorted(ALERT_MODELS)
    return st.one_of(
        model_dicts(ALERT_MODELS[k]).map(_fix_header).map(ALERT_MODELS[k].model_validate)
        for k in kinds
    )
