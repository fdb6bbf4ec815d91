"""How a client of the bus proves who it is: settings to aiokafka and librdkafka parameters.

    AIOKafkaProducer(**client_security(settings), ...)   # security_protocol, sasl_*, ssl_context
    AdminClient(librdkafka_config(settings))               # confluent-kafka, same credentials

Both read the same ``BUS_`` settings (or the kit's ``client.properties`` named by
``BUS_CLIENT_CONFIG``): security protocol, SASL mechanism, user, password (a ``SecretStr`` that is
unwrapped only here, at the call into the client) and the CA file that signs the broker's
certificate.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

from bus.errors import ConfigError
from bus.settings import BusSettings


def uses_tls(settings: BusSettings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: BusSettings) -> bool:
    return settings.security_protocol.startswith("SASL")


def ssl_context(settings: BusSettings) -> ssl.SSLContext | None:
    """A context trusting ``BUS_SSL_CA_FILE`` (or the system CAs without one); None without TLS."""
    if not uses_tls(settings):
        return None
    return _context(settings.ssl_ca_file.resolve() if settings.ssl_ca_file else None)


@functools.lru_cache(maxsize=16)
def _context(ca_file: Path | None) -> ssl.SSLContext:
    # One context per CA file: cheap to share, and every client of a process trusts the same CA.
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(
            f"The CA file {ca_file} (BUS_SSL_CA_FILE or ssl.ca.location) does not exist; it is "
            "the ca.pem of your kit, or the broker's CA certificate."
        )
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except ssl.SSLError as exc:
        raise ConfigError(f"The CA file {ca_file} is not a PEM certificate: {exc}") from exc


def client_security(settings: BusSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if uses_sasl(settings):
        if not settings.sasl_username or settings.sasl_password is None:
            raise ConfigError(
                f"BUS_SECURITY_PROTOCOL is {settings.security_protocol} but no SASL user or "
                "password is set: set BUS_SASL_USERNAME and BUS_SASL_PASSWORD, or point "
                "BUS_CLIENT_CONFIG at a kit's client.properties."
            )
        kwargs |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.sasl_password.get_secret_value(),
        }
    return kwargs


def librdkafka_config(settings: BusSettings) -> dict[str, str]:
    """The same connection for confluent-kafka (librdkafka property names)."""
    config = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
    }
    if uses_tls(settings) and settings.ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.ssl_ca_file)
    if uses_sasl(settings):
        client_security(settings)  # the same checks and messages
        assert settings.sasl_username is not None
        assert settings.sasl_password is not None
        config |= {
            "sasl.mechanism": settings.sasl_mechanism,
            "sasl.username": settings.sasl_username,
            "sasl.password": settings.sasl_password.get_secret_value(),
        }
    return config
