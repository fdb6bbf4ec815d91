"""A partner's consumer written without this project: confluent-kafka (librdkafka) + Apache Avro.

It shows that the contract needs nothing but ``schemas/`` and the publishers' ``.pub`` files:

    python examples/partner_consumer.py --bootstrap 127.0.0.1:9092 --schemas schemas \
        --keys keys --topic ingress.rs.trafficking-arrest --max 10

On a secure bus a partner runs it with nothing but its onboarding kit (``bus access kit``):
``client.properties`` (SASL_SSL login and the CA), ``keys/`` and ``schemas/``:

    python examples/partner_consumer.py --kit kit-europol --topic partner.europol.inbox

Each record is printed as one JSON line: the decoded alert, its writer schema, and whether the
Ed25519 signature in ``bus-signature`` verified (``signature_ok``; ``signature_problem`` says why
not). It imports nothing from the ``bus`` package on purpose.

Whose signature counts, as in the bus's own library: the alert's origin (``header.origin``) or
the hub (``hub``, for copies it redacted and for notices it issues); a record whose body has no
``header.origin`` (a withdrawal notice) only the hub's. A valid signature by any other key, say
another country's, does not count. The public keys are every ``<key-id>.pub`` of ``--keys``,
loaded once at start; a header's text is only ever looked up among them, never made into a path.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from confluent_kafka import Consumer, KafkaException
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def load_schemas(schemas_dir: Path) -> dict[bytes, tuple[str, avro.schema.Schema]]:
    """Every ``<type>/v<N>.avsc``, by its 8-byte CRC-64-AVRO fingerprint (little-endian)."""
    by_fingerprint = {}
    for path in sorted(schemas_dir.glob("*/v*.avsc")):
        schema = avro.schema.parse(path.read_text(encoding="utf-8"))
        by_fingerprint[schema.fingerprint("CRC-64-AVRO")] = (
            f"{path.parent.name}/{path.stem}",
            schema,
        )
    return by_fingerprint


def decode(value: bytes, schemas: dict[bytes, tuple[str, avro.schema.Schema]]) -> tuple[str, Any]:
    if value[:2] != b"\xc3\x01":
        raise ValueError("not Avro single-object encoding")
    name, schema = schemas[value[2:10]]
    reader = avro.io.DatumReader(schema)
    return name, reader.read(avro.io.BinaryDecoder(io.BytesIO(value[10:])))


HUB_KEY_ID = "hub"
KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def load_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """Every ``<key-id>.pub`` of ``keys_dir`` (base64 of the raw 32-byte key), by key id."""
    keys = {}
    for path in sorted(keys_dir.glob("*.pub")):
        if not KEY_ID.fullmatch(path.stem):
            sys.stderr.write(f"{path}: not a key id (a-z, 0-9, '-'); ignored\n")
            continue
        try:
            raw = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
            keys[path.stem] = Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise SystemExit(f"{path}: not the base64 of a 32-byte Ed25519 key ({exc})") from None
    if not keys:
        raise SystemExit(f"{keys_dir}: no <key-id>.pub files; the publishers' and hub's are needed")
    return keys


def origin_of(record: Any) -> str | None:
    """The decoded body's ``header.origin``, or None (a withdrawal notice has no such header)."""
    header = record.get("header") if isinstance(record, dict) else None
    origin = header.get("origin") if isinstance(header, dict) else None
    return origin if isinstance(origin, str) else None


def check_signature(
    keys: dict[str, Ed25519PublicKey],
    key_id: str | None,
    origin: str | None,
    value: bytes,
    signature: bytes | None,
) -> str | None:
    """None when the signature counts; otherwise why not."""
    if key_id is None or signature is None:
        return "no bus-key-id or bus-signature header"
    allowed = {HUB_KEY_ID} if origin is None else {origin, HUB_KEY_ID}
    if key_id not in allowed:
        return f"signed by {key_id!r}; only {' or '.join(map(repr, sorted(allowed)))} may sign it"
    key = keys.get(key_id)
    if key is None:
        return f"no {key_id}.pub among the keys"
    try:
        key.verify(signature, value)
    except InvalidSignature:
        return f"the signature does not verify with {key_id}.pub"
    return None


def read_properties(path: Path) -> dict[str, str]:
    """A client.properties file (``name=value`` lines, ``#`` comments) as librdkafka settings."""
    props = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, help="an onboarding kit: client.properties, keys/, …")
    parser.add_argument("--bootstrap")
    parser.add_argument("--schemas", type=Path)
    parser.add_argument("--keys", type=Path)
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--group")
    parser.add_argument("--max", type=int, default=None)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()

    config: dict[str, str] = {}
    if args.kit:
        config = read_properties(args.kit / "client.properties")
        args.schemas = args.schemas or args.kit / "schemas"
        args.keys = args.keys or args.kit / "keys"
    if args.bootstrap:
        config["bootstrap.servers"] = args.bootstrap
    if not (config.get("bootstrap.servers") and args.schemas and args.keys):
        parser.error("give --kit, or --bootstrap, --schemas and --keys")
    # On a secure bus a partner's consumer groups must start with its user name and a dot.
    user = config.get("sasl.username")
    group = args.group or (f"{user}.consumer" if user else f"partner-{int(time.time())}")
    schemas = load_schemas(args.schemas)
    keys = load_keys(args.keys)
    consumer = Consumer({
        **config,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe(args.topic)
    count, idle_since = 0, time.monotonic()
    try:
        while args.max is None or count < args.max:
            msg = consumer.poll(1.0)
            if msg is None:
                if time.monotonic() - idle_since > args.idle_seconds:
                    break
                continue
            if msg.error():
                raise KafkaException(msg.error())
            idle_since = time.monotonic()
            headers = dict(msg.headers() or [])
            value = msg.value() or b""
            raw_key_id = headers.get("bus-key-id")
            key_id = raw_key_id.decode("utf-8", "replace") if raw_key_id is not None else None
            try:
                schema_name, record = decode(value, schemas)
            except Exception as exc:  # not ours to decode: say so, and carry on
                schema_name, record = None, None
                problem = f"cannot decode: {type(exc).__name__}: {exc}"
            else:
                problem = check_signature(
                    keys, key_id, origin_of(record), value, headers.get("bus-signature")
                )
            line = {
                "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "schema": schema_name, "key_id": key_id,
                "signature_ok": problem is None, "signature_problem": problem,
                "redacted": [p for p in headers.get("bus-redacted", b"").decode("utf-8", "replace")
                             .split(",") if p],
                "alert": record,
            }  # fmt: skip
            sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
            consumer.commit(message=msg, asynchronous=False)
            count += 1
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
