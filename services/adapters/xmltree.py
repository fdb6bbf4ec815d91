"""Building a national XML document as a tree no deeper than records may nest, and reading it.

``ElementTree`` builds any depth it is given, but serialising or walking the tree recurses once
per level, so a record nested 100,000 levels deep would end in ``RecursionError``. The builder
here counts levels as the parser reads them: inside a record, elements below ``MAX_DEPTH``
levels are not built (the record is noted as too deep, and set aside); outside any record, such
depth rejects the file. Every tree it returns is at most twice ``MAX_DEPTH`` deep, so
``element_value`` and ``tostring`` are safe on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml.ElementTree import DefusedXMLParser

from services.adapters.errors import FeedRejected
from services.adapters.nesting import MAX_DEPTH, too_deep_reason

#: Key of an XML element's text when the element also has attributes or children.
TEXT_KEY = "#text"


class BoundedTreeBuilder(TreeBuilder):
    """Builds the tree, notes the line each record starts on, and cuts records nested too deep.

    ``lines[i]`` is the line of the i-th record element in document order; ``too_deep`` holds the
    ids of record elements that nested deeper than ``MAX_DEPTH`` (their deep parts are not built).
    """

    def __init__(self, record_tag: str, *, max_depth: int = MAX_DEPTH) -> None:
        super().__init__()
        self.record_tag = record_tag
        self.max_depth = max_depth
        self.lines: list[int] = []
        self.too_deep: set[int] = set()
        self.parser: DefusedXMLParser | None = None
        self._depth = 0  # elements open and built
        self._record_depth = 0  # the level of the outermost open record; 0 outside records
        self._record: Element | None = None
        self._skipping = 0  # elements open below the cut

    def _line(self) -> int:
        return self.parser.parser.CurrentLineNumber if self.parser is not None else 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        if self._skipping:
            self._skipping += 1
            return Element(tag)
        is_record = local_name(tag) == self.record_tag
        level = self._depth + 1
        if self._record is not None and level - self._record_depth + 1 > self.max_depth:
            self.too_deep.add(id(self._record))
            self._skipping = 1
            return Element(tag)
        if self._record is None and not is_record and level > self.max_depth:
            raise FeedRejected(
                f"{too_deep_reason(self.max_depth)} outside any <{self.record_tag}>",
                where=f"line {self._line()}",
            )
        if is_record:
            self.lines.append(self._line())
        element = super().start(tag, attrs)
        self._depth = level
        if is_record and self._record is None:
            self._record, self._record_depth = element, level
        return element

    def end(self, tag: str) -> Element:
        if self._skipping:
            self._skipping -= 1
            return Element(tag)
        if self._depth == self._record_depth:
            self._record, self._record_depth = None, 0
        self._depth -= 1
        return super().end(tag)

    def data(self, data: str) -> None:
        if not self._skipping:
            super().data(data)


def local_name(tag: str) -> str:
    """The tag without its namespace: ``{urn:x}zapis`` → ``zapis``."""
    return tag.rsplit("}", 1)[-1]


def iter_records(root: Element, tag: str) -> Iterator[Element]:
    """Every element named ``tag`` (in any namespace), in document order."""
    for element in root.iter():
        if local_name(element.tag) == tag:
            yield element


def element_value(element: Element) -> Any:
    """An element as plain data: text, or a dict of attributes and children.

    Recursive: call it only on trees from ``BoundedTreeBuilder``.
    """
    children = list(element)
    if not children and not element.attrib:
        text = (element.text or "").strip()
        return text or None
    value: dict[str, Any] = {local_name(k): v for k, v in element.attrib.items()}
    text = (element.text or "").strip()
    if text:
        value[TEXT_KEY] = text
    grouped: dict[str, list[Any]] = {}
    for child in children:
        grouped.setdefault(local_name(child.tag), []).append(element_value(child))
    for name, values in grouped.items():
        value[name] = values if len(values) > 1 else values[0]
    return value
