"""Every error the bus raises, in one tree.

Catch ``BusError`` to handle anything the library raises; catch a leaf to handle one kind::

    BusError
    ├── ConfigError          settings, keys dir, agreements file, missing Java/Maven
    │   └── KafkaLocalError  the local broker could not be fetched, started or stopped
    ├── SchemaError          an .avsc file is broken, or versions are not compatible
    ├── ValidationError      an alert does not match its model (names the field)
    ├── DecodeError          bytes are not a single-object-encoded alert we know
    ├── SignatureError       a signature is missing, malformed or does not verify
    ├── BusKeyError          a key file is missing or malformed
    ├── PolicyError          a sharing agreement is invalid or cannot be applied
    ├── OriginMismatch       an alert claims an origin other than its publisher's
    └── KafkaError           a broker call failed
        ├── PublishTimeout   Kafka did not acknowledge within the configured time
        ├── AuthenticationFailed  the broker refused the login (user, password or mechanism)
        ├── TlsError         the TLS handshake failed (an untrusted certificate, not a TLS port)
        └── AccessDenied     no ACL grants the principal the operation (names all three)

Messages say what was expected, what came, and what to do about it. Client errors are
wrapped with ``raise ... from exc`` so that the cause stays visible in tracebacks.
"""

from __future__ import annotations


class BusError(Exception):
    """Base of every error raised by the bus."""


class ConfigError(BusError):
    """A setting, file or tool the bus needs is missing or wrong."""


class KafkaLocalError(ConfigError):
    """The local single-node broker could not be fetched, started or stopped."""


class SchemaError(BusError):
    """A schema file is broken, or a new version breaks compatibility."""


class ValidationError(BusError):
    """An alert does not satisfy its model; the message names the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DecodeError(BusError):
    """Bytes could not be decoded as a single-object-encoded alert."""


class SignatureError(BusError):
    """A signature is missing, malformed, or does not match the value."""


class BusKeyError(BusError):
    """A key file is missing, unreadable or malformed."""


class PolicyError(BusError):
    """A sharing agreement is invalid or cannot be applied."""


class OriginMismatch(BusError):
    """An alert's ``header.origin`` differs from the country publishing it."""


class KafkaError(BusError):
    """A call to the Kafka broker failed."""


class PublishTimeout(KafkaError):
    """Kafka did not acknowledge a record within the configured timeout."""


class AuthenticationFailed(KafkaError):
    """The broker refused the SASL login: unknown user, wrong password or mechanism."""


class TlsError(KafkaError):
    """The TLS handshake failed: the certificate is not trusted, or the port does not speak TLS."""


class AccessDenied(KafkaError):
    """The broker's ACLs do not let ``principal`` perform ``operation`` on a resource."""

    def __init__(
        self, message: str, *, principal: str | None, operation: str, resource: str
    ) -> None:
        super().__init__(message)
        self.principal = principal
        self.operation = operation
        self.resource = resource
