"""The sharing agreements file: who the partners are and what each agreement lets them receive.

    agreements = load_agreements(settings.agreements, schemas=SchemaRegistry.load(schemas_dir))
    agreements.partners["jc-tabanovce"].name
    agreements.covering("rs", "irregular-crossing")    # the agreements for an origin and type

The file is read and checked once, at start-up, so that a mistake stops the service with a
message naming the file, the agreement or partner, and the problem, instead of leaking or
withholding alerts later. The format is documented in the README ("Sharing agreements"); the
rules that apply it to an alert are in ``bus.policy``.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

from bus.errors import ConfigError, PolicyError
from bus.keys import HUB_KEY_ID
from bus.lookups import LookupAgreement, LookupScope, lookup_scope, parse_lookups
from bus.models import ALERT_TYPES, AlertStatus, Tlp
from bus.redact import HEADER, FieldKind, covers, field_kinds
from bus.schemas import SchemaRegistry

#: TLP labels from the least to the most restricted.
TLP_ORDER: tuple[Tlp, ...] = (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED)
TLP_RANK: Mapping[Tlp, int] = types.MappingProxyType({t: i for i, t in enumerate(TLP_ORDER)})

ALL_TYPES = "*"
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_COUNTRY = re.compile(r"[a-z]{2}")
_PUBLIC_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\.pub")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_URL = re.compile(r"https?://[^\s/]+\S*")

_TOP_KEYS = {"partners": True, "agreements": True, "lookups": False}  # name → required
_PARTNER_KEYS = {
    "name": True, "country": True, "public_key": True, "delivery": False, "webhook_url": False,
}  # fmt: skip
_AGREEMENT_KEYS = {
    "id": True, "title": True, "legal_basis": True, "origins": True, "recipients": True,
    "types": True, "max_tlp": True, "redact": True, "valid_from": True, "valid_until": True,
    "statuses": False,
}  # fmt: skip
#: What an agreement carries when it names no ``statuses``: real alerts only.
DEFAULT_STATUSES: frozenset[AlertStatus] = frozenset({AlertStatus.ACTUAL})


@dataclass(frozen=True)
class Partner:
    """An agency that receives alerts, and the country it publishes for, if any."""

    id: str
    name: str
    country: str | None = None
    #: File name of its public key inside ``BUS_KEYS_DIR`` (``<country>.pub``) if it publishes.
    public_key: str | None = None
    delivery: Literal["kafka", "webhook"] = "kafka"
    webhook_url: str | None = None


@dataclass(frozen=True)
class Agreement:
    """One agreement: which origins share which alert types with which partners, up to a TLP."""

    id: str
    title: str
    legal_basis: str
    origins: frozenset[str]
    recipients: frozenset[str]
    types: frozenset[str]
    max_tlp: Tlp
    #: Field paths removed from the copies sent under this agreement.
    redact: tuple[str, ...]
    valid_from: date
    valid_until: date | None = None
    #: The alert statuses it carries (``ACTUAL`` unless it names ``EXERCISE`` or ``TEST`` too).
    statuses: frozenset[AlertStatus] = DEFAULT_STATUSES

    def valid_on(self, day: date) -> bool:
        """Whether ``day`` lies in the validity period, both ends included."""
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)

    def valid_at(self, instant: datetime) -> bool:
        """Whether the agreement is in force on the UTC date of ``instant`` (naive means UTC)."""
        if instant.tzinfo is not None:
            instant = instant.astimezone(UTC)
        return self.valid_on(instant.date())

    def allows(self, tlp: Tlp) -> bool:
        return TLP_RANK[tlp] <= TLP_RANK[self.max_tlp]

    def carries(self, status: AlertStatus) -> bool:
        return status in self.statuses


@dataclass(frozen=True)
class Agreements:
    """All partners (by id, sorted) and agreements, with an index by origin and alert type."""

    partners: Mapping[str, Partner]
    agreements: tuple[Agreement, ...]
    source: Path | None = None
    #: The ``lookups:`` section: who may ask the joint index about whom (``bus.lookups``).
    lookups: tuple[LookupAgreement, ...] = ()
    _index: Mapping[tuple[str, str], tuple[Agreement, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        sorted_partners = {pid: self.partners[pid] for pid in sorted(self.partners)}
        object.__setattr__(self, "partners", types.MappingProxyType(sorted_partners))
        index: dict[tuple[str, str], list[Agreement]] = {}
        for agreement in self.agreements:
            for origin in agreement.origins:
                for alert_type in agreement.types:
                    index.setdefault((origin, alert_type), []).append(agreement)
        object.__setattr__(self, "_index", {k: tuple(v) for k, v in index.items()})

    def covering(self, origin: str, alert_type: str) -> tuple[Agreement, ...]:
        """The agreements naming ``origin`` and ``alert_type``, whatever their date and TLP."""
        return self._index.get((origin, alert_type), ())

    def get(self, agreement_id: str) -> Agreement | None:
        return next((a for a in self.agreements if a.id == agreement_id), None)

    @property
    def lookup_requesters(self) -> list[str]:
        """Every partner that some lookup agreement names as a requester, sorted."""
        return sorted({r for a in self.lookups for r in a.requesters})

    @property
    def lookup_owners(self) -> list[str]:
        """Every country whose entries some lookup agreement shows (it gets hit notices)."""
        return sorted({o for a in self.lookups for o in a.owners})

    def lookup_scope(self, requester: str, day: date) -> LookupScope:
        """(owner, alert type) → lookup agreement ids that show them to ``requester`` on ``day``."""
        return lookup_scope(self.lookups, requester, day)


# -- loading -----------------------------------------------------------------------------------


def load_agreements(path: Path, *, schemas: SchemaRegistry | None = None) -> Agreements:
    """Read and check the agreements file; raise ``PolicyError`` naming what is wrong.

    Redact paths are checked against the newest version of each alert type in ``schemas`` when
    given, else against the pydantic models (equal to the schemas, as the model tests show).
    A missing or unreadable file raises ``ConfigError`` (point ``BUS_AGREEMENTS`` at it).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"Agreements file {path} does not exist; set BUS_AGREEMENTS to the sharing "
            "agreements YAML (see examples/agreements.yaml)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Agreements file {path} cannot be read: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except _DuplicateKey as exc:
        raise PolicyError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PolicyError(f"{path}: {where}not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    return replace(parse_agreements(data, source=str(path), schemas=schemas), source=path)


def parse_agreements(
    data: object, *, source: str, schemas: SchemaRegistry | None = None
) -> Agreements:
    """Check already-parsed YAML (``source`` names it in messages) and build ``Agreements``."""
    return _Parser(source, schemas).parse(data)


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key repeated in one mapping is an error, not the last wins:
    a partner listed twice would otherwise silently lose its first definition."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_unique_keys(node, ())
        return super().construct_document(node)


def _check_unique_keys(node: yaml.Node, path: tuple[str, ...]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    what = "partner id" if path == ("partners",) else "key"
                    where = f" in {'.'.join(path)}" if path and what == "key" else ""
                    raise _DuplicateKey(
                        f"line {line}: duplicate {what} {key!r}{where} (first at line "
                        f"{seen[key]}); each may appear once"
                    )
                seen[key] = line
            _check_unique_keys(value_node, (*path, key or "?"))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*path, str(i)))


class _Parser:
    """Checks one agreements document; every error names the file and the entry."""

    def __init__(self, source: str, schemas: SchemaRegistry | None) -> None:
        self.source = source
        self.schemas = schemas
        self.alert_types = schemas.alert_types if schemas is not None else ALERT_TYPES
        self._kinds: dict[str, Mapping[str, FieldKind]] = {}
        self.where = ""

    def fail(self, problem: str) -> NoReturn:
        raise PolicyError(f"{self.source}: {self.where}{problem}")

    def parse(self, data: object) -> Agreements:
        if not isinstance(data, dict):
            got = "an empty file" if data is None else f"a {type(data).__name__}"
            self.fail(f"expected a mapping with 'partners' and 'agreements', got {got}")
        self.check_keys(data, _TOP_KEYS)
        raw_partners = data["partners"]
        if not isinstance(raw_partners, dict):
            self.fail(f"'partners' must map partner ids to partners, got {_kind(raw_partners)}")
        partners = {self.partner_id(pid): self.partner(pid, p) for pid, p in raw_partners.items()}
        raw_agreements = data["agreements"]
        self.where = ""
        if not isinstance(raw_agreements, list):
            self.fail(f"'agreements' must be a list of agreements, got {_kind(raw_agreements)}")
        agreements: list[Agreement] = []
        for i, raw in enumerate(raw_agreements):
            agreement = self.agreement(i, raw, partners)
            if any(a.id == agreement.id for a in agreements):
                self.fail("duplicate agreement id; each agreement needs its own id")
            agreements.append(agreement)
        lookups = parse_lookups(self, data.get("lookups"), partners)
        return Agreements(partners=partners, agreements=tuple(agreements), lookups=lookups)

    # -- partners ------------------------------------------------------------------------------

    def partner_id(self, pid: object) -> str:
        self.where = f"partner {pid!r}: "
        if not isinstance(pid, str) or not _ID.fullmatch(pid):
            self.fail(
                "a partner id is lower-case letters, digits and dashes, at most 63 characters "
                "(e.g. 'rs', 'europol', 'jc-tabanovce'); quote ids YAML reads otherwise"
            )
        if pid == HUB_KEY_ID:
            self.fail(f"'{HUB_KEY_ID}' is reserved for the bus's own signing key")
        return pid

    def partner(self, pid: str, raw: object) -> Partner:
        if not isinstance(raw, dict):
            self.fail(f"expected a mapping with {', '.join(_PARTNER_KEYS)}, got {_kind(raw)}")
        self.check_keys(raw, _PARTNER_KEYS)
        name = self.text(raw, "name")
        country = raw["country"]
        if country is not None:
            country = self.country(country, "country")
        public_key = raw["public_key"]
        if public_key is not None:
            if not isinstance(public_key, str) or not _PUBLIC_KEY.fullmatch(public_key):
                self.fail(
                    f"public_key must be a plain file name inside BUS_KEYS_DIR ending in .pub, "
                    f"such as 'rs.pub', got {public_key!r}"
                )
            if country is None or public_key != f"{country}.pub":
                self.fail(
                    f"public_key {public_key!r} must be '<country>.pub' of the country this "
                    "partner publishes for: the bus verifies an origin's signatures with "
                    f"<keys dir>/<origin>.pub (set country{'' if country else ' too'})"
                )
        delivery = raw.get("delivery", "kafka")
        if delivery not in ("kafka", "webhook"):
            self.fail(f"delivery must be 'kafka' or 'webhook', got {delivery!r}")
        webhook_url = raw.get("webhook_url")
        if delivery == "webhook" and (
            not isinstance(webhook_url, str) or not _URL.fullmatch(webhook_url)
        ):
            self.fail(f"delivery 'webhook' needs webhook_url: an http(s) URL, got {webhook_url!r}")
        if delivery == "kafka" and webhook_url is not None:
            self.fail("webhook_url is set but delivery is 'kafka'; set delivery: webhook")
        return Partner(pid, name, country, public_key, delivery, webhook_url)

    # -- agreements ----------------------------------------------------------------------------

    def agreement(self, i: int, raw: object, partners: Mapping[str, Partner]) -> Agreement:
        aid, raw = self.entry(raw, _AGREEMENT_KEYS, f"agreements[{i}]", "agreement")
        title = self.text(raw, "title")
        legal_basis = self.text(raw, "legal_basis")
        origins = self.countries(raw, "origins")
        recipients = self.partner_refs(raw, "recipients", "recipient", partners)
        alert_types = self.types(self.items(raw, "types"))
        max_tlp = raw["max_tlp"]
        if not isinstance(max_tlp, str) or max_tlp not in Tlp.__members__:
            self.fail(f"max_tlp must be one of {', '.join(TLP_ORDER)}, got {max_tlp!r}")
        redact = raw["redact"]
        if not isinstance(redact, list):
            self.fail(f"redact must be a list of field paths (or []), got {_kind(redact)}")
        paths = tuple(self.redact_path(p, alert_types) for p in redact)
        if len(set(paths)) != len(paths):
            self.fail("redact lists a path twice")
        valid_from, valid_until = self.validity(raw)
        return Agreement(
            aid, title, legal_basis, origins, recipients, alert_types, Tlp(max_tlp),
            paths, valid_from, valid_until, self.statuses(raw.get("statuses")),
        )  # fmt: skip

    def statuses(self, raw: object) -> frozenset[AlertStatus]:
        if raw is None:
            return DEFAULT_STATUSES
        known = ", ".join(AlertStatus)
        if not isinstance(raw, list) or not raw:
            self.fail(f"statuses must be a non-empty list of {known}, got {_kind(raw)}")
        for status in raw:
            if not isinstance(status, str) or status not in AlertStatus.__members__:
                self.fail(f"unknown status {status!r} in statuses; known: {known}")
        if len(set(raw)) != len(raw):
            self.fail("statuses lists a status twice")
        return frozenset(AlertStatus(s) for s in raw)

    def types(self, raw: list[Any]) -> frozenset[str]:
        if ALL_TYPES in raw:
            if len(raw) > 1:
                self.fail(f"types: '{ALL_TYPES}' means every alert type and stands alone")
            return frozenset(self.alert_types)
        for t in raw:
            if t not in self.alert_types:
                hint = _did_you_mean(str(t), self.alert_types)
                self.fail(
                    f"unknown alert type {t!r}{hint}; known: {', '.join(self.alert_types)}, "
                    f"or ['{ALL_TYPES}']"
                )
        return frozenset(raw)

    def redact_path(self, path: object, alert_types: frozenset[str]) -> str:
        if not isinstance(path, str):
            self.fail(f"a redact path is dotted field names, got {_kind(path)}")
        if covers(HEADER, path):
            self.fail(
                f"redact path {path!r} is in the header, which is never redacted: the bus and "
                "every partner need its alert id, origin, TLP and references"
            )
        for alert_type in sorted(alert_types):
            kinds = self.kinds(alert_type)
            kind = kinds.get(path)
            if kind is None:
                hint = _did_you_mean(path, [p for p in kinds if not covers(HEADER, p)])
                self.fail(f"redact path {path!r} is not a field of {alert_type}{hint}")
            if kind is FieldKind.REQUIRED:
                inside = any(p.startswith(path + ".") for p in kinds)
                self.fail(
                    f"redact path {path!r} is a required field of {alert_type} and cannot be "
                    "removed: only nullable fields (sent as null) and arrays (sent as []) can, "
                    "so that the copy stays valid against the schema"
                    + ("; remove the fields inside it instead" if inside else "")
                )
        return path

    def kinds(self, alert_type: str) -> Mapping[str, FieldKind]:
        if alert_type not in self._kinds:
            self._kinds[alert_type] = field_kinds(alert_type, self.schemas)
        return self._kinds[alert_type]

    # -- what agreements and lookup agreements share -------------------------------------------

    def entry(
        self, raw: object, keys: Mapping[str, bool], position: str, label: str
    ) -> tuple[str, dict[str, Any]]:
        """Check an entry's keys and id; from then on errors name it (``agreement 'x': ``).
        Returns the id and the entry as a mapping."""
        self.where = f"{position}: "
        if not isinstance(raw, dict):
            self.fail(f"expected a mapping with {', '.join(keys)}, got {_kind(raw)}")
        eid = raw.get("id")
        if isinstance(eid, str) and _ID.fullmatch(eid):
            self.where = f"{label} {eid!r}: "
        self.check_keys(raw, keys)
        if not isinstance(eid, str) or not _ID.fullmatch(eid):
            self.fail(f"id must be lower-case letters, digits and dashes, got {eid!r}")
        return eid, raw

    def partner_refs(
        self, raw: dict[str, Any], key: str, role: str, partners: Mapping[str, Partner]
    ) -> frozenset[str]:
        """A non-empty list of ids of ``partners`` (``role`` names each in an error)."""
        ids = self.items(raw, key)
        for pid in ids:
            if not isinstance(pid, str) or pid not in partners:
                hint = _did_you_mean(str(pid), partners)
                self.fail(f"{role} {pid!r} is not a partner in 'partners'{hint}")
        return frozenset(ids)

    def countries(self, raw: dict[str, Any], key: str) -> frozenset[str]:
        return frozenset(self.country(c, key) for c in self.items(raw, key))

    def validity(self, raw: dict[str, Any]) -> tuple[date, date | None]:
        """``valid_from`` and ``valid_until`` (null: open-ended), in order."""
        valid_from = self.date(raw["valid_from"], "valid_from")
        valid_until = raw["valid_until"]
        if valid_until is not None:
            valid_until = self.date(valid_until, "valid_until")
            if valid_until < valid_from:
                self.fail(f"valid_until {valid_until} is before valid_from {valid_from}")
        return valid_from, valid_until

    # -- values --------------------------------------------------------------------------------

    def check_keys(self, raw: dict[Any, Any], keys: Mapping[str, bool]) -> None:
        unknown = sorted(str(k) for k in raw if k not in keys)
        if unknown:
            self.fail(f"unknown key(s) {', '.join(unknown)}; expected {', '.join(keys)}")
        missing = [k for k, required in keys.items() if required and k not in raw]
        if missing:
            self.fail(f"missing key(s) {', '.join(missing)} (write null for an empty value)")

    def text(self, raw: dict[str, Any], key: str) -> str:
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{key} must be a non-empty text, got {_kind(value)}")
        return value

    def items(self, raw: dict[str, Any], key: str) -> list[Any]:
        value = raw[key]
        if not isinstance(value, list) or not value:
            self.fail(f"{key} must be a non-empty list, got {_kind(value)}")
        if len({repr(v) for v in value}) != len(value):
            self.fail(f"{key} lists an entry twice")
        return value

    def country(self, value: object, key: str) -> str:
        if isinstance(value, bool):  # YAML 1.1 reads an unquoted no (Norway) as false
            self.fail(f"{key}: got {str(value).lower()}; quote country codes such as 'no'")
        if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
            self.fail(
                f"{key}: expected a lower-case ISO 3166-1 alpha-2 country code such as 'rs' or "
                f"'xk', got {value!r}"
            )
        return value

    def date(self, value: object, key: str) -> date:
        # YAML reads an unquoted 2014-01-09 as a date already; a quoted one arrives as text.
        if isinstance(value, str) and _DATE.fullmatch(value):
            with contextlib.suppress(ValueError):  # e.g. 2014-02-30
                value = date.fromisoformat(value)
        if isinstance(value, datetime) or not isinstance(value, date):
            self.fail(f"{key} must be a date YYYY-MM-DD, got {value!r}")
        return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
