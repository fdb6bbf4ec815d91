"""Balkan Alert Bus: typed, signed alerts on Apache Kafka, shared as agreements allow.

async with Publisher(BusSettings(), origin="rs") as pub:
    await pub.publish(alert)

async with Subscriber(BusSettings(), group_id="mk-police", topics=[...], handler=h) as sub:
    await sub.run()
"""

from bus.agreements import Agreement, Agreements, Partner, load_agreements
from bus.audit import AuditChain, ChainVerdict, verify_chain
from bus.codec import AlertCodec, DecodedAlert
from bus.envelope import ReceivedAlert, ReceivedNotice
from bus.errors import (
    AccessDenied,
    AuthenticationFailed,
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
    TlsError,
    ValidationError,
)
from bus.keys import KeyRing, Signer, generate_keypair
from bus.models import (
    ALERT_MODELS,
    ALERT_TYPES,
    Alert,
    AlertHeader,
    PersonRef,
    WithdrawalNotice,
)
from bus.policy import Decision, decide
from bus.publisher import Publisher, PublishResult, parse_alert
from bus.redact import redact_alert
from bus.schemas import SchemaRegistry, SchemaVersion
from bus.settings import BusSettings
from bus.subscriber import Subscriber
from bus.topics import TopicNames

__all__ = [
    "ALERT_MODELS",
    "ALERT_TYPES",
    "AccessDenied",
    "Agreement",
    "Agreements",
    "Alert",
    "AlertCodec",
    "AlertHeader",
    "AuditChain",
    "AuthenticationFailed",
    "BusError",
    "BusKeyError",
    "BusSettings",
    "ChainVerdict",
    "ConfigError",
    "Decision",
    "DecodeError",
    "DecodedAlert",
    "KafkaError",
    "KafkaLocalError",
    "KeyRing",
    "OriginMismatch",
    "Partner",
    "PersonRef",
    "PolicyError",
    "PublishResult",
    "PublishTimeout",
    "Publisher",
    "ReceivedAlert",
    "ReceivedNotice",
    "SchemaError",
    "SchemaRegistry",
    "SchemaVersion",
    "SignatureError",
    "Signer",
    "Subscriber",
    "TlsError",
    "TopicNames",
    "ValidationError",
    "WithdrawalNotice",
    "decide",
    "generate_keypair",
    "load_agreements",
    "parse_alert",
    "redact_alert",
    "verify_chain",
]
