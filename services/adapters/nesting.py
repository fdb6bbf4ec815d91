"""How deeply a record nests, measured without recursion, so that no file can exhaust the stack.

Python's ``json`` recurses once per level of a JSON text and gives up near 1,000 levels with
``RecursionError``; so do ``json.dumps``, ``ElementTree.tostring`` and any recursive walk of the
parsed data. A hostile national file can nest 100,000 levels in a few hundred kilobytes. So:

- a JSON text is scanned for its depth before it is parsed (``json_too_deep``), and one deeper
  than ``MAX_PARSE_DEPTH`` is not parsed at all;
- every record is measured (``deeper_than``) before anything walks it, and one nested deeper than
  ``MAX_DEPTH`` is set aside with the reason ``nested deeper than 32 levels``;
- an XML document is measured while it is read (see ``feeds.XmlFeed``).

``load_json`` is the one way a JSON file or HTTP body is parsed: depth first, then strict JSON
(``NaN`` and ``Infinity``, which Python's ``json`` accepts, are no JSON numbers and are refused).

No national record needs more than a handful of levels: a record, its persons, a person's
document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from services.adapters.errors import FeedRejected

#: How many levels of objects and arrays (or XML elements) one record may nest, itself included.
MAX_DEPTH = 32
#: A JSON text nesting deeper than this is not parsed: far below where ``json`` would recurse
#: too deep, far above what a file of records within ``MAX_DEPTH`` needs.
MAX_PARSE_DEPTH = 256

#: A JSON string (skipped whole: brackets inside it do not count) or a bracket. Possessive
#: quantifiers, so that a long or unterminated string cannot make the scan backtrack.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)


def too_deep_reason(limit: int = MAX_DEPTH) -> str:
    """The reason given for a record (or file) nested too deeply."""
    return f"nested deeper than {limit} levels"


def deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` (dicts and lists, as parsed) nests more than ``limit`` levels.

    ``{}`` is one level, ``{"a": [{}]}`` three. Iterative: safe on any depth.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))
    return False


def json_too_deep(text: str, limit: int) -> int | None:
    """The offset in ``text`` where a JSON text first nests deeper than ``limit``, or None.

    Only brackets outside strings count; the text need not be valid JSON (the parser that
    follows says what else is wrong with it).
    """
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        char = text[match.start()]
        if char == "[" or char == "{":
            depth += 1
            if depth > limit:
                return match.start()
        elif char == "]" or char == "}":
            depth -= 1
    return None


def line_and_column(text: str, offset: int) -> str:
    """``line L, column C`` (both from 1) of ``offset`` in ``text``, for messages."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


class JsonTooDeep(FeedRejected):
    """A JSON text nests deeper than ``MAX_PARSE_DEPTH``: it was not parsed at all."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(text: str) -> Any:
    """``json.loads`` without the ``NaN``, ``Infinity`` and ``-Infinity`` that JSON lacks.

    Raises ``json.JSONDecodeError`` for broken JSON, ``ValueError`` for those constants; the
    caller checks the depth first (``json_too_deep``).
    """
    return json.loads(text, parse_constant=_reject_constant)


def load_json(text: str, what: str) -> Any:
    """Parse a whole JSON ``what`` (a file, a body): deep nesting, broken JSON and the
    non-numbers each raise ``FeedRejected`` naming the problem and, where known, its line and
    column; ``JsonTooDeep`` for a text too deep to hand to the parser.

    >>> load_json('{"a": [1, 2]}', "body")
    {'a': [1, 2]}
    """
    offset = json_too_deep(text, MAX_PARSE_DEPTH)
    if offset is not None:
        # ``json`` recurses once per level: a text this deep is not handed to it at all.
        raise JsonTooDeep(
            f"{too_deep_reason(MAX_PARSE_DEPTH)}, so the {what} is not read (a record may nest "
            f"at most {MAX_DEPTH} levels)",
            where=line_and_column(text, offset),
        )
    try:
        return loads_strict(text)
    except json.JSONDecodeError as exc:
        raise FeedRejected(
            f"not valid JSON: {exc.msg}", where=f"line {exc.lineno}, column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise FeedRejected(f"not acceptable JSON: {exc}") from exc
