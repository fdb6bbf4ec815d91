"""Removing fields from an alert by path, so that a partner's copy holds only what it may see.

    redact(alert.to_avro(), ["persons", "suspected_facilitator"])     # an Avro-shaped dict
    redact_alert(alert, ["suspects.travel_document.number"])            # an Alert of the same type
    removable_paths("irregular-crossing")                               # what may be removed at all
    copy = partner_copy(alert, value, signature, key_id, decision.redact, codec=codec, hub=hub)
    copy.value, copy.headers                                            # for the partner's inbox

A path is dotted Avro field names. A path through an array applies to every element
(``persons.family_name`` removes the family name of every person); a path through a nullable
record that is null has nothing to remove. A removed field becomes ``null`` when it is nullable
and ``[]`` when it is an array: the schemas make every personal field one or the other, so that a
redacted copy is still valid against the same schema and a partner decodes it like any other
alert. Required fields, and everything in the ``header`` (the alert's identity, origin, TLP and
references, which the bus and every partner rely on), are never removed.

A copy with fields removed is a new value, so the origin's signature no longer fits it: the bus
signs it with its own key (``bus-key-id: hub``) and lists the removed paths in ``bus-redacted``.
A copy with nothing removed is the origin's value and signature, byte for byte.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel

from bus.codec import AlertCodec
from bus.envelope import Headers, alert_headers
from bus.errors import PolicyError
from bus.keys import HUB_KEY_ID, Signer
from bus.models import ALERT_MODELS, Alert
from bus.schemas import SchemaRegistry

HEADER = "header"

_A = TypeVar("_A", bound=Alert)


class FieldKind(StrEnum):
    """What removing a field means: set it to null, empty it, or refuse (required)."""

    NULLABLE = "nullable"
    ARRAY = "array"
    REQUIRED = "required"


# -- which paths exist, and which may be removed ---------------------------------------------


def field_kinds(alert_type: str, schemas: SchemaRegistry | None = None) -> Mapping[str, FieldKind]:
    """Every field path of ``alert_type`` (header included) and its kind.

    Read from the newest schema version in ``schemas`` (the contract) when given, else from the
    pydantic model, which the model tests keep equal to the schema field by field.
    """
    if schemas is not None:
        kinds: dict[str, FieldKind] = {}
        _walk_avro(schemas.latest(alert_type).schema_json, "", {}, "", (), kinds)
        return kinds
    return _model_kinds(alert_type)


def removable_paths(alert_type: str, schemas: SchemaRegistry | None = None) -> frozenset[str]:
    """The paths of ``alert_type`` that a redaction may name: nullable or array, not the header."""
    return frozenset(
        path
        for path, kind in field_kinds(alert_type, schemas).items()
        if kind is not FieldKind.REQUIRED and not _in_header(path)
    )


def covers(prefix: str, path: str) -> bool:
    """Whether removing ``prefix`` removes ``path``: the same field, or one inside it."""
    return path == prefix or path.startswith(prefix + ".")


def minimal_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """``paths`` sorted, without those already covered by another one (``persons`` covers
    ``persons.family_name``), so each removed subtree is named once."""
    result: list[str] = []
    # Sorted, a path comes right after the prefixes that cover it ("a" < "a.b" < "a_b").
    for path in sorted(set(paths), key=lambda p: p.split(".")):
        if not result or not covers(result[-1], path):
            result.append(path)
    return tuple(sorted(result))


def _in_header(path: str) -> bool:
    return covers(HEADER, path)


# -- applying a redaction ----------------------------------------------------------------------


def redact(record: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A deep copy of the Avro-shaped ``record`` with the field at each path removed.

    Raises ``PolicyError`` for a path into the header, or one that names no field of the record
    (the agreements file is checked against the schemas at start-up, so this means a bug).
    """
    copy: dict[str, Any] = _deep_copy(record)
    for path in paths:
        parts = path.split(".")
        if _in_header(path) or not all(parts):
            raise PolicyError(
                f"Cannot redact {path!r}: expected a dotted path to a field outside the header, "
                "e.g. 'persons.family_name'"
            )
        _remove(copy, parts, path)
    return copy


def redact_alert(alert: _A, paths: Iterable[str]) -> _A:
    """``alert`` with the fields at ``paths`` removed, as a new alert of the same type."""
    return type(alert).from_avro(redact(alert.to_avro(), paths))


@dataclass(frozen=True)
class PartnerCopy:
    """The value one partner receives, and how it is signed."""

    value: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    #: The origin's key id for an unchanged copy, ``hub`` for a redacted one.
    key_id: str
    #: The paths removed, as listed in ``bus-redacted``; empty for an unchanged copy.
    redacted: tuple[str, ...]
    #: The record headers of the contract for this copy.
    headers: Headers = field(repr=False)


def partner_copy(
    alert: Alert,
    value: bytes,
    signature: bytes,
    key_id: str,
    paths: Sequence[str],
    *,
    codec: AlertCodec,
    hub: Signer,
) -> PartnerCopy:
    """The copy of a received ``alert`` (``value`` signed by ``key_id``) without ``paths``.

    With no paths, the origin's value and signature are passed on unchanged. Otherwise the
    redacted record is encoded with the newest schema of its type and signed by ``hub``.
    """
    if not paths:
        return PartnerCopy(value, signature, key_id, (), alert_headers(alert, signature, key_id))
    if hub.key_id != HUB_KEY_ID:
        raise PolicyError(
            f"Redacted copies are signed with the bus's own key {HUB_KEY_ID!r}, got a signer for "
            f"{hub.key_id!r}; load it with Signer.load(keys_dir, {HUB_KEY_ID!r})"
        )
    redacted = tuple(paths)
    new_value = codec.encode_record(alert.alert_type, redact(alert.to_avro(), redacted))
    new_signature = hub.sign(new_value)
    headers = alert_headers(alert, new_signature, HUB_KEY_ID, redacted)
    return PartnerCopy(new_value, new_signature, HUB_KEY_ID, redacted, headers)


def _deep_copy(value: Any) -> Any:
    # Avro dicts hold only dicts, lists and immutable scalars; this is several times faster than
    # copy.deepcopy, which matters when the fan-out redacts one alert for many partners.
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value


def _remove(node: Any, parts: list[str], path: str) -> None:
    if node is None:  # a null record: nothing below it to remove
        return
    if isinstance(node, list):  # a path through an array applies to every element
        for item in node:
            _remove(item, parts, path)
        return
    name = parts[0]
    if not isinstance(node, dict) or name not in node:
        raise PolicyError(f"Cannot redact {path!r}: the record has no field {name!r} there")
    if len(parts) > 1:
        _remove(node[name], parts[1:], path)
    else:
        node[name] = [] if isinstance(node[name], list) else None


# -- field kinds from the Avro schema ----------------------------------------------------------

_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)  # fmt: skip


def _walk_avro(
    schema: Any,
    prefix: str,
    named: dict[str, Any],
    namespace: str,
    stack: tuple[str, ...],
    out: dict[str, FieldKind],
) -> None:
    """Record every field path under ``schema`` (a record, union, array or name) in ``out``."""
    if isinstance(schema, list):  # a union: look inside every branch
        for branch in schema:
            _walk_avro(branch, prefix, named, namespace, stack, out)
        return
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return
        # A named type is defined once and referred to by its (full or short) name afterwards.
        schema = named.get(_full_name(schema, namespace), named.get(schema))
        if schema is None:
            return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "array":
        _walk_avro(schema.get("items"), prefix, named, namespace, stack, out)
        return
    if kind not in ("record", "error", "enum", "fixed"):
        if isinstance(kind, list | dict):  # {"type": {...}} wraps another schema
            _walk_avro(kind, prefix, named, namespace, stack, out)
        return
    full = _full_name(str(schema["name"]), str(schema.get("namespace", namespace)))
    named.setdefault(full, schema)
    named.setdefault(full.rsplit(".", 1)[-1], schema)
    if kind == "enum" or kind == "fixed" or full in stack:  # stop at a recursive record
        return
    inner_namespace = full.rsplit(".", 1)[0] if "." in full else ""
    for member in schema.get("fields", []):
        path = f"{prefix}.{member['name']}" if prefix else str(member["name"])
        out.setdefault(path, _avro_kind(member["type"], named, inner_namespace))
        _walk_avro(member["type"], path, named, inner_namespace, (*stack, full), out)


def _avro_kind(schema: Any, named: dict[str, Any], namespace: str) -> FieldKind:
    if isinstance(schema, list):
        return FieldKind.NULLABLE if "null" in schema else FieldKind.REQUIRED
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            return FieldKind.ARRAY
        if isinstance(kind, list | dict):
            return _avro_kind(kind, named, namespace)
    return FieldKind.REQUIRED


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


# -- field kinds from the pydantic model -------------------------------------------------------


@cache
def _model_kinds(alert_type: str) -> Mapping[str, FieldKind]:
    try:
        model = ALERT_MODELS[alert_type]
    except KeyError:
        raise PolicyError(
            f"Unknown alert type {alert_type!r}; known: {', '.join(ALERT_MODELS)}"
        ) from None
    kinds: dict[str, FieldKind] = {}
    _walk_model(model, "", (), kinds)
    return types.MappingProxyType(kinds)


def _walk_model(
    model: type[BaseModel], prefix: str, stack: tuple[type, ...], out: dict[str, FieldKind]
) -> None:
    if model in stack:
        return
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        kind, inner = _annotation_kind(info.annotation)
        out[path] = kind
        for tp in inner:
            _walk_model(tp, path, (*stack, model), out)


def _annotation_kind(tp: Any) -> tuple[FieldKind, list[type[BaseModel]]]:
    """The kind of a field annotation and the models found inside it."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _annotation_kind(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        inner = [m for a in args if a is not type(None) for m in _annotation_kind(a)[1]]
        nullable = type(None) in args
        return (FieldKind.NULLABLE if nullable else FieldKind.REQUIRED), inner
    if origin is list:
        return FieldKind.ARRAY, _annotation_kind(get_args(tp)[0])[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return FieldKind.REQUIRED, [tp]
    return FieldKind.REQUIRED, []
