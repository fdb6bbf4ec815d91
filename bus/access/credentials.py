"""Credentials of principals: generated passwords, kept as ``client.properties`` files (mode 0600).

    store = CredentialStore(settings.credentials_dir)
    config, created = store.ensure("mk", template)   # mk.properties, a new password if none
    store.load("mk").password                         # SecretStr: its repr is '**********'

Every principal's credentials are one file in librdkafka's property names
(``bootstrap.servers``, ``security.protocol``, ``sasl.mechanism``, ``sasl.username``,
``sasl.password``, ``ssl.ca.location``), so the same file serves ``BUS_CLIENT_CONFIG``, any
librdkafka client and an onboarding kit. The directory is 0700 and every file 0600; looser
modes are refused. A password is never logged, printed or put in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydantic import SecretStr

from bus.access.files import check_private, ensure_private_dir, read_private, write_private
from bus.errors import ConfigError

SCRAM_ITERATIONS = 8192
_PRINCIPAL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_KNOWN = (
    "bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username",
    "sasl.password", "ssl.ca.location",
)  # fmt: skip


def check_principal(name: str) -> str:
    if not _PRINCIPAL.match(name) or ".." in name:
        raise ConfigError(
            f"Principal {name!r} is not valid: lower-case letters, digits, '-', '_' and '.'"
        )
    return name


def new_password() -> SecretStr:
    """32 random bytes, URL-safe base64: nothing a properties file or SCRAM must escape."""
    return SecretStr(secrets.token_urlsafe(32))


def scram_salted(password: SecretStr, mechanism: str = "SCRAM-SHA-512") -> tuple[str, str, int]:
    """(salt, salted password, iterations), base64, as ``kafka-storage format --add-scram`` takes.

    The broker only ever needs the salted form, so the clear password never appears on a
    command line (where ``ps`` would show it).
    """
    digest = {"SCRAM-SHA-512": "sha512", "SCRAM-SHA-256": "sha256"}[mechanism]
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(
        digest, password.get_secret_value().encode(), salt, SCRAM_ITERATIONS
    )
    return base64.b64encode(salt).decode(), base64.b64encode(salted).decode(), SCRAM_ITERATIONS


@dataclass(frozen=True)
class ClientConfig:
    """How one principal connects: a librdkafka ``client.properties`` file, parsed."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ca_location: Path | None = None
    #: Any other property (e.g. ``group.id``), kept as it is.
    extra: Mapping[str, str] = field(default_factory=dict)

    def with_password(self, password: SecretStr) -> ClientConfig:
        return replace(self, password=password)

    def to_properties(self, comment: str = "") -> bytes:
        lines = [f"# {line}".rstrip() for line in comment.splitlines()]
        values = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password.get_secret_value() if self.password else None,
            "ssl.ca.location": str(self.ca_location) if self.ca_location else None,
        }
        lines += [f"{k}={v}" for k, v in values.items() if v is not None]
        lines += [f"{k}={v}" for k, v in self.extra.items()]
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, text: str, source: Path) -> ClientConfig:
        props = parse_properties(text, source)
        if "bootstrap.servers" not in props:
            raise ConfigError(f"{source}: no bootstrap.servers")
        ca = props.get("ssl.ca.location")
        ca_path = Path(ca) if ca else None
        if ca_path is not None and not ca_path.is_absolute():
            ca_path = source.parent / ca_path  # relative to the file, as in a moved kit
        password = props.get("sasl.password")
        mechanism = props.get("sasl.mechanism") or props.get("sasl.mechanisms")
        return cls(
            bootstrap_servers=props["bootstrap.servers"],
            security_protocol=props.get("security.protocol", "PLAINTEXT").upper(),
            sasl_mechanism=mechanism,
            username=props.get("sasl.username"),
            password=SecretStr(password) if password else None,
            ca_location=ca_path,
            extra={k: v for k, v in props.items() if k not in _KNOWN and k != "sasl.mechanisms"},
        )

    @classmethod
    def load(cls, path: Path) -> ClientConfig:
        """Read a ``client.properties``; one holding a password must be private (mode 0600)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"No client configuration at {path} (BUS_CLIENT_CONFIG)") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read {path}: {exc.strerror}") from exc
        config = cls.parse(text, path)
        if config.password is not None:
            check_private(path)
        return config


class CredentialStore:
    """One ``<principal>.properties`` per principal in a private directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, principal: str) -> Path:
        return self.directory / f"{check_principal(principal)}.properties"

    def exists(self, principal: str) -> bool:
        return self.path(principal).exists()

    def load(self, principal: str) -> ClientConfig:
        path = self.path(principal)
        check_private(self.directory)
        read_private(path, f"credentials of {principal!r}")  # refuses a loose mode first
        return ClientConfig.load(path)

    def save(self, principal: str, config: ClientConfig, comment: str = "") -> Path:
        ensure_private_dir(self.directory)
        path = self.path(principal)
        write_private(path, config.to_properties(comment))
        return path

    def ensure(self, principal: str, template: ClientConfig) -> tuple[ClientConfig, bool]:
        """The principal's configuration from ``template``, keeping its password if it has one.

        Returns ``(config, created)``: ``created`` is True when a new password was generated.
        The file is rewritten when the template changed (another bootstrap address or CA).
        """
        password, created = None, False
        if self.exists(principal):
            password = self.load(principal).password
        if password is None:
            password, created = new_password(), True
        config = replace(template, username=principal, password=password)
        path = self.path(principal)
        if created or not path.exists() or path.read_bytes() != config.to_properties():
            self.save(principal, config)
        return config, created

    def remove(self, principal: str) -> bool:
        path = self.path(principal)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def principals(self) -> Iterator[str]:
        if not self.directory.exists():
            return
        for path in sorted(self.directory.glob("*.properties")):
            yield path.name.removesuffix(".properties")


def parse_properties(text: str, source: Path) -> dict[str, str]:
    """``name=value`` lines of a Java-style properties file; ``#`` and ``!`` start comments."""
    props: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{source}:{n}: expected 'name=value', got {line[:40]!r}")
        props[key.strip()] = value.strip()
    return props
