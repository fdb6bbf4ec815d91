"""An onboarding kit: what one partner needs to use the bus with any Kafka client, nothing else.

    write_kit(settings, access, "europol", Path("kit-europol"))

    kit-europol/            (0700)
      client.properties     librdkafka names: bootstrap.servers, security.protocol,
                            sasl.mechanism, sasl.username, sasl.password, ssl.ca.location
      ca.pem                the CA that signed the broker's certificate
      keys/<signer>.pub     the public key of every origin, and hub's (re-signed copies)
      schemas/<type>/v<N>.avsc    alerts, notices, and the lookup request and answer

A requester of a lookup agreement finds in its ``client.properties`` comment where it writes
its requests and reads its answers (``lookup.<id>.requests`` and ``.answers``); the answers are
signed by the hub, whose key is in ``keys/``.

Every file is 0600 and every directory 0700: ``client.properties`` holds the partner's password.
No private key and no other principal's credentials go in.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from bus.access.acl import Access, PrincipalAccess
from bus.access.credentials import CredentialStore
from bus.access.files import ensure_private_dir, write_private
from bus.errors import ConfigError
from bus.keys import HUB_KEY_ID
from bus.settings import BusSettings
from bus.topics import TopicNames


def kit_principal(access: Access, principal_id: str) -> PrincipalAccess:
    """The principal named ``principal_id`` (with or without the topic prefix)."""
    for name in (access.prefix + principal_id, principal_id):
        if name in access.principals:
            return access.principals[name]
    known = ", ".join(n.removeprefix(access.prefix) for n in access.principals)
    raise ConfigError(
        f"{principal_id!r} is no principal of the agreements file (BUS_AGREEMENTS); known: {known}"
    )


def write_kit(
    settings: BusSettings,
    access: Access,
    principal_id: str,
    out: Path,
    *,
    bootstrap_servers: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write the kit of ``principal_id`` into ``out``; return the files written."""
    principal = kit_principal(access, principal_id)
    store = CredentialStore(settings.credentials_dir)
    if not store.exists(principal.name):
        raise ConfigError(
            f"No credentials for {principal.name!r} in {settings.credentials_dir}: run "
            "`bus access apply` first (it creates the principal's user and password)."
        )
    config = store.load(principal.name)
    ca_source = config.ca_location or settings.ssl_ca_file
    if config.security_protocol in ("SSL", "SASL_SSL") and (
        ca_source is None or not ca_source.is_file()
    ):
        raise ConfigError(
            f"The CA certificate for the kit ({ca_source or 'BUS_SSL_CA_FILE unset'}) is missing."
        )
    # Check every input before writing anything: a failed kit leaves no half-written directory.
    missing = [s for s in _signers(access) if not (settings.keys_dir / f"{s}.pub").is_file()]
    if missing:
        raise ConfigError(
            f"No public key for {', '.join(missing)} in {settings.keys_dir} for the kit: every "
            "origin's and the hub's .pub file must be in BUS_KEYS_DIR (`bus keys generate <id>` "
            "makes a pair; only the .pub goes into the kit)."
        )
    _prepare(out, force)
    out = out.resolve()
    written: list[Path] = []

    def put(path: Path, data: bytes) -> None:
        write_private(path, data)
        written.append(path)

    if ca_source is not None:
        put(out / "ca.pem", ca_source.read_bytes())
    kit_config = replace(
        config,
        bootstrap_servers=bootstrap_servers or config.bootstrap_servers,
        ca_location=out / "ca.pem" if ca_source is not None else None,
        extra={},
    )
    put(out / "client.properties", kit_config.to_properties(_comment(access, principal)))
    for signer in _signers(access):
        source = settings.keys_dir / f"{signer}.pub"
        put(out / "keys" / f"{signer}.pub", source.read_bytes())
    for schema in sorted(settings.schemas_dir.glob("*/v*.avsc")):
        put(out / "schemas" / schema.parent.name / schema.name, schema.read_bytes())
    return written


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty; choose another --out or pass --force")
        shutil.rmtree(out)
    ensure_private_dir(out)


def _signers(access: Access) -> list[str]:
    """Every origin's key id (its country code) and the hub's."""
    origins = {
        role.removeprefix("country ")
        for p in access.principals.values()
        for role in p.roles
        if role.startswith("country ")
    }
    return sorted(origins | {HUB_KEY_ID})


def _comment(access: Access, principal: PrincipalAccess) -> str:
    lines = [
        f"Balkan Alert Bus: credentials of {principal.name} ({', '.join(principal.roles)}).",
        "Keep this file secret (mode 0600); the operators can revoke it at any time.",
        "What this principal may do:",
    ]
    lines += [
        f"  {g.operation} {g.resource_type} {g.pattern_type} {g.resource}" for g in principal.grants
    ]
    if "requester" in principal.roles:
        pid = principal.name.removeprefix(access.prefix)
        names = TopicNames(access.prefix)
        lines += [
            "Lookups (hit/no-hit on identity tokens, as its lookup agreements allow): write a",
            f"  lookup-request record (schemas/lookup-request) to {names.lookup_requests(pid)}",
            f"  and read the lookup-answer, signed by the hub (keys/hub.pub), from "
            f"{names.lookup_answers(pid)}",
        ]
    groups = [g.resource for g in principal.grants if g.resource_type == "group"]
    if groups:
        lines.append(
            f"Consumer groups must start with {groups[0]!r}, e.g. group.id={groups[0]}inbox"
        )
    return "\n".join(lines)
