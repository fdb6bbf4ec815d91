"""An Avro binary writer compiled once per schema: the bytes fastavro writes, in a third the time.

    write = compile_writer(schema.parsed)      # once per schema
    out = bytearray(prefix)
    write(out, record)                         # appends the Avro binary body of ``record``

fastavro's ``schemaless_writer`` interprets the schema for every record it writes: each value
costs a lookup of its schema's type, and each value of a union a validation against every
branch until one fits (for a nullable record, a walk of the whole nested record). Here the
schema is walked once, into one small function per schema node, so writing a record is a chain
of calls that append to one ``bytearray``. A union is chosen by the value alone, which is exact
for the unions this writer takes: ``null`` and one other branch.

It writes what fastavro writes for the same dict (a property test holds it to that): zig-zag
varints for ``int`` and ``long`` (refusing what does not fit 64 bits), length-prefixed UTF-8
strings, one block and the zero terminator for a non-empty array or map, a missing field as its
default (or null in a nullable field). A schema it does not take (a union of two non-null
branches, ``bytes``, ``fixed``, logical types) raises ``UnsupportedSchema`` when compiled, and
the caller keeps fastavro for it. A value that does not fit raises ``AvroWriteError`` naming the
field path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

#: Appends the Avro binary encoding of a value to a buffer.
Writer = Callable[[bytearray, Any], None]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack
_MISSING = object()


class UnsupportedSchema(Exception):
    """The schema uses something this writer does not take; write it with fastavro instead."""


class AvroWriteError(ValueError):
    """A value does not fit its schema; ``path`` names the field, e.g. ``persons.0.sex``."""

    def __init__(self, problem: str, path: tuple[str, ...] = ()) -> None:
        self.problem, self.path = problem, path
        where = f"field {'.'.join(path)}: " if path else ""
        super().__init__(where + problem)

    def inside(self, *outer: str) -> AvroWriteError:
        return AvroWriteError(self.problem, (*outer, *self.path))


def write_long(out: bytearray, n: int) -> None:
    """Zig-zag varint, as Avro writes ``int`` and ``long``; beyond 64 bits raises."""
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError("integer out of the range of an Avro long (64-bit signed)")
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_string(out: bytearray, text: str) -> None:
    data = text.encode()
    size = len(data)
    if size < 64:  # the zig-zag varint of a length below 64 is one byte: twice the length
        out.append(size << 1)
    else:
        write_long(out, size)
    out += data


def _write_boolean(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _write_double(out: bytearray, value: Any) -> None:
    out += _pack_double(float(value))  # as fastavro, which also reads "NaN" for a double field


def _write_float(out: bytearray, value: Any) -> None:
    out += _pack_float(float(value))


def _write_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise AvroWriteError(f"expected null, got {type(value).__name__}")


_PRIMITIVES: dict[str, Writer] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": write_long,
    "long": write_long,
    "float": _write_float,
    "double": _write_double,
    "string": _write_string,
}
#: What a value in a union's non-null branch must be, as fastavro's validation has it.
_UNION_TYPES: dict[str, type | tuple[type, ...]] = {
    "boolean": bool,
    "int": int,
    "long": int,
    "float": (int, float),
    "double": (int, float),
    "string": str,
}


def compile_writer(parsed_schema: dict[str, Any]) -> Writer:
    """The writer of a schema that fastavro's ``parse_schema`` returned."""
    named = dict(parsed_schema.get("__named_schemas", {}))
    return _Compiler(named).writer(parsed_schema)


class _Compiler:
    def __init__(self, named: dict[str, Any]) -> None:
        self._named = named
        self._records: dict[str, Writer] = {}

    def writer(self, schema: Any) -> Writer:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            if schema in self._records:
                return self._records[schema]
            if schema not in self._named:
                raise UnsupportedSchema(f"unknown named type {schema!r}")
            schema = self._named[schema]
        if isinstance(schema, list):
            return self._union(schema)
        if not isinstance(schema, dict) or "logicalType" in schema:
            raise UnsupportedSchema(f"schema node {schema!r} is not taken")
        kind = schema["type"]
        if kind == "record":
            return self._record(schema)
        if kind == "enum":
            return _enum(schema["symbols"])
        if kind == "array":
            return _array(self.writer(schema["items"]))
        if kind == "map":
            return _map(self.writer(schema["values"]))
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        raise UnsupportedSchema(f"type {kind!r} is not taken")

    def _record(self, schema: dict[str, Any]) -> Writer:
        fields: list[tuple[str, Any, Writer]] = []

        def write_record(out: bytearray, record: Any) -> None:
            get = record.get
            name = ""
            try:
                for name, default, write in fields:
                    value = get(name, default)
                    if value is _MISSING:
                        raise AvroWriteError("no value and no default")
                    write(out, value)
            except AvroWriteError as exc:
                raise exc.inside(name) from None
            except Exception as exc:  # a value of the wrong type: TypeError, AttributeError, ...
                raise AvroWriteError(f"{type(exc).__name__}: {exc}", (name,)) from None

        # Registered before its fields are compiled, so a recursive type refers to itself.
        self._records[schema["name"]] = write_record
        for field in schema["fields"]:
            ftype = field["type"]
            nullable = ftype == "null" or (isinstance(ftype, list) and "null" in ftype)
            default = field.get("default", None if nullable else _MISSING)
            fields.append((field["name"], default, self.writer(ftype)))
        return write_record

    def _union(self, branches: list[Any]) -> Writer:
        if len(branches) != 2 or "null" not in branches:
            raise UnsupportedSchema(f"union {branches!r}: only null and one other branch")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        null_byte, other_byte = null_index << 1, (1 - null_index) << 1
        write = self.writer(other)
        target = self._named.get(other, other) if isinstance(other, str) else other
        kind = target if isinstance(target, str) else target["type"]
        expected = _UNION_TYPES.get(kind)

        def write_union(out: bytearray, value: Any) -> None:
            if value is None:
                out.append(null_byte)
                return
            if expected is not None and not isinstance(value, expected):
                raise AvroWriteError(f"expected null or {kind}, got {type(value).__name__}")
            out.append(other_byte)
            write(out, value)

        return write_union


def _enum(symbols: list[str]) -> Writer:
    indexes = {symbol: bytes(_varint(i)) for i, symbol in enumerate(symbols)}

    def write_enum(out: bytearray, symbol: Any) -> None:
        try:
            out += indexes[symbol]
        except (KeyError, TypeError):
            raise AvroWriteError(f"expected one of the symbols {', '.join(symbols)}") from None

    return write_enum


def _array(write_item: Writer) -> Writer:
    def write_array(out: bytearray, items: Any) -> None:
        if len(items):
            write_long(out, len(items))
            for index, item in enumerate(items):
                try:
                    write_item(out, item)
                except AvroWriteError as exc:
                    raise exc.inside(str(index)) from None
        out.append(0)

    return write_array


def _map(write_value: Writer) -> Writer:
    def write_map(out: bytearray, mapping: Any) -> None:
        if len(mapping):
            write_long(out, len(mapping))
            for key, value in mapping.items():
                _write_string(out, key)
                write_value(out, value)
        out.append(0)

    return write_map


def _varint(n: int) -> bytearray:
    out = bytearray()
    write_long(out, n)
    return out
