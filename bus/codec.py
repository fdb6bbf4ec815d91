"""Avro single-object encoding of alerts: ``C3 01``, the writer schema's fingerprint, the body.

    codec = AlertCodec(SchemaRegistry.load(Path("schemas")))
    value = codec.encode(alert)                  # bytes for the Kafka record value
    decoded = codec.decode(value)                # DecodedAlert(alert_type, version, alert)

The framing is the Avro specification's, so a partner needs no registry server: it looks the
8-byte little-endian CRC-64-AVRO fingerprint up in its copy of ``schemas/`` (or ``bus.schemas``).
Records written with an older version are resolved to the current reader schema. Anything that
is not such a value raises ``DecodeError``; decoding never crashes or hangs on hostile bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro

from bus.avro_writer import AvroWriteError, UnsupportedSchema, Writer, compile_writer
from bus.errors import DecodeError, SchemaError, ValidationError
from bus.models import ALERT_MODELS, Alert, HitNotice, WithdrawalNotice
from bus.schemas import NOTICE_TYPES, SchemaRegistry, SchemaVersion

MAGIC = b"\xc3\x01"
HEADER_BYTES = len(MAGIC) + 8
#: The notices the bus writes into partner inboxes, by record type.
_INBOX_NOTICES: dict[str, type[WithdrawalNotice] | type[HitNotice]] = {
    WithdrawalNotice.record_type: WithdrawalNotice,
    HitNotice.record_type: HitNotice,
}


@dataclass(frozen=True)
class DecodedAlert:
    """A decoded value: the alert and the schema version it was written with."""

    alert_type: str
    writer_version: int
    alert: Alert


@dataclass(frozen=True)
class DecodedNotice:
    """A decoded notice of the bus and the schema version it was written with."""

    record_type: str
    writer_version: int
    notice: WithdrawalNotice | HitNotice


class AlertCodec:
    """Encodes alerts with the newest schema of their type; decodes any known version."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        missing = sorted(set(ALERT_MODELS) - set(registry.alert_types))
        if missing:
            raise SchemaError(f"No schema for alert type(s) {', '.join(missing)} in schemas/")
        # Writers compiled on first use, one per schema (see bus.avro_writer), so a codec that
        # only decodes compiles none; None stands for a schema that writer does not take, which
        # fastavro writes. An alert is written from its model, without its to_avro() dict.
        self._writers: dict[bytes, Writer | None] = {}
        self._model_writers: dict[bytes, Writer | None] = {}

    # -- encoding ----------------------------------------------------------------------------

    def encode(self, alert: Alert) -> bytes:
        schema = self.registry.latest(alert.alert_type)
        write = _compiled(self._model_writers, schema, from_model=True)
        if write is not None:
            out = bytearray(MAGIC + schema.fingerprint)
            try:
                write(out, alert)
            except Exception:
                # A value only to_avro() knows the Avro form of (or one that does not fit):
                # the dict it gives decides, and names the field if it does not fit.
                pass
            else:
                return bytes(out)
        return self._write(alert.alert_type, schema, alert.to_avro())

    def encode_notice(self, notice: WithdrawalNotice | HitNotice) -> bytes:
        return self.encode_record(notice.record_type, notice.to_avro())

    def encode_record(self, alert_type: str, record: dict[str, Any]) -> bytes:
        """Encode an Avro-shaped dict with the newest schema of ``alert_type``."""
        return self._write(alert_type, self.registry.latest(alert_type), record)

    def _write(self, alert_type: str, schema: SchemaVersion, record: dict[str, Any]) -> bytes:
        write = _compiled(self._writers, schema, from_model=False)
        if write is None:
            return self._write_fastavro(alert_type, schema, record)
        out = bytearray(MAGIC + schema.fingerprint)
        try:
            write(out, record)
        except AvroWriteError as exc:
            raise ValidationError(
                f"{alert_type} record does not match {schema.path.name}: {exc}",
                field=".".join(exc.path) or None,
            ) from exc
        except Exception as exc:  # not a record at all (no dict), or a top-level surprise
            raise ValidationError(
                f"{alert_type} record does not match {schema.path.name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return bytes(out)

    def _write_fastavro(
        self, alert_type: str, schema: SchemaVersion, record: dict[str, Any]
    ) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(buf, schema.parsed, record)
        except Exception as exc:  # fastavro raises value, type, key, overflow and other errors
            raise ValidationError(
                f"{alert_type} record does not match {schema.path.name}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return buf.getvalue()

    # -- decoding ----------------------------------------------------------------------------

    def writer_schema(self, value: bytes) -> SchemaVersion:
        """The schema a value was written with, from its header alone."""
        if len(value) < HEADER_BYTES:
            raise DecodeError(
                f"Value has {len(value)} bytes; an Avro single-object value has at least "
                f"{HEADER_BYTES + 1} (C3 01, 8-byte fingerprint, body)"
            )
        if value[:2] != MAGIC:
            raise DecodeError(
                f"Value starts with {value[:2].hex(' ')}, not the Avro single-object marker "
                "c3 01: it was not written by the bus (or by an Avro single-object encoder)"
            )
        fingerprint = value[2:HEADER_BYTES]
        schema = self.registry.by_fingerprint(fingerprint)
        if schema is None:
            raise DecodeError(
                f"Unknown writer schema fingerprint {fingerprint.hex()}: no file in schemas/ "
                "has it; update schemas/ (or read bus.schemas) to decode newer versions"
            )
        return schema

    def decode_record(self, value: bytes) -> tuple[SchemaVersion, dict[str, Any]]:
        """Decode to an Avro dict shaped by the newest reader schema of the writer's type."""
        writer = self.writer_schema(value)
        reader = self.registry.latest(writer.alert_type)
        body = io.BytesIO(value[HEADER_BYTES:])
        try:
            record = fastavro.schemaless_reader(
                body, writer.parsed, reader.parsed if reader is not writer else None
            )
        except Exception as exc:  # fastavro raises EOF, index, unicode and resolution errors
            raise DecodeError(
                f"Body does not decode as {writer.alert_type} v{writer.version}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        rest = len(value) - HEADER_BYTES - body.tell()
        if rest:
            raise DecodeError(
                f"{rest} trailing byte(s) after a {writer.alert_type} v{writer.version} body; "
                "the value is truncated or corrupt"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"Body decoded to {type(record).__name__}, expected a record")
        return writer, record

    def decode(self, value: bytes) -> DecodedAlert:
        """Decode an alert; a notice (or anything else) raises ``DecodeError``."""
        decoded = self.decode_message(value)
        if isinstance(decoded, DecodedNotice):
            raise DecodeError(
                f"Value is a {decoded.notice.record_type}, which the bus writes into partner "
                "inboxes, not an alert"
            )
        return decoded

    def decode_message(self, value: bytes) -> DecodedAlert | DecodedNotice:
        """Decode an alert or a notice of the bus (what a partner inbox holds)."""
        writer, record = self.decode_record(value)
        if writer.alert_type in NOTICE_TYPES:
            model = _INBOX_NOTICES.get(writer.alert_type)
            if model is None:
                raise DecodeError(
                    f"Value is a {writer.alert_type}, which travels on lookup.* topics, not in "
                    "partner inboxes or ingress; decode it with decode_record"
                )
            try:
                notice = model.from_avro(record)
            except ValidationError as exc:
                raise DecodeError(
                    f"{writer.alert_type} v{writer.version} decodes, but is not valid: {exc}"
                ) from exc
            return DecodedNotice(writer.alert_type, writer.version, notice)
        alert_model = ALERT_MODELS[writer.alert_type]
        try:
            alert = alert_model.from_avro(record)
        except ValidationError as exc:
            raise DecodeError(
                f"{writer.alert_type} v{writer.version} decodes, but is not a valid alert: {exc}"
            ) from exc
        return DecodedAlert(writer.alert_type, writer.version, alert)


def _compiled(
    writers: dict[bytes, Writer | None], schema: SchemaVersion, *, from_model: bool
) -> Writer | None:
    """The writer of ``schema`` in ``writers``, compiled on first use (None: use fastavro)."""
    try:
        return writers[schema.fingerprint]
    except KeyError:
        pass
    try:
        writer: Writer | None = compile_writer(schema.parsed, from_model=from_model)
    except UnsupportedSchema:
        writer = None
    writers[schema.fingerprint] = writer  # two threads may both compile it: the same writer
    return writer
