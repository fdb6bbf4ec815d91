"""Who may do what on the broker, derived from the agreements file: pure, no Kafka involved.

    access = derive_access(agreements, TopicNames(prefix))
    access.principals["mk"]        # the grants of North Macedonia's principal
    access.grants                  # every ACL the broker must hold, sorted

Principals, each a SCRAM user named ``<topic prefix><id>``:

- **a country** (a partner with ``country``, or an origin of an agreement) writes its own
  ``ingress.<cc>.`` prefix and ``bus.dlq`` (its adapter sets bad records aside there), and
  reads nothing but ``bus.schemas``;
- **a partner** reads its own ``partner.<id>.`` prefix and ``bus.schemas`` and uses consumer
  groups starting with ``<id>.``; it writes nothing (an agency that only receives cannot put
  a single record on the bus). A country is usually also a partner: its principal has both;
- **the fan-out** ``fanout`` reads ``ingress.``, writes ``partner.``, ``bus.dlq``, reads and
  writes ``bus.audit`` and ``bus.fanout.state`` (it restores from them), reads
  ``bus.fanout.shards`` (its instances share the shards through it), uses its groups
  ``bus-fanout`` and ``bus-fanout-shards`` and transactional ids ``bus-fanout-shard-<k>``;
- **the operators** ``admin`` are super users of the broker: no ACL names them.

Nobody else reads ``bus.audit``, ``bus.dlq`` or ``bus.fanout.state``. With a topic prefix every
name above (topics, groups, transactional ids and principals) carries it, so that environments
sharing a cluster neither see each other's data nor share credentials. Idempotent producers
need no IDEMPOTENT_WRITE on the cluster: since Kafka 3.0 (KIP-679) WRITE on a topic suffices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bus.agreements import Agreements
from bus.errors import PolicyError
from bus.topics import SCHEMAS_TOPIC, TopicNames

FANOUT = "fanout"
ADMIN = "admin"
#: Names the broker keeps for itself and its operators: never an agreements principal.
RESERVED = frozenset({ADMIN, "broker", "controller"})

ResourceType = Literal["topic", "group", "transactional_id"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["READ", "WRITE", "DESCRIBE"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may ``operation`` on the resources matching the pattern."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    resource: str
    operation: Operation

    def __str__(self) -> str:
        kind = self.resource_type.replace("_", " ")
        match = "starting with " if self.pattern_type == "prefixed" else ""
        return f"{self.principal}: {self.operation} {kind} {match}{self.resource!r}"


@dataclass(frozen=True)
class PrincipalAccess:
    """A principal and its grants; ``roles`` says why it exists (country, partner, fanout)."""

    name: str
    roles: tuple[str, ...]
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class Access:
    """Every principal the agreements call for, with its grants."""

    prefix: str
    principals: Mapping[str, PrincipalAccess]

    @property
    def grants(self) -> list[Grant]:
        return sorted(g for p in self.principals.values() for g in p.grants)

    def manages(self, user: str) -> bool:
        """Whether ``user`` lies in this prefix's namespace of principals (to add or remove)."""
        return in_namespace(user, self.prefix)


def in_namespace(user: str, prefix: str) -> bool:
    """``<prefix><id>`` with an id that has no dot: environments never touch each other's users."""
    if not user.startswith(prefix):
        return False
    rest = user[len(prefix) :]
    return bool(_ID.match(rest)) and (prefix != "" or rest not in RESERVED)


def derive_access(agreements: Agreements, names: TopicNames) -> Access:
    """The principals and grants that make the broker enforce ``agreements``."""
    p = names.prefix
    grants: dict[str, set[Grant]] = {}
    roles: dict[str, list[str]] = {}

    def allow(principal: str, rtype: ResourceType, pattern: PatternType, name: str,
              *operations: Operation) -> None:  # fmt: skip
        for op in operations:
            grants.setdefault(principal, set()).add(Grant(principal, rtype, pattern, name, op))

    def role(principal: str, what: str) -> None:
        roles.setdefault(principal, []).append(what)
        allow(principal, "topic", "literal", p + SCHEMAS_TOPIC, "READ")

    speaks_for = {pt.country: pid for pid, pt in agreements.partners.items() if pt.country}
    origins = {o for a in agreements.agreements for o in a.origins}
    for cc in sorted(set(speaks_for) | origins):
        principal = p + speaks_for.get(cc, cc)
        role(principal, f"country {cc}")
        allow(principal, "topic", "prefixed", f"{p}ingress.{cc}.", "WRITE")
        allow(principal, "topic", "literal", names.dlq, "WRITE")
    for pid in agreements.partners:
        principal = p + pid
        role(principal, "partner")
        allow(principal, "topic", "prefixed", f"{p}partner.{pid}.", "READ")
        allow(principal, "group", "prefixed", f"{p}{pid}.", "READ")

    fanout = p + FANOUT
    role(fanout, "fan-out")
    allow(fanout, "topic", "prefixed", f"{p}ingress.", "READ")
    allow(fanout, "topic", "prefixed", f"{p}partner.", "WRITE")
    allow(fanout, "topic", "literal", names.dlq, "WRITE")
    allow(fanout, "topic", "literal", names.audit, "READ", "WRITE")
    allow(fanout, "topic", "literal", names.fanout_state, "READ", "WRITE")
    allow(fanout, "topic", "literal", names.fanout_shards, "READ")
    allow(fanout, "group", "literal", f"{p}bus-fanout", "READ")
    allow(fanout, "group", "literal", f"{p}bus-fanout-shards", "READ")
    allow(fanout, "transactional_id", "prefixed", f"{p}bus-fanout-", "WRITE")

    _check_names(roles, p)
    return Access(
        prefix=p,
        principals={
            name: PrincipalAccess(name, tuple(roles[name]), tuple(sorted(grants[name])))
            for name in sorted(roles)
        },
    )


def _check_names(roles: Mapping[str, list[str]], prefix: str) -> None:
    for name in roles:
        if name[len(prefix) :] in RESERVED or (name == prefix + FANOUT and len(roles[name]) > 1):
            raise PolicyError(
                f"Partner id {name[len(prefix) :]!r} is reserved for the bus itself "
                f"({', '.join(sorted(RESERVED | {FANOUT}))}); rename the partner in the "
                "agreements file."
            )
