"""A partner's consumer written without this project: confluent-kafka (librdkafka) + Apache Avro.

It shows that the contract needs nothing but ``schemas/`` and the publishers' ``.pub`` files:

    python examples/partner_consumer.py --bootstrap 127.0.0.1:9092 --schemas schemas \
        --keys keys --topic ingress.rs.trafficking-arrest --max 10

On a secure bus a partner runs it with nothing but its onboarding kit (``bus access kit``):
``client.properties`` (SASL_SSL login and the CA), ``keys/`` and ``schemas/``:

    python examples/partner_consumer.py --kit kit-europol --topic partner.europol.inbox

Each record is printed as one JSON line: the decoded alert, its writer schema, and whether the
Ed25519 signature in ``bus-signature`` verified with ``<bus-key-id>.pub``. It imports nothing
from the ``bus`` package on purpose.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
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


def verify(keys_dir: Path, key_id: str, value: bytes, signature: bytes) -> bool:
    raw = base64.b64decode((keys_dir / f"{key_id}.pub").read_text().strip())
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, value)
    except InvalidSignature:
        return False
    return True


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
            value = msg.value()
            schema_name, record = decode(value, schemas)
            key_id = headers["bus-key-id"].decode()
            line = {
                "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                "schema": schema_name, "key_id": key_id,
                "signature_ok": verify(args.keys, key_id, value, headers["bus-signature"]),
                "redacted": [p for p in headers.get("bus-redacted", b"").decode().split(",") if p],
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
