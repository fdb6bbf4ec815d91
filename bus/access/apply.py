"""``bus access apply``: make the broker's users and ACLs match the agreements file.

    plan = plan_access(settings, derive_access(agreements, settings.topics))
    print(plan.describe())          # what would change (``--dry-run``)
    apply_plan(settings, plan)      # users first, then new ACLs; old ACLs, then old users

aiokafka has no ACL or SCRAM admin API and Kafka 4 dropped the old ACL protocol versions, so
this module speaks through confluent-kafka's ``AdminClient`` (librdkafka), as the administrator
of ``BUS_CLIENT_CONFIG``. Only users of this topic prefix's namespace are touched (see
``bus.access.acl.in_namespace``), so environments sharing a cluster keep their principals.

Removing a principal deletes its ACLs first, which the broker applies to the principal's very
next request, and then its SCRAM credential, so that it cannot log in again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka.admin as _admin
from confluent_kafka import KafkaException

from bus.access.acl import Access, Grant, in_namespace
from bus.access.credentials import SCRAM_ITERATIONS, ClientConfig, CredentialStore
from bus.errors import ConfigError, KafkaError
from bus.kafka.security import librdkafka_config
from bus.settings import BusSettings

# confluent-kafka's type hints disagree with its documented use (None filters, list variance).
ck: Any = _admin

_RESOURCE = {
    "topic": ck.ResourceType.TOPIC, "group": ck.ResourceType.GROUP,
    "transactional_id": ck.ResourceType.TRANSACTIONAL_ID,
}  # fmt: skip
_RESOURCE_NAME = {v: k for k, v in _RESOURCE.items()}
_PATTERN = {"literal": ck.ResourcePatternType.LITERAL, "prefixed": ck.ResourcePatternType.PREFIXED}
_PATTERN_NAME = {v: k for k, v in _PATTERN.items()}


@dataclass
class AccessPlan:
    """What ``apply_plan`` will change: users to create or re-key, ACLs to add and remove."""

    access: Access
    new_users: list[str] = field(default_factory=list)
    #: Users that exist on the broker but whose password is not in the credentials dir.
    rekeyed_users: list[str] = field(default_factory=list)
    new_grants: list[Grant] = field(default_factory=list)
    old_grants: list[Grant] = field(default_factory=list)
    old_users: list[str] = field(default_factory=list)
    #: ACLs in the namespace that this bus never writes (DENY, other operations): left alone.
    foreign: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.new_users or self.rekeyed_users or self.new_grants or self.old_grants
            or self.old_users
        )  # fmt: skip

    def lines(self) -> list[str]:
        out = [f"+ user {u}" for u in self.new_users]
        out += [f"~ user {u} (new password: none on file)" for u in self.rekeyed_users]
        out += [f"+ acl  {g}" for g in self.new_grants]
        out += [f"- acl  {g}" for g in self.old_grants]
        out += [f"- user {u}" for u in self.old_users]
        return out


def admin_client(settings: BusSettings) -> Any:
    config = librdkafka_config(settings)
    config["socket.timeout.ms"] = str(settings.request_timeout_ms)
    return ck.AdminClient(config)


def _wait(futures: Iterable[Any], what: str, timeout_s: float) -> list[Any]:
    try:
        return [f.result(timeout=timeout_s) for f in futures]
    except KafkaException as exc:
        raise KafkaError(f"{what}: {exc.args[0].str() if exc.args else exc}") from exc
    except TimeoutError as exc:
        raise KafkaError(f"{what}: no answer from Kafka within {timeout_s:.0f} s") from exc


def _grant_of(binding: Any) -> Grant | None:
    principal = binding.principal.removeprefix("User:")
    rtype: Any = _RESOURCE_NAME.get(binding.restype)
    pattern: Any = _PATTERN_NAME.get(binding.resource_pattern_type)
    op: Any = binding.operation.name
    if (
        rtype is None or pattern is None or binding.permission_type != ck.AclPermissionType.ALLOW
        or binding.host != "*" or op not in ("READ", "WRITE", "DESCRIBE")
    ):  # fmt: skip
        return None
    return Grant(principal, rtype, pattern, binding.name, op)


def _binding(grant: Grant, kind: Any = None) -> Any:
    return (kind or ck.AclBinding)(
        _RESOURCE[grant.resource_type], grant.resource, _PATTERN[grant.pattern_type],
        f"User:{grant.principal}", "*", ck.AclOperation[grant.operation],
        ck.AclPermissionType.ALLOW,
    )  # fmt: skip


def _filter(grant: Grant) -> Any:
    return _binding(grant, ck.AclBindingFilter)


def current_state(settings: BusSettings, client: Any) -> tuple[set[str], list[Any]]:
    """(SCRAM users, ACL bindings) on the broker, all of them."""
    timeout = settings.request_timeout_ms / 1000
    described = client.describe_user_scram_credentials(request_timeout=timeout)
    users = set(_wait([described], "Listing SCRAM users", timeout + 5)[0])
    everything = ck.AclBindingFilter(
        ck.ResourceType.ANY, None, ck.ResourcePatternType.ANY, None, None,
        ck.AclOperation.ANY, ck.AclPermissionType.ANY,
    )  # fmt: skip
    acls = _wait([client.describe_acls(everything, request_timeout=timeout)], "Listing ACLs",
                 timeout + 5)[0]  # fmt: skip
    return users, list(acls)


def plan_access(settings: BusSettings, access: Access, client: Any) -> AccessPlan:
    """Compare the broker with ``access``; nothing is changed."""
    users, bindings = current_state(settings, client)
    store = CredentialStore(settings.credentials_dir)
    plan = AccessPlan(access)
    current: set[Grant] = set()
    for binding in bindings:
        principal = binding.principal.removeprefix("User:")
        if not in_namespace(principal, access.prefix):
            continue
        grant = _grant_of(binding)
        if grant is None:
            plan.foreign.append(str(binding))
        else:
            current.add(grant)
    wanted = set(access.grants)
    for name in access.principals:
        if name not in users:
            plan.new_users.append(name)
        elif not store.exists(name):
            plan.rekeyed_users.append(name)
    plan.new_grants = sorted(wanted - current)
    plan.old_grants = sorted(current - wanted)
    plan.old_users = sorted(u for u in users if access.manages(u) and u not in access.principals)
    return plan


def principal_template(settings: BusSettings) -> ClientConfig:
    """How principals connect: the administrator's address, protocol and CA, their own login."""
    return ClientConfig(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol=settings.security_protocol,
        sasl_mechanism="SCRAM-SHA-512",
        ca_location=settings.ssl_ca_file.resolve() if settings.ssl_ca_file else None,
    )


def apply_plan(settings: BusSettings, plan: AccessPlan, client: Any) -> None:
    """Carry ``plan`` out, in the order that never leaves a principal more access than planned."""
    timeout = settings.request_timeout_ms / 1000
    store = CredentialStore(settings.credentials_dir)
    template = principal_template(settings)
    upserts = []
    for name in plan.access.principals:
        # Keeps a password on file (a new user on a reset broker gets the one its kit holds),
        # and rewrites the file when the address or CA changed.
        config, _ = store.ensure(name, template)
        assert config.password is not None
        if name not in plan.new_users and name not in plan.rekeyed_users:
            continue
        upserts.append(
            ck.UserScramCredentialUpsertion(
                name, ck.ScramCredentialInfo(ck.ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                config.password.get_secret_value().encode(),
            )
        )  # fmt: skip
    if upserts:
        result = client.alter_user_scram_credentials(upserts, request_timeout=timeout)
        _wait(result.values(), "Setting SCRAM credentials", timeout + 5)
    if plan.new_grants:
        result = client.create_acls([_binding(g) for g in plan.new_grants], request_timeout=timeout)
        _wait(result.values(), "Creating ACLs", timeout + 5)
    if plan.old_grants:
        result = client.delete_acls([_filter(g) for g in plan.old_grants], request_timeout=timeout)
        _wait(result.values(), "Deleting ACLs", timeout + 5)
    _until_in_force(settings, client, plan)
    if plan.old_users:
        deletions = [
            ck.UserScramCredentialDeletion(u, ck.ScramMechanism.SCRAM_SHA_512)
            for u in plan.old_users
        ]
        result = client.alter_user_scram_credentials(deletions, request_timeout=timeout)
        _wait(result.values(), "Deleting SCRAM credentials", timeout + 5)
        for user in plan.old_users:
            if store.exists(user):
                store.remove(user)


def _until_in_force(settings: BusSettings, client: Any, plan: AccessPlan) -> None:
    """Wait until the broker answering us authorizes with the new ACLs, not just the controller.

    In KRaft the controller commits an ACL change and each broker applies it a moment later;
    a credential is deleted only once the ACLs are gone from the broker, so that an offboarded
    principal's next request already fails, and ``apply`` returns with new grants usable.
    """
    if not (plan.new_grants or plan.old_grants):
        return
    deadline = time.monotonic() + settings.request_timeout_ms / 1000
    added, removed = set(plan.new_grants), set(plan.old_grants)
    while True:
        _, bindings = current_state(settings, client)
        present = {g for g in map(_grant_of, bindings) if g is not None}
        if added <= present and not (removed & present):
            return
        if time.monotonic() > deadline:
            raise KafkaError(
                f"The broker still does not apply the ACL changes after "
                f"{settings.request_timeout_ms} ms; run `bus access apply` again."
            )
        time.sleep(0.05)


def check_admin(settings: BusSettings) -> None:
    if not settings.principal:
        raise ConfigError(
            "`bus access` talks to the broker as its administrator: set BUS_CLIENT_CONFIG to the "
            "administrator's client.properties (`bus kafka start --secure` prints it)."
        )
