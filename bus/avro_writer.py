"""An Avro binary writer compiled once per schema: the bytes fastavro writes, in far less time.

    write = compile_writer(schema.parsed)      # once per schema
    out = bytearray(prefix)
    write(out, record)                         # appends the Avro binary body of ``record``

fastavro's ``schemaless_writer`` interprets the schema for every record it writes: each value
costs a lookup of its schema's type and a call, and each value of a union a validation against
every branch until one fits (for a nullable record, a walk of the whole nested record). Here the
schema is turned once into Python source, one function per record type (and per array or map),
in which every field is a few straight lines appending to one ``bytearray``; ``exec`` compiles
it. The source is generated from the schema alone (names, symbols and defaults are passed as
constants; a field name appears in the code only as an attribute name, and only when it is a
Python identifier), so no value can change what runs.

A writer compiled ``from_model`` reads a pydantic model's attributes instead of a dict and takes
each value's Avro form as ``to_avro()`` gives it (UUIDs and dates as text, enums as symbols,
instants as epoch milliseconds), so an alert is written without building that dict first.

It writes what fastavro writes for the same dict (property tests hold it to that): zig-zag
varints for ``int`` and ``long`` (refusing what does not fit 64 bits), length-prefixed UTF-8
strings, one block and the zero terminator for a non-empty array or map, a missing field as its
default (or null in a nullable field), and a union's branch chosen as fastavro's validation
chooses it. A schema it does not take (a union other than ``null`` and one more branch,
``bytes``, ``fixed``, logical types) raises ``UnsupportedSchema`` when compiled, and the caller
keeps fastavro for it. A value that does not fit raises ``AvroWriteError`` naming its field path.
"""

from __future__ import annotations

import keyword
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

#: Appends the Avro binary encoding of a record to a buffer.
Writer = Callable[[bytearray, Any], None]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


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
    if -64 <= n <= 63:  # one byte: counts, small numbers
        out.append((n << 1) ^ (n >> 63))
        return
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise OverflowError("integer out of the range of an Avro long (64-bit signed)")
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class NotPlain(Exception):
    """A model holds a value whose Avro form only ``to_avro`` knows; write ``to_avro()`` instead."""


def _plain_text(value: Any) -> str:
    """The text ``to_avro`` (pydantic's JSON mode) gives a string field's value in a model."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum) and isinstance(value._value_, str):
        return value._value_
    if type(value) is date:
        return value.isoformat()
    raise NotPlain(type(value).__name__)


def _wrong_type(expected: str, value: Any) -> AvroWriteError:
    return AvroWriteError(f"expected {expected}, got {type(value).__name__}")


def _not_a_symbol(symbols: Sequence[str]) -> AvroWriteError:
    return AvroWriteError(f"expected one of the symbols {', '.join(symbols)}")


#: What fastavro's validation accepts in a union's non-null branch, as a condition on ``v``.
_UNION_CHECKS = {
    "boolean": "v.__class__ is bool",
    "string": "isinstance(v, str)",
    "int": "isinstance(v, int) and v.__class__ is not bool and INT_MIN <= v <= INT_MAX",
    "long": "isinstance(v, int) and v.__class__ is not bool and LONG_MIN <= v <= LONG_MAX",
    "float": "isinstance(v, (int, float)) and v.__class__ is not bool",
    "double": "isinstance(v, (int, float)) and v.__class__ is not bool",
    "enum": "isinstance(v, str) and v in {symbols}",
    "record": "isinstance(v, Mapping)",
    "array": "isinstance(v, Sequence) and not isinstance(v, str)",
    "map": "isinstance(v, Mapping)",
}

_RECORD_TRAILER = """\
    except AvroWriteError as exc:
        raise exc.inside(f) from None
    except Exception as exc:  # a value of the wrong type: TypeError, AttributeError, ...
        raise AvroWriteError(f"{type(exc).__name__}: {exc}", (f,)) from None
"""
_ITEMS_TRAILER = """\
    except AvroWriteError as exc:
        raise exc.inside(str(i)) from None
    except Exception as exc:
        raise AvroWriteError(f"{type(exc).__name__}: {exc}", (str(i),)) from None
    out.append(0)
"""


def compile_writer(parsed_schema: dict[str, Any], *, from_model: bool = False) -> Writer:
    """The writer of a record schema that fastavro's ``parse_schema`` returned.

    It writes Avro-shaped dicts, as ``to_avro`` returns them; ``from_model`` makes one that
    reads the model itself (its attributes, of the schema's field names), writing the bytes
    the first would write for ``to_avro()``, without building that dict. A value it cannot
    tell the Avro form of (and anything that does not fit) raises, ``NotPlain`` or another
    exception: then write ``to_avro()`` with the first, which decides.
    """
    generator = _Generator(dict(parsed_schema.get("__named_schemas", {})), from_model)
    entry = generator.record(parsed_schema)
    namespace: dict[str, Any] = {
        "AvroWriteError": AvroWriteError,
        "MISSING": _MISSING,
        "Mapping": Mapping,
        "Sequence": Sequence,
        "write_long": write_long,
        "wrong_type": _wrong_type,
        "not_a_symbol": _not_a_symbol,
        "plain_text": _plain_text,
        "EPOCH": _EPOCH,
        "MILLISECOND": _MILLISECOND,
        "pack_double": struct.Struct("<d").pack,
        "pack_float": struct.Struct("<f").pack,
        "INT_MIN": _INT_MIN,
        "INT_MAX": _INT_MAX,
        "LONG_MIN": _LONG_MIN,
        "LONG_MAX": _LONG_MAX,
        **generator.constants,
    }
    exec(compile("\n".join(generator.functions), "<avro writer>", "exec"), namespace)
    writer: Writer = namespace[entry]
    return writer


class _Generator:
    """Python source of the writer functions of one schema, and the constants they use."""

    def __init__(self, named: dict[str, Any], from_model: bool) -> None:
        self._named = named
        self._model = from_model
        self._records: dict[str, str] = {}  # record full name -> its function's name
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {}

    def _constant(self, value: Any) -> str:
        name = f"C{len(self.constants)}"
        self.constants[name] = value
        return name

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self._named:
            return self._named[schema]
        return schema

    def record(self, schema: dict[str, Any]) -> str:
        """The name of the function writing records of this type (generated on first use)."""
        full_name = schema["name"]
        if full_name in self._records:
            return self._records[full_name]
        function = self._records[full_name] = f"record_{len(self._records)}"
        lines = [f"def {function}(out, r):", "    get = r.get", "    f = ''", "    try:"]
        if self._model:
            del lines[1]
        for field in schema["fields"]:
            ftype, name = field["type"], field["name"]
            nullable = ftype == "null" or (isinstance(ftype, list) and "null" in ftype)
            default = field.get("default", None if nullable else _MISSING)
            lines.append(f"        f = {self._constant(name)}")
            if self._model:  # an Avro name is an ASCII identifier; a Python keyword is not one
                plain = name.isidentifier() and not keyword.iskeyword(name)
                lines.append(f"        v = r.{name}" if plain else "        v = getattr(r, f)")
                lines.extend(self._value(ftype, "        "))
                continue
            lines.append(f"        v = get(f, {self._constant(default)})")
            if default is _MISSING:
                lines.append("        if v is MISSING:")
                lines.append("            raise AvroWriteError('no value and no default')")
            if self._resolve(ftype) in ("float", "double"):
                lines.append("        v = float(v)  # as fastavro, which reads 'NaN' here too")
            lines.extend(self._value(ftype, "        "))
        self.functions.append("\n".join(lines) + "\n" + _RECORD_TRAILER)
        return function

    def _items(self, kind: str, schema: Any, write_item: list[str]) -> str:
        """A function writing an array's items or a map's entries: one block, then 0."""
        function = f"{kind}_{len(self.functions)}_{len(self.constants)}"
        each = "for i, v in enumerate(items):" if kind == "array" else "for i, v in items.items():"
        lines = [
            f"def {function}(out, items):",
            "    i = ''",
            "    try:",
            "        if len(items):",
            "            write_long(out, len(items))",
            f"            {each}",
            *write_item,
        ]
        self.functions.append("\n".join(lines) + "\n" + _ITEMS_TRAILER)
        return function

    def _value(self, schema: Any, pad: str) -> list[str]:
        """Lines appending the value in ``v`` (of type ``schema``) to ``out``."""
        schema = self._resolve(schema)
        if isinstance(schema, list):
            return self._union(schema, pad)
        if isinstance(schema, dict):
            if "logicalType" in schema:
                raise UnsupportedSchema(f"logical type {schema['logicalType']!r} is not taken")
            kind = schema["type"]
            if kind == "record":
                return [f"{pad}{self.record(schema)}(out, v)"]
            if kind == "enum":
                symbols = list(schema["symbols"])
                indexes = self._constant({s: _varint(i) for i, s in enumerate(symbols)})
                return [
                    *self._from_model(pad, "if v.__class__ is not str:", "    v = v._value_"),
                    f"{pad}e = {indexes}.get(v) if isinstance(v, str) else None",
                    f"{pad}if e is None:",
                    f"{pad}    raise not_a_symbol({self._constant(symbols)})",
                    f"{pad}out += e",
                ]
            if kind == "array":
                item = self._value(schema["items"], " " * 16)
                return [f"{pad}{self._items('array', schema, item)}(out, v)"]
            if kind == "map":
                entry = [*self._string(" " * 16, "i"), *self._value(schema["values"], " " * 16)]
                return [f"{pad}{self._items('map', schema, entry)}(out, v)"]
            if isinstance(kind, str) and kind in _PRIMITIVE_KINDS:
                return self._value(kind, pad)
            raise UnsupportedSchema(f"type {kind!r} is not taken")
        if schema == "string":
            to_text = self._from_model(pad, "if v.__class__ is not str:", "    v = plain_text(v)")
            return [*to_text, *self._string(pad, "v")]
        if schema in ("int", "long"):
            # An instant: milliseconds since the epoch, as to_avro() gives it (a naive one, or
            # anything else, raises, and to_avro() decides).
            to_long = self._from_model(
                pad, "if v.__class__ is not int:", "    v = (v - EPOCH) // MILLISECOND"
            )
            # One byte for -64..63 (counts, small numbers) without a call; write_long's own
            # first step, so anything else (a bool, a float) fares as it would there.
            return [
                *to_long,
                f"{pad}if -64 <= v <= 63:",
                f"{pad}    out.append((v << 1) ^ (v >> 63))",
                f"{pad}else:",
                f"{pad}    write_long(out, v)",
            ]
        if schema == "boolean":
            return [f"{pad}out.append(1 if v else 0)"]
        if schema == "double":
            return [f"{pad}out += pack_double(v)"]
        if schema == "float":
            return [f"{pad}out += pack_float(v)"]
        if schema == "null":
            return [f"{pad}if v is not None:", f"{pad}    raise wrong_type('null', v)"]
        raise UnsupportedSchema(f"schema {schema!r} is not taken")

    def _from_model(self, pad: str, *lines: str) -> list[str]:
        """``lines`` when writing from a model, where a value may need its Avro form."""
        return [pad + line for line in lines] if self._model else []

    def _string(self, pad: str, var: str, branch: int | None = None) -> list[str]:
        """A string; in a union, ``branch`` is the byte of its branch, written before it."""
        # The zig-zag varint of a length below 64 is one byte: twice the length. In a union,
        # the branch byte and that one go out together.
        if branch is None:
            short, long = [f"{pad}    out.append(n << 1)"], [f"{pad}    write_long(out, n)"]
        else:
            heads = self._constant(tuple(bytes((branch, n << 1)) for n in range(64)))
            short = [f"{pad}    out += {heads}[n]"]
            long = [f"{pad}    out.append({branch})", f"{pad}    write_long(out, n)"]
        return [
            f"{pad}b = {var}.encode()",
            f"{pad}n = len(b)",
            f"{pad}if n < 64:",
            *short,
            f"{pad}else:",
            *long,
            f"{pad}out += b",
        ]

    def _union(self, branches: list[Any], pad: str) -> list[str]:
        if len(branches) != 2 or "null" not in branches:
            raise UnsupportedSchema(f"union {branches!r}: only null and one other branch")
        null_index = branches.index("null")
        other = branches[1 - null_index]
        target = self._resolve(other)
        kind = target if isinstance(target, str) else target["type"]
        if kind not in _UNION_CHECKS:
            raise UnsupportedSchema(f"union branch {kind!r} is not taken")
        symbols = self._constant(frozenset(target["symbols"])) if kind == "enum" else ""
        check = _UNION_CHECKS[kind].format(symbols=symbols)
        if self._model:  # the value's Avro form is checked as the branch writes it
            check = _MODEL_UNION_CHECKS.get(kind, "True")
        expected = f"one of the symbols {', '.join(target['symbols'])}" if symbols else kind
        inner, branch = pad + "    ", (1 - null_index) << 1
        if kind == "string":
            to_text = self._from_model(inner, "if v.__class__ is not str:", "    v = plain_text(v)")
            write = [*to_text, *self._string(inner, "v", branch)]
        else:
            write = [f"{inner}out.append({branch})", *self._value(other, inner)]
        return [
            f"{pad}if v is None:",
            f"{pad}    out.append({null_index << 1})",
            f"{pad}elif {check}:",
            *write,
            f"{pad}else:",
            f"{pad}    raise wrong_type({self._constant('null or ' + expected)}, v)",
        ]


#: What a model's value in a union's non-null branch must be, before its Avro form is taken.
_MODEL_UNION_CHECKS = {
    "boolean": "v.__class__ is bool",
    "int": "v.__class__ is int and INT_MIN <= v <= INT_MAX",
    "long": "v.__class__ is not bool",
    "float": "v.__class__ is not bool",
    "double": "v.__class__ is not bool",
    "array": "not isinstance(v, str)",
}
_PRIMITIVE_KINDS = frozenset({"null", "boolean", "int", "long", "float", "double", "string"})


def _varint(n: int) -> bytes:
    out = bytearray()
    write_long(out, n)
    return bytes(out)
