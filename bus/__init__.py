"""Balkan Alert Bus: typed, signed alerts on Apache Kafka, shared as agreements allow.

async with Publisher(BusSettings(), origin="rs") as pub:
    await pub.publish(alert)

async with Subscriber(BusSettings(), group_id="mk-police", topics=[...], handler=h) as sub:
    await sub.run()
"""

from bus.codec import AlertCodec, DecodedAlert
from bus.envelope import ReceivedAlert
from bus.errors import (
    BusError,
    BusKeyError,
    ConfigError,
    DecodeError,
    KafkaError,
    KafkaLocalError,
    OriginMismatch,
    PolicyError,
    PublishTimeout,
    SchemaError,
    SignatureError,
    ValidationError,
)
from bus.keys import KeyRing, Signer, generate_keypair
from bus.models import ALERT_MODELS, ALERT_TYPES, Alert, AlertHeader, PersonRef
from bus.publisher import Publisher, PublishResult, parse_alert
from bus.schemas import SchemaRegistry, SchemaVersion
from bus.settings import BusSettings
from bus.subscriber import Subscriber
from bus.topics import TopicNames

__all__ = [
    "ALERT_MODELS",
    "ALERT_TYPES",
    "Alert",
    "AlertCodec",
    "AlertHeader",
    "BusError",
    "BusKeyError",
    "BusSettings",
    "ConfigError",
    "DecodeError",
    "DecodedAlert",
    "KafkaError",
    "KafkaLocalError",
    "KeyRing",
    "OriginMismatch",
    "PersonRef",
    "PolicyError",
    "PublishResult",
    "PublishTimeout",
    "Publisher",
    "ReceivedAlert",
    "SchemaError",
    "SchemaRegistry",
    "SchemaVersion",
    "SignatureError",
    "Signer",
    "Subscriber",
    "TopicNames",
    "ValidationError",
    "generate_keypair",
    "parse_alert",
]
