"""What makes the local broker secure: TLS, SASL logins, the authorizer and the administrator.

``LocalKafka`` asks this module for the extra broker properties and ``kafka-storage format``
arguments when ``BUS_KAFKA_SECURE`` (or ``bus kafka start --secure``) is on:

- clients reach one ``SASL_SSL`` listener (SCRAM-SHA-512) whose certificate the project's own
  CA signed (``bus.access.tls``);
- the controller listener stays on loopback and asks for a PLAIN login of its own: left open,
  any local process could talk to the controller and create ACLs. PLAIN, because the controller
  logs in before any SCRAM credential exists; its principal must be a super user or the node
  never starts;
- ``StandardAuthorizer`` denies whatever no ACL grants;
- the administrator ``admin`` (a super user) is created when the storage is formatted (KIP-900:
  the first SCRAM user cannot be added any other way). Only its salted password reaches the
  command line; the password itself is stored in ``BUS_CREDENTIALS_DIR/admin.properties``
  (mode 0600) and never printed or logged.

The nodes of a local cluster (``bus.kafka.cluster``) share what must be the same on each: the
CA and the broker's and controller's passwords live in the cluster's directory (``shared_dir``),
so that every node accepts the others' logins on the inter-broker and controller listeners;
each node has its own key and certificate, signed by that CA, for the address it answers on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from bus.access.credentials import ClientConfig, CredentialStore, new_password, scram_salted
from bus.access.files import read_private, write_private
from bus.access.tls import TlsMaterial, ensure_tls
from bus.errors import KafkaLocalError

ADMIN = "admin"
#: The broker's own principals: it logs in to itself as ``broker`` (inter-broker, SCRAM) and to
#: its controller as ``controller`` (PLAIN). Neither is ever given to a person.
BROKER = "broker"
CONTROLLER = "controller"
MECHANISM = "SCRAM-SHA-512"
CLIENT_LISTENER = "CLIENT"
_BROKER_PASSWORD = "broker.password"
_CONTROLLER_PASSWORD = "controller.password"
_SECRETS = (_BROKER_PASSWORD, _CONTROLLER_PASSWORD)


@dataclass(frozen=True)
class SecureBroker:
    """The secure parts of one local broker: its data directory and the credentials directory."""

    data_dir: Path
    credentials_dir: Path
    bootstrap_servers: str
    #: Where the CA and the passwords shared by a cluster's nodes live; ``data_dir`` when None.
    shared_dir: Path | None = None

    @property
    def _shared(self) -> Path:
        return self.shared_dir or self.data_dir

    @property
    def tls(self) -> TlsMaterial:
        return TlsMaterial(self._shared / "tls", self.data_dir / "tls")

    @property
    def _secrets_file(self) -> Path:
        return self._shared / "broker-secrets.properties"

    @property
    def admin_config_file(self) -> Path:
        return CredentialStore(self.credentials_dir).path(ADMIN)

    def prepare(self) -> None:
        """Create the TLS material and the broker's and controller's passwords once."""
        for directory in (self._shared, self.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o700)  # it will hold private keys and the broker's passwords
        ensure_tls(self.tls.directory, self.tls.broker_directory)
        secrets = self._secrets()
        missing = [name for name in _SECRETS if name not in secrets]
        if missing:
            secrets |= {name: new_password().get_secret_value() for name in missing}
            text = "".join(f"{name}={value}\n" for name, value in secrets.items())
            write_private(self._secrets_file, text.encode())

    def admin_config(self, *, formatting: bool) -> ClientConfig:
        """The administrator's client configuration, its password made when formatting."""
        store = CredentialStore(self.credentials_dir)
        template = ClientConfig(
            bootstrap_servers=self.bootstrap_servers, security_protocol="SASL_SSL",
            sasl_mechanism=MECHANISM, ca_location=self.tls.ca_cert,
        )  # fmt: skip
        if not formatting and not store.exists(ADMIN):
            raise KafkaLocalError(
                f"The secure broker in {self.data_dir} was formatted with an administrator whose "
                f"password is not in {self.credentials_dir} (BUS_CREDENTIALS_DIR). Point "
                "BUS_CREDENTIALS_DIR at the directory used when it was formatted, or delete "
                f"{self.data_dir} to start afresh."
            )
        config, _ = store.ensure(ADMIN, template)
        return config

    def _secrets(self) -> dict[str, str]:
        if not self._secrets_file.exists():
            return {}
        text = read_private(self._secrets_file, "broker secrets").decode()
        pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
        return {key.strip(): value.strip() for key, _, value in pairs}

    def _secret(self, name: str) -> str:
        try:
            return self._secrets()[name]
        except KeyError:
            raise KafkaLocalError(
                f"{self._secrets_file} holds no {name}: start the broker with `bus kafka start "
                "--secure` (it writes it), or delete the broker's data directory to start afresh."
            ) from None

    def _broker_password(self) -> str:
        return self._secret(_BROKER_PASSWORD)

    def properties(self, port: int, controller_port: int) -> dict[str, str]:
        """Broker properties replacing the plaintext listeners."""
        # Every node logs in to every other node's controller with it: one for the cluster.
        controller_password = self._secret(_CONTROLLER_PASSWORD)
        tls = self.tls
        return {
            "listeners": (
                f"{CLIENT_LISTENER}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
            ),
            "advertised.listeners": f"{CLIENT_LISTENER}://127.0.0.1:{port}",
            "listener.security.protocol.map": (
                f"{CLIENT_LISTENER}:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
            ),
            "inter.broker.listener.name": CLIENT_LISTENER,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            # The default is GSSAPI: without this the node cannot reach its own controller.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.client.sasl.enabled.mechanisms": MECHANISM,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.client.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{BROKER}" password="{self._broker_password()}";'
            ),
            "listener.name.controller.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{CONTROLLER}" password="{controller_password}" '
                f'user_{CONTROLLER}="{controller_password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.broker_store),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_cert),
            "ssl.client.auth": "none",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};User:{BROKER};User:{CONTROLLER}",
        }

    def format_args(self, admin: ClientConfig) -> list[str]:
        """``--add-scram`` arguments for the administrator and the broker: salted, never clear."""
        args: list[str] = []
        users = ((ADMIN, admin.password), (BROKER, SecretStr(self._broker_password())))
        for name, password in users:
            assert password is not None
            salt, salted, iterations = scram_salted(password, MECHANISM)
            args += [
                "--add-scram",
                f'{MECHANISM}=[name={name},salt="{salt}",saltedpassword="{salted}",'
                f"iterations={iterations}]",
            ]
        return args
