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
- **a requester** (a partner named in ``requesters`` of a lookup agreement) also writes its
  ``lookup.<id>.requests`` and reads its ``lookup.<id>.answers`` (with a group of its own
  ``<id>.`` prefix): the one thing a partner that is no country may write. Every other partner
  still writes nothing, and a requester no longer named loses both at the next apply;
- **the fan-out** ``fanout`` reads ``ingress.``, writes ``partner.``, ``bus.dlq``, reads and
  writes ``bus.audit`` and ``bus.fanout.state`` (it restores from them), reads
  ``bus.fanout.shards`` (its instances share the shards through it), uses its groups
  ``bus-fanout`` and ``bus-fanout-shards`` and transactional ids ``bus-fanout-shard-<k>`` and
  ``bus-fanout-shard-<k>-2`` (two producers per shard taking turns; allowed by the prefix
  ``bus-fanout-``);
- **the joint index** ``index`` reads ``ingress.`` (read_committed, offsets kept in its own
  database: no group) and each requester's ``lookup.<id>.requests`` in its group
  ``bus-index-lookups``; with its transactional ids ``bus-index-lookups`` and
  ``bus-index-lookups-2`` (two producers taking turns) it writes each
  requester's ``lookup.<id>.answers``, the hit notices into the owners' ``partner.<cc>.inbox``
  only, and ``bus.audit.lookups``, which it also reads (it resumes the chain from its head);
- **the operators** ``admin`` are super users of the broker: no ACL names them.

Nobody else reads ``bus.audit``, ``bus.audit.lookups``, ``bus.dlq`` or ``bus.fanout.state``.
With a topic prefix every name above (topics, groups, transactional ids and principals) carries
it, so that environments sharing a cluster neither see each other's data nor share credentials.
Idempotent producers need no IDEMPOTENT_WRITE on the cluster: since Kafka 3.0 (KIP-679) WRITE
on a topic suffices.
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
INDEX = "index"
#: The principals of the bus's own services: never a partner id either.
SERVICES = frozenset({FANOUT, INDEX})
#: The joint index's consumer group (after the topic prefix).
INDEX_LOOKUPS = "bus-index-lookups"
#: Its transactional ids: two producers that take turns committing lookups.
INDEX_TRANSACTIONAL_IDS = (INDEX_LOOKUPS, INDEX_LOOKUPS + "-2")
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
    for pid in agreements.lookup_requesters:
        principal = p + pid
        roles[principal].append("requester")
        allow(principal, "topic", "literal", names.lookup_requests(pid), "WRITE")
        allow(principal, "topic", "literal", names.lookup_answers(pid), "READ")

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

    index = p + INDEX
    role(index, "joint index")
    allow(index, "topic", "prefixed", f"{p}ingress.", "READ")
    for pid in agreements.lookup_requesters:
        allow(index, "topic", "literal", names.lookup_requests(pid), "READ")
        allow(index, "topic", "literal", names.lookup_answers(pid), "WRITE")
    for owner in agreements.lookup_owners:
        allow(index, "topic", "literal", names.inbox(owner), "WRITE")
    allow(index, "topic", "literal", names.lookup_audit, "READ", "WRITE")
    allow(index, "group", "literal", p + INDEX_LOOKUPS, "READ")
    for tid in INDEX_TRANSACTIONAL_IDS:
        allow(index, "transactional_id", "literal", p + tid, "WRITE")

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
        own = name[len(prefix) :]
        if own in RESERVED or (own in SERVICES and len(roles[name]) > 1):
            raise PolicyError(
                f"Partner id {own!r} is reserved for the bus itself "
                f"({', '.join(sorted(RESERVED | SERVICES))}); rename the partner in the "
                "agreements file."
            )
