"""How deeply a record nests, measured without recursion, so that no file can exhaust the stack.

Python's ``json`` recurses once per level of a JSON text and gives up near 1,000 levels with
``RecursionError``; so do ``json.dumps``, ``ElementTree.tostring`` and any recursive walk of the
parsed data. A hostile national file can nest 100,000 levels in a few hundred kilobytes. So:

- a JSON text is scanned for its depth before it is parsed (``json_too_deep``), and one deeper
  than ``MAX_PARSE_DEPTH`` is not parsed at all;
- every record is measured (``deeper_than``) before anything walks it, and one nested deeper than
  ``MAX_DEPTH`` is set aside with the reason ``nested deeper than 32 levels``;
- an XML document is measured while it is read (see ``feeds.XmlFeed``).

No national record needs more than a handful of levels: a record, its persons, a person's
document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
