"""Say why a connection or a request was refused, in a sentence, instead of "Unable to bootstrap".

aiokafka turns every failed first connection into ``KafkaConnectionError("Unable to bootstrap
from ...")`` and logs the cause. When that happens, ``explain_connection_failure`` opens one
connection itself, with the same parameters, and names what went wrong: no broker, a port that
does not speak TLS, a certificate the CA file did not sign, a refused login or mechanism.
``explain_denial`` turns aiokafka's authorization errors into ``AccessDenied`` naming the
principal, the resource and the operation.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import errors as aioerrors
from aiokafka.conn import create_conn

from bus.errors import AccessDenied, AuthenticationFailed, KafkaError, TlsError
from bus.kafka.security import client_security, uses_tls
from bus.settings import BusSettings

_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_PROBE_TIMEOUT_S = 10.0
_FIX = "Check BUS_CLIENT_CONFIG (a kit's client.properties) or the BUS_SECURITY_PROTOCOL settings."


def _first_server(settings: BusSettings) -> tuple[str, int]:
    first = settings.bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or first, int(port or 9092)


async def explain_connection_failure(settings: BusSettings) -> KafkaError | None:
    """Connect once to the first bootstrap server; the error that says why, or None if it works."""
    host, port = _first_server(settings)
    where = f"{host}:{port}"
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host, port, client_id=f"{settings.client_id}-probe",
                request_timeout_ms=settings.request_timeout_ms, **client_security(settings),
            ),
            _PROBE_TIMEOUT_S,
        )  # fmt: skip
    except aioerrors.SaslAuthenticationFailed:
        return AuthenticationFailed(
            f"Kafka at {where}: authentication failed for user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism}): the broker knows no such user with that password. "
            "Check the user and password (a kit's client.properties, BUS_CLIENT_CONFIG); an "
            "offboarded principal can no longer log in."
        )
    except aioerrors.UnsupportedSaslMechanismError:
        return AuthenticationFailed(
            f"Kafka at {where}: authentication failed for user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism}): the broker does not accept the "
            f"{settings.sasl_mechanism} mechanism. The bus uses SCRAM-SHA-512 "
            "(BUS_SASL_MECHANISM, or sasl.mechanism in client.properties)."
        )
    except ssl.SSLCertVerificationError as exc:
        ca = settings.ssl_ca_file or "the system's trusted CAs"
        if exc.verify_code in _HOSTNAME_MISMATCH:
            return TlsError(
                f"Kafka at {where}: the broker's certificate does not name {host!r} "
                f"({exc.verify_message}). Connect with a name the certificate carries."
            )
        return TlsError(
            f"Kafka at {where}: the broker's certificate is not signed by {ca} "
            f"({exc.verify_message}). Use the CA certificate of this bus (the kit's ca.pem, "
            "BUS_SSL_CA_FILE)."
        )
    except ssl.SSLError as exc:
        return TlsError(
            f"Kafka at {where}: the TLS handshake failed ({exc.reason or exc}); the port may not "
            f"speak TLS, or speak it only with a {settings.security_protocol} client. {_FIX}"
        )
    except (aioerrors.KafkaConnectionError, TimeoutError) as exc:
        if not uses_tls(settings) and await _speaks_tls(host, port):
            return TlsError(
                f"Kafka at {where} expects TLS, but this client connects with "
                f"{settings.security_protocol} (no TLS). The bus listens with SASL_SSL. {_FIX}"
            )
        return KafkaError(f"Kafka at {where} closed the connection ({exc}). {_FIX}")
    except OSError as exc:
        return KafkaError(
            f"No Kafka broker answers at {where} ({exc.strerror or exc}). Is it running "
            "(`bus kafka status`), and is BUS_BOOTSTRAP_SERVERS right?"
        )
    except aioerrors.KafkaError as exc:
        return KafkaError(f"Kafka at {where} refused the connection: {type(exc).__name__}: {exc}")
    conn.close()
    return None


async def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds at all (no verification: only the protocol counts)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), _PROBE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# -- authorization -------------------------------------------------------------------------------

_DENIALS: dict[type[Exception], tuple[str, str]] = {
    aioerrors.TopicAuthorizationFailedError: ("topic", ""),
    aioerrors.GroupAuthorizationFailedError: ("consumer group", "READ"),
    aioerrors.TransactionalIdAuthorizationFailed: ("transactional id", "WRITE"),
    aioerrors.ClusterAuthorizationFailedError: ("cluster", "IDEMPOTENT_WRITE"),
}


def is_denial(exc: BaseException) -> bool:
    return isinstance(exc, tuple(_DENIALS))


def explain_denial(
    exc: BaseException, settings: BusSettings, *, operation: str, what: str = ""
) -> AccessDenied:
    """``AccessDenied`` for an aiokafka authorization error, in the bus's words.

    ``operation`` is what the caller was doing to topics (READ, WRITE, DESCRIBE); groups,
    transactional ids and the cluster have their own.
    """
    kind, own_operation = next(v for k, v in _DENIALS.items() if isinstance(exc, k))
    op = own_operation or operation
    resource = _resource_name(exc)
    principal = settings.principal
    who = f"principal {principal!r}" if principal else "this client (no SASL login)"
    where = f" {resource!r}" if resource else ""
    prefix = f"{what}: " if what else ""
    return AccessDenied(
        f"{prefix}Kafka denied {who} {op} on {kind}{where}: no ACL grants it. ACLs follow the "
        "sharing agreements (`bus access apply`); if this principal should be allowed, the "
        "agreements file must say so.",
        principal=principal,
        operation=op,
        resource=f"{kind}:{resource}",
    )


def _resource_name(exc: BaseException) -> str:
    args: Any = exc.args[0] if exc.args else ""
    if isinstance(args, set | frozenset | list | tuple):
        return ", ".join(sorted(str(a) for a in args))
    return str(args)
