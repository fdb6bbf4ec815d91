"""Record headers of the contract, and opening a received record: decode, then verify.

Headers (all bytes): ``bus-type``, ``bus-origin``, ``bus-alert-id``, ``bus-signature`` (raw
64-byte Ed25519 signature of the value), ``bus-key-id`` (the origin, or ``hub`` for a copy the bus
re-signed), ``bus-redacted`` (comma-separated field paths removed; absent when none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bus.codec import AlertCodec, DecodedNotice
from bus.errors import DecodeError, OriginMismatch, SignatureError
from bus.keys import HUB_KEY_ID, KeyRing
from bus.models import Alert, HitNotice, WithdrawalNotice
from bus.topics import TopicNames

H_TYPE = "bus-type"
H_ORIGIN = "bus-origin"
H_ALERT_ID = "bus-alert-id"
H_SIGNATURE = "bus-signature"
H_KEY_ID = "bus-key-id"
H_REDACTED = "bus-redacted"

Headers = list[tuple[str, bytes]]


def alert_headers(
    alert: Alert, signature: bytes, key_id: str, redacted: Sequence[str] = ()
) -> Headers:
    headers = signed_headers(
        alert.alert_type.encode(), alert.origin.encode(), str(alert.alert_id).encode(),
        signature, key_id.encode(),
    )  # fmt: skip
    if redacted:
        headers.append((H_REDACTED, ",".join(redacted).encode()))
    return headers


def signed_headers(
    alert_type: bytes, origin: bytes, alert_id: bytes, signature: bytes, key_id: bytes
) -> Headers:
    """An alert record's headers from their values, encoded already (a publisher laying out
    many alerts of one origin encodes the origin and the key id once)."""
    return [
        (H_TYPE, alert_type),
        (H_ORIGIN, origin),
        (H_ALERT_ID, alert_id),
        (H_SIGNATURE, signature),
        (H_KEY_ID, key_id),
    ]


def notice_headers(notice: WithdrawalNotice | HitNotice, signature: bytes) -> Headers:
    """Headers of a notice of the bus, signed by the hub: its type, the country it concerns and
    the id it answers to (a withdrawal notice's follow-up, a hit notice's lookup)."""
    if isinstance(notice, WithdrawalNotice):
        country, ref = notice.origin, notice.follow_up_id
    else:
        country, ref = notice.owner, notice.lookup_id
    return [
        (H_TYPE, notice.record_type.encode()),
        (H_ORIGIN, country.encode()),
        (H_ALERT_ID, str(ref).encode()),
        (H_SIGNATURE, signature),
        (H_KEY_ID, HUB_KEY_ID.encode()),
    ]


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, bytes]:
    """The headers as a dict; the last value wins for a repeated name."""
    return dict(headers or ())


@dataclass(frozen=True)
class ReceivedAlert:
    """A record that decoded and verified, with where it came from."""

    alert: Alert
    alert_type: str
    writer_version: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes = field(repr=False)
    headers: dict[str, bytes] = field(repr=False)
    key_id: str
    redacted: tuple[str, ...] = ()

    def log_context(self) -> dict[str, Any]:
        return {
            "alert_id": str(self.alert.alert_id),
            "origin": self.alert.origin,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class ReceivedNotice:
    """A notice from a partner inbox that decoded and verified (signed by ``hub``): a withdrawal
    notice, or a hit notice telling an owner that a lookup matched its alerts."""

    notice: WithdrawalNotice | HitNotice
    record_type: str
    writer_version: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes = field(repr=False)
    headers: dict[str, bytes] = field(repr=False)
    key_id: str

    def log_context(self) -> dict[str, Any]:
        if isinstance(self.notice, HitNotice):
            what = {"lookup_id": str(self.notice.lookup_id), "owner": self.notice.owner}
        else:
            what = {"follow_up_id": str(self.notice.follow_up_id), "origin": self.notice.origin}
        return {
            "notice_id": str(self.notice.notice_id),
            **what,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }


class Stage:
    """Where processing of a record failed; named in dead-letter headers."""

    DECODE = "decode"
    VERIFY = "verify"
    HANDLE = "handle"


class RecordError(Exception):
    """A bus error with the stage at which it happened (internal)."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(str(error))
        self.stage = stage
        self.error = error


def open_record(
    codec: AlertCodec,
    keyring: KeyRing | None,
    *,
    names: TopicNames,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
) -> ReceivedAlert:
    """Decode and verify one alert; raise ``RecordError`` carrying the stage and the cause.

    On an ``ingress.<cc>.<type>`` topic the signer, the header's origin, the topic's origin and
    the type must all agree. Elsewhere (partner inboxes) the signer is the origin or the hub.
    With ``keyring=None`` signatures are not checked (``bus tail --no-verify``). A notice of the
    bus is not an alert: it raises at the decode stage (use ``open_message`` where one belongs).
    """
    received = open_message(
        codec, keyring, names=names, topic=topic, partition=partition, offset=offset, key=key,
        value=value, headers=headers,
    )  # fmt: skip
    if isinstance(received, ReceivedNotice):
        raise RecordError(
            Stage.DECODE,
            DecodeError(
                f"Record is a {received.record_type}, which only the bus writes, into partner "
                "inboxes; an alert was expected here"
            ),
        )
    return received


def open_message(
    codec: AlertCodec,
    keyring: KeyRing | None,
    *,
    names: TopicNames,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
) -> ReceivedAlert | ReceivedNotice:
    """Decode and verify an alert or a notice of the bus (what a partner inbox holds).

    A notice must be signed by ``hub`` and never stands on an ingress topic.
    """
    hmap = header_map(headers)
    if value is None:
        raise RecordError(Stage.DECODE, DecodeError("Record has no value (a tombstone)"))
    try:
        decoded = codec.decode_message(value)
    except DecodeError as exc:
        raise RecordError(Stage.DECODE, exc) from exc
    key_id = hmap.get(H_KEY_ID, b"").decode("utf-8", "replace")
    if keyring is not None:
        try:
            signature = hmap.get(H_SIGNATURE)
            if signature is None or not key_id:
                raise SignatureError(
                    f"Record has no {H_SIGNATURE} or {H_KEY_ID} header; every value must be signed"
                )
            if isinstance(decoded, DecodedNotice):
                _check_notice_signer(names, topic, key_id)
            else:
                _check_signer(names, topic, decoded.alert, decoded.alert_type, key_id)
            keyring.verify(key_id, value, signature)
        except (SignatureError, OriginMismatch) as exc:
            raise RecordError(Stage.VERIFY, exc) from exc
    if isinstance(decoded, DecodedNotice):
        return ReceivedNotice(
            notice=decoded.notice, record_type=decoded.record_type,
            writer_version=decoded.writer_version, topic=topic, partition=partition,
            offset=offset, key=key, value=value, headers=hmap, key_id=key_id,
        )  # fmt: skip
    redacted = tuple(
        p for p in hmap.get(H_REDACTED, b"").decode("utf-8", "replace").split(",") if p
    )
    return ReceivedAlert(
        alert=decoded.alert,
        alert_type=decoded.alert_type,
        writer_version=decoded.writer_version,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=hmap,
        key_id=key_id,
        redacted=redacted,
    )


def _check_notice_signer(names: TopicNames, topic: str, key_id: str) -> None:
    if names.parse_ingress(topic) is not None:
        raise OriginMismatch(
            f"A notice of the bus on {topic}: only the bus writes notices, into partner inboxes"
        )
    if key_id != HUB_KEY_ID:
        raise SignatureError(f"A notice signed by {key_id!r}; only {HUB_KEY_ID!r} signs notices")


def _check_signer(
    names: TopicNames, topic: str, alert: Alert, alert_type: str, key_id: str
) -> None:
    ingress = names.parse_ingress(topic)
    if ingress is not None:
        origin, topic_type = ingress
        if alert.origin != origin:
            raise OriginMismatch(
                f"Alert {alert.alert_id} on {topic} claims origin {alert.origin!r}; only "
                f"{origin!r} may publish on this topic"
            )
        if alert_type != topic_type:
            raise OriginMismatch(
                f"Alert {alert.alert_id} is a {alert_type} on the {topic_type} topic {topic}"
            )
        if key_id != origin:
            raise SignatureError(
                f"Alert {alert.alert_id} on {topic} is signed by {key_id!r}; expected {origin!r}"
            )
    elif key_id not in (alert.origin, HUB_KEY_ID):
        raise SignatureError(
            f"Alert {alert.alert_id} from {alert.origin!r} is signed by {key_id!r}; expected "
            f"the origin or {HUB_KEY_ID!r}"
        )
