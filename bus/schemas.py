"""The Avro contract: every ``schemas/<alert-type>/v<N>.avsc``, loaded and checked at start-up.

    registry = SchemaRegistry.load(Path("schemas"))
    latest = registry.latest("trafficking-arrest")
    registry.by_fingerprint(latest.fingerprint)          # the same SchemaVersion
    registry.compatibility_problems()                    # [] when every version is compatible

Each file is one self-contained record schema, so that a partner can parse it alone with any Avro
library. A schema's identity on the wire is the CRC-64-AVRO fingerprint of its Parsing Canonical
Form, as Apache Avro's reference implementations compute it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro.schema

from bus.errors import SchemaError

_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")
#: Record types the bus itself writes to partners, beside the alert types (which all start with
#: the common ``header``). They are part of the partner contract and checked like the others.
NOTICE_TYPES: frozenset[str] = frozenset(
    {"withdrawal-notice", "hit-notice", "lookup-request", "lookup-answer"}
)
_ALERT_TYPE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one alert type's schema."""

    alert_type: str
    version: int
    path: Path
    schema_json: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False)
    canonical_form: str = field(repr=False)
    #: The 8 bytes that follow ``C3 01`` on the wire: CRC-64-AVRO, little-endian.
    fingerprint: bytes = b""

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def full_name(self) -> str:
        return str(self.parsed["name"])


def crc64_avro_fingerprint(canonical_form: str) -> bytes:
    """The Avro CRC-64 fingerprint of a canonical form, as the 8 little-endian wire bytes.

    fastavro returns the hex text of those bytes already in wire order (for the schema "int",
    CRC 0x7275d51a3f395c8f, it returns "8f5c393f1ad57572"), as Apache Avro's reference does.
    """
    return bytes.fromhex(fastavro.schema.fingerprint(canonical_form, "CRC-64-AVRO"))


def load_schema_file(path: Path, alert_type: str, version: int) -> SchemaVersion:
    """Parse one .avsc file; raise ``SchemaError`` naming the file and the problem."""
    try:
        schema_json = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}") from exc
    except OSError as exc:
        raise SchemaError(f"{path}: cannot be read: {exc.strerror}") from exc
    if not isinstance(schema_json, dict) or schema_json.get("type") != "record":
        raise SchemaError(f"{path}: expected one Avro record schema (a JSON object)")
    try:
        parsed: dict[str, Any] = fastavro.schema.parse_schema(schema_json)  # type: ignore[assignment]
        canonical = fastavro.schema.to_parsing_canonical_form(parsed)
    except Exception as exc:  # fastavro raises several kinds for a broken schema
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc
    fields = [f.get("name") for f in schema_json.get("fields", [])]
    if alert_type not in NOTICE_TYPES and (not fields or fields[0] != "header"):
        raise SchemaError(f"{path}: the first field must be 'header' (the common AlertHeader)")
    return SchemaVersion(
        alert_type=alert_type,
        version=version,
        path=path,
        schema_json=schema_json,
        parsed=parsed,
        canonical_form=canonical,
        fingerprint=crc64_avro_fingerprint(canonical),
    )


class SchemaRegistry:
    """All schema versions of all alert types, by type and by fingerprint."""

    def __init__(self, versions: dict[str, list[SchemaVersion]]) -> None:
        self._versions = {t: sorted(vs, key=lambda v: v.version) for t, vs in versions.items()}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for vs in self._versions.values():
            for v in vs:
                other = self._by_fingerprint.get(v.fingerprint)
                if other is not None:
                    raise SchemaError(
                        f"{v.path} and {other.path} have the same canonical form "
                        f"(fingerprint {v.fingerprint_hex}); a new version must change the schema"
                    )
                self._by_fingerprint[v.fingerprint] = v

    @classmethod
    def load(cls, schemas_dir: Path) -> SchemaRegistry:
        if not schemas_dir.is_dir():
            raise SchemaError(
                f"Schema directory {schemas_dir} does not exist; set BUS_SCHEMAS_DIR to the "
                "project's schemas/ folder"
            )
        versions: dict[str, list[SchemaVersion]] = {}
        for type_dir in sorted(p for p in schemas_dir.iterdir() if p.is_dir()):
            if not _ALERT_TYPE.match(type_dir.name):
                continue
            for path in sorted(type_dir.glob("*.avsc")):
                match = _VERSION_FILE.match(path.name)
                if match is None:
                    raise SchemaError(f"{path}: schema files are named v<N>.avsc, e.g. v1.avsc")
                sv = load_schema_file(path, type_dir.name, int(match.group(1)))
                versions.setdefault(type_dir.name, []).append(sv)
        if not versions:
            raise SchemaError(f"No schemas found in {schemas_dir} (expected <type>/v<N>.avsc)")
        for alert_type, vs in versions.items():
            numbers = sorted(v.version for v in vs)
            if numbers != list(range(1, len(numbers) + 1)):
                raise SchemaError(
                    f"{schemas_dir / alert_type}: versions must run v1, v2, … without gaps; "
                    f"found {', '.join(f'v{n}' for n in numbers)}"
                )
        return cls(versions)

    @property
    def alert_types(self) -> tuple[str, ...]:
        """The alert types (what countries publish), without the bus's own notice types."""
        return tuple(sorted(t for t in self._versions if t not in NOTICE_TYPES))

    @property
    def record_types(self) -> tuple[str, ...]:
        """Every record type with a schema: the alert types and the notice types."""
        return tuple(sorted(self._versions))

    def versions(self, alert_type: str) -> list[SchemaVersion]:
        try:
            return list(self._versions[alert_type])
        except KeyError:
            raise SchemaError(
                f"Unknown alert type {alert_type!r}; known: {', '.join(self.alert_types)}"
            ) from None

    def latest(self, alert_type: str) -> SchemaVersion:
        return self.versions(alert_type)[-1]

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fingerprint)

    def __iter__(self) -> Iterator[SchemaVersion]:
        for alert_type in self.record_types:
            yield from self._versions[alert_type]

    def compatibility_problems(self) -> list[str]:
        """Every pair (earlier, later) of one type that is not compatible in both directions."""
        from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
        from avro.schema import parse as avro_parse

        checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
        problems: list[str] = []
        for alert_type in self.record_types:
            vs = self._versions[alert_type]
            parsed = [avro_parse(json.dumps(v.schema_json)) for v in vs]
            for i, later in enumerate(vs):
                for j in range(i):
                    earlier = vs[j]
                    for reader, writer, what in (
                        (parsed[i], parsed[j], "backward: the new version cannot read the old"),
                        (parsed[j], parsed[i], "forward: the old version cannot read the new"),
                    ):
                        result = checker.get_compatibility(reader, writer)
                        if result.compatibility is not SchemaCompatibilityType.compatible:
                            detail = "; ".join(sorted(result.messages))
                            where = ", ".join(sorted(result.locations))
                            problems.append(
                                f"{alert_type} v{later.version} vs v{earlier.version} ({what}): "
                                f"{detail or 'incompatible'} (at {where})"
                            )
        return problems
