"""The local broker's TLS: a CA of the project's own and a broker certificate it signs, as PEM.

    material = ensure_tls(data_dir / "tls")
    material.ca_cert        # ca.pem: what clients trust (``ssl.ca.location``)
    material.broker_store   # broker.pem: the broker's key and certificate chain (PEM key store)

The nodes of a local cluster share one CA (clients trust one ``ca.pem`` whichever node they
reach) and each holds a key and certificate of its own beside its data:
``ensure_tls(cluster_dir / "tls", node_dir / "tls")``.

Written with ``cryptography``, no keytool and no JKS. Keys are EC P-256: Java reads RSA and EC
keys but not Ed25519, and it cannot read the encrypted PKCS#8 that ``cryptography`` writes, so
private keys are stored unencrypted with mode 0600 in a directory of mode 0700. The broker
certificate names ``localhost`` and ``127.0.0.1``, the addresses the local broker answers on.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus.access.files import ensure_private_dir, read_private, write_private
from bus.errors import ConfigError

_CA_DAYS = 10 * 365
_BROKER_DAYS = 2 * 365
_BROKER_NAMES = ("localhost",)
_BROKER_IPS = ("127.0.0.1",)
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True,
    content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


@dataclass(frozen=True)
class TlsMaterial:
    """Where the CA certificate and the broker's PEM key store are."""

    #: The CA's directory (``ca.pem``, ``ca.key``).
    directory: Path
    #: The broker's own directory (``broker.pem``); the CA's when None (a lone broker).
    broker_directory: Path | None = None

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def broker_store(self) -> Path:
        """The broker's private key followed by its certificate and the CA's (Kafka's PEM store)."""
        return (self.broker_directory or self.directory) / "broker.pem"

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.broker_store.exists()


def ensure_tls(directory: Path, broker_directory: Path | None = None) -> TlsMaterial:
    """Create the CA (in ``directory``) and the broker certificate it signs (in
    ``broker_directory``, by default the same) once; later calls return the same files."""
    material = TlsMaterial(directory, broker_directory)
    ensure_private_dir(directory)
    if material.exists():
        return material
    ca_key, ca_cert = _ensure_ca(material)
    if not material.broker_store.exists():
        ensure_private_dir(material.broker_store.parent)
        broker_key = ec.generate_private_key(ec.SECP256R1())
        broker_cert = _broker_certificate(broker_key, ca_key, ca_cert)
        write_private(
            material.broker_store,
            _private_pem(broker_key)
            + broker_cert.public_bytes(serialization.Encoding.PEM)
            + ca_cert.public_bytes(serialization.Encoding.PEM),
        )
    return material


def _ensure_ca(
    material: TlsMaterial,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA's key and certificate: read back, or made once (``ca.pem`` last: its presence
    says the CA is complete)."""
    if material.ca_cert.exists() and material.ca_key.exists():
        key = serialization.load_pem_private_key(
            read_private(material.ca_key, "CA private key"), password=None
        )
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{material.ca_key} is not the EC P-256 key of the local CA")
        return key, x509.load_pem_x509_certificate(material.ca_cert.read_bytes())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key)
    write_private(material.ca_key, _private_pem(ca_key))
    write_private(material.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_key, ca_cert


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Balkan Alert Bus"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Balkan Alert Bus local CA"),
    ])  # fmt: skip
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _broker_certificate(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> x509.Certificate:
    now = _now()
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in _BROKER_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _BROKER_IPS]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_BROKER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
