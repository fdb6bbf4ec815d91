"""The agreements file: the shipped example loads, and each kind of mistake stops start-up with a
message naming the file, the agreement or partner, and the problem."""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from bus import ConfigError, PolicyError, SchemaRegistry
from bus.agreements import Agreement, Agreements, load_agreements, parse_agreements
from bus.models import ALERT_TYPES, AlertStatus, Tlp
from tests.conftest import REPO

REGISTRY = SchemaRegistry.load(REPO / "schemas")
EXAMPLE = REPO / "examples" / "agreements.yaml"

# --- The shipped example ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Agreements:
    return load_agreements(EXAMPLE, schemas=REGISTRY)


def test_the_example_loads_against_the_real_schemas(example: Agreements) -> None:
    assert example.source == EXAMPLE
    for pid in (
        "rs", "mk", "al", "ba", "me", "xk", "hr", "gr", "at", "si", "de", "fr", "europol",
        "frontex", "jc-tabanovce", "jc-trebinje", "jc-al-xk", "jc-al-mk", "jeg-de", "jeg-fr",
    ):  # fmt: skip
        assert pid in example.partners
    assert list(example.partners) == sorted(example.partners)
    rs = example.partners["rs"]
    assert (rs.country, rs.public_key, rs.delivery) == ("rs", "rs.pub", "kafka")
    assert example.partners["europol"].country is None
    assert example.partners["europol"].public_key is None


def test_the_example_models_the_seeds(example: Agreements) -> None:
    by_id = {a.id: a for a in example.agreements}
    tabanovce = by_id["jc-tabanovce"]
    assert tabanovce.origins == {"rs", "mk"}
    assert tabanovce.types == {"irregular-crossing", "readmission", "trafficking-arrest"}
    assert tabanovce.max_tlp is Tlp.AMBER
    assert by_id["jc-trebinje"].origins == {"rs", "me", "ba"}
    assert by_id["balkan-route-2018"].origins == {"ba", "hr", "rs", "me", "al", "gr", "at", "si"}
    frontex = by_id["frontex-crossings"]
    assert frontex.recipients == {"frontex"}
    assert {"persons", "suspected_facilitator"} <= set(frontex.redact)
    assert by_id["rs-embassy-baghdad-mk"].types == {"citizen-assistance"}
    europol = [a for a in example.agreements if "europol" in a.recipients]
    assert {t for a in europol for t in a.types} == {"trafficking-arrest", "foreign-fighter-travel"}
    for agreement in example.agreements:
        assert agreement.legal_basis.strip()
        assert agreement.valid_from >= date(2009, 1, 1)


def test_the_example_has_no_key_material() -> None:
    text = EXAMPLE.read_text()
    assert not re.search(r":\s*\S+\.key\b", text)  # no private key file named
    assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", text)


def test_without_schemas_paths_are_checked_against_the_models_with_the_same_result() -> None:
    assert load_agreements(EXAMPLE) == load_agreements(EXAMPLE, schemas=REGISTRY)


def test_covering_indexes_by_origin_and_type(example: Agreements) -> None:
    ids = {a.id for a in example.covering("rs", "irregular-crossing")}
    assert ids == {"jc-tabanovce", "jc-trebinje", "frontex-crossings", "balkan-route-2018"}
    assert example.covering("zz", "readmission") == ()


def test_validity_is_inclusive_and_on_the_utc_date() -> None:
    agreement = _agreement(valid_from=date(2014, 1, 1), valid_until=date(2014, 12, 31))
    assert agreement.valid_at(datetime(2014, 1, 1, 0, 0, tzinfo=UTC))
    assert agreement.valid_at(datetime(2014, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not agreement.valid_at(datetime(2015, 1, 1, tzinfo=UTC))
    assert not agreement.valid_at(datetime(2013, 12, 31, 23, 59, tzinfo=UTC))
    # 00:30 in Belgrade on 1 January is still 31 December in UTC.
    belgrade = timezone(timedelta(hours=1))
    assert not agreement.valid_at(datetime(2014, 1, 1, 0, 30, tzinfo=belgrade))
    assert _agreement(valid_until=None).valid_at(datetime(2999, 1, 1, tzinfo=UTC))


def _agreement(**changes: Any) -> Agreement:
    fields: dict[str, Any] = {
        "id": "a", "title": "A", "legal_basis": "L", "origins": frozenset({"rs"}),
        "recipients": frozenset({"mk"}), "types": frozenset({"readmission"}),
        "max_tlp": Tlp.AMBER, "redact": (), "valid_from": date(2014, 1, 1), "valid_until": None,
    }  # fmt: skip
    fields.update(changes)
    return Agreement(**fields)


# --- Broken files -------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "partners": {
        "rs": {"name": "Serbia", "country": "rs", "public_key": "rs.pub"},
        "mk": {"name": "North Macedonia", "country": "mk", "public_key": "mk.pub"},
        "europol": {"name": "Europol", "country": None, "public_key": None},
        "frontex": {"name": "Frontex", "country": None, "public_key": None},
    },
    "agreements": [
        {
            "id": "frontex-crossings",
            "title": "Crossings to Frontex",
            "legal_basis": "Working arrangement",
            "origins": ["rs", "mk"],
            "recipients": ["frontex"],
            "types": ["irregular-crossing"],
            "max_tlp": "AMBER",
            "redact": ["persons", "suspected_facilitator"],
            "valid_from": date(2012, 1, 1),
            "valid_until": None,
        },
        {
            "id": "europol-all",
            "title": "Everything to Europol",
            "legal_basis": "Europol agreement",
            "origins": ["rs"],
            "recipients": ["europol", "mk"],
            "types": ["*"],
            "max_tlp": "RED",
            "redact": [],
            "valid_from": "2014-01-01",
            "valid_until": "2020-12-31",
        },
    ],
}


def test_the_base_document_is_valid() -> None:
    agreements = parse_agreements(BASE, source="base.yaml", schemas=REGISTRY)
    assert agreements.agreements[1].types == frozenset(ALERT_TYPES)
    assert agreements.agreements[1].valid_until == date(2020, 12, 31)
    assert agreements.source is None


def _agreement_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["agreements"][0].update(changes)
    return doc


def _partner_with(pid: str, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["partners"][pid].update(changes)
    return doc


def _without(what: str, key: str) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    del (doc["agreements"][0] if what == "agreement" else doc["partners"]["rs"])[key]
    return doc


AGREEMENT = "agreement 'frontex-crossings': "

BROKEN: list[tuple[str, Any, str]] = [
    ("not a mapping", ["partners"], "expected a mapping with 'partners' and 'agreements'"),
    ("nothing", None, ".*got an empty file"),
    ("unknown top key", {**BASE, "sharing": []}, "unknown key.*sharing"),
    ("missing top key", {"partners": BASE["partners"]}, "missing key.*agreements"),
    ("unknown agreement key", _agreement_with(redcat=[]), AGREEMENT + "unknown key.*redcat"),
    ("missing agreement key", _without("agreement", "legal_basis"),
     AGREEMENT + "missing key.*legal_basis"),
    ("missing validity", _without("agreement", "valid_until"),
     AGREEMENT + "missing key.*valid_until"),
    ("unknown partner key", _partner_with("rs", email="x"), "partner 'rs': unknown key.*email"),
    ("missing partner key", _without("partner", "name"), "partner 'rs': missing key.*name"),
    ("unknown recipient", _agreement_with(recipients=["frontex", "europool"]),
     AGREEMENT + "recipient 'europool' is not a partner.*did you mean 'europol'"),
    ("upper-case origin", _agreement_with(origins=["RS"]),
     AGREEMENT + "origins: expected a lower-case ISO 3166-1 alpha-2 country code.*'RS'"),
    ("three-letter origin", _agreement_with(origins=["srb"]), AGREEMENT + "origins.*'srb'"),
    ("Norway read as false", _agreement_with(origins=[False]),
     AGREEMENT + "origins: got false; quote country codes"),
    ("unknown type", _agreement_with(types=["irregular-crossings"]),
     AGREEMENT + "unknown alert type 'irregular-crossings'.*did you mean 'irregular-crossing'"),
    ("star among types", _agreement_with(types=["*", "readmission"]),
     AGREEMENT + "types: '\\*' means every alert type and stands alone"),
    ("empty types", _agreement_with(types=[]), AGREEMENT + "types must be a non-empty list"),
    ("unknown TLP", _agreement_with(max_tlp="amber"),
     AGREEMENT + "max_tlp must be one of CLEAR, GREEN, AMBER, AMBER_STRICT, RED, got 'amber'"),
    ("TLP as list", _agreement_with(max_tlp=["RED"]), AGREEMENT + "max_tlp must be one of"),
    ("duplicate agreement id", _agreement_with(id="europol-all"),
     "agreement 'europol-all': duplicate agreement id"),
    ("ends before it starts", _agreement_with(valid_until=date(2011, 12, 31)),
     AGREEMENT + "valid_until 2011-12-31 is before valid_from 2012-01-01"),
    ("not a date", _agreement_with(valid_from="1 Jan 2012"),
     AGREEMENT + "valid_from must be a date"),
    ("datetime not a date", _agreement_with(valid_from=datetime(2012, 1, 1, tzinfo=UTC)),
     AGREEMENT + "valid_from must be a date"),
    ("redact a field that does not exist", _agreement_with(redact=["persons.passport"]),
     AGREEMENT + "redact path 'persons.passport' is not a field of irregular-crossing"),
    ("redact a field of only one covered type",
     _agreement_with(types=["irregular-crossing", "readmission"]),
     AGREEMENT + "redact path 'suspected_facilitator' is not a field of readmission"),
    ("redact under '*'", _agreement_with(types=["*"], redact=["persons"]),
     AGREEMENT + "redact path 'persons' is not a field of foreign-fighter-travel"),
    ("redact a required field", _agreement_with(redact=["head_count"]),
     AGREEMENT + "redact path 'head_count' is a required field of irregular-crossing"),
    ("redact a required field inside an array",
     _agreement_with(redact=["persons.travel_document.kind"]),
     AGREEMENT + "redact path 'persons.travel_document.kind' is a required field"),
    ("redact a whole required record",
     _agreement_with(types=["foreign-fighter-travel"], redact=["person"]),
     AGREEMENT + "redact path 'person' is a required field of foreign-fighter-travel"),
    ("redact the header", _agreement_with(redact=["header"]),
     AGREEMENT + "redact path 'header' is in the header, which is never redacted"),
    ("redact in the header", _agreement_with(redact=["header.explicit_recipients"]),
     AGREEMENT + "redact path 'header.explicit_recipients' is in the header"),
    ("redact twice", _agreement_with(redact=["persons", "persons"]),
     AGREEMENT + "redact lists a path twice"),
    ("redact not a list", _agreement_with(redact="persons"), AGREEMENT + "redact must be a list"),
    ("bad agreement id", _agreement_with(id="Frontex Crossings"),
     r"agreements\[0\]: id must be lower-case"),
    ("partner id with capitals", {**BASE, "partners": {**BASE["partners"], "RS": {}}},
     "partner 'RS': a partner id is lower-case"),
    ("hub as a partner", {**BASE, "partners": {**BASE["partners"], "hub": {}}},
     "partner 'hub': 'hub' is reserved"),
    ("key path with a directory", _partner_with("rs", public_key="keys/rs.pub"),
     "partner 'rs': public_key must be a plain file name.*'keys/rs.pub'"),
    ("key path going up", _partner_with("rs", public_key="../rs.pub"), "partner 'rs': public_key"),
    ("private key named", _partner_with("rs", public_key="rs.key"), "partner 'rs': public_key"),
    ("another country's key", _partner_with("rs", public_key="mk.pub"),
     "partner 'rs': public_key 'mk.pub' must be '<country>.pub'"),
    ("key without a country", _partner_with("europol", public_key="europol.pub"),
     "partner 'europol': public_key 'europol.pub' must be '<country>.pub'.*set country too"),
    ("country upper-case", _partner_with("rs", country="RS"), "partner 'rs': country"),
    ("webhook without URL", _partner_with("europol", delivery="webhook"),
     "partner 'europol': delivery 'webhook' needs webhook_url"),
    ("unknown delivery", _partner_with("europol", delivery="email"), "partner 'europol': delivery"),
    ("unknown status", _agreement_with(statuses=["ACTUAL", "DRILL"]),
     AGREEMENT + "unknown status 'DRILL' in statuses; known: ACTUAL, EXERCISE, TEST"),
    ("lower-case status", _agreement_with(statuses=["exercise"]), AGREEMENT + "unknown status"),
    ("empty statuses", _agreement_with(statuses=[]),
     AGREEMENT + "statuses must be a non-empty list"),
    ("status twice", _agreement_with(statuses=["TEST", "TEST"]),
     AGREEMENT + "statuses lists a status twice"),
    ("statuses not a list", _agreement_with(statuses="EXERCISE"),
     AGREEMENT + "statuses must be a non-empty list"),
]  # fmt: skip


def test_an_agreement_carries_actual_alerts_unless_it_names_its_statuses() -> None:
    plain = parse_agreements(BASE, source="base.yaml", schemas=REGISTRY).agreements[0]
    assert plain.statuses == {AlertStatus.ACTUAL}
    drill = parse_agreements(
        _agreement_with(statuses=["EXERCISE", "TEST"]), source="x.yaml", schemas=REGISTRY
    ).agreements[0]
    assert drill.statuses == {AlertStatus.EXERCISE, AlertStatus.TEST}
    assert not drill.carries(AlertStatus.ACTUAL)


@pytest.mark.parametrize(("doc", "message"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_document_names_the_entry_and_the_problem(doc: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=r"^broken\.yaml: " + message):
        parse_agreements(doc, source="broken.yaml", schemas=REGISTRY)


def test_a_webhook_partner_is_accepted() -> None:
    doc = _partner_with("europol", delivery="webhook", webhook_url="https://europol.example/in")
    partner = parse_agreements(doc, source="x", schemas=REGISTRY).partners["europol"]
    assert (partner.delivery, partner.webhook_url) == ("webhook", "https://europol.example/in")


# --- Files --------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agreements.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_messages_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, yaml.safe_dump(_agreement_with(redact=["persons.passport"])))
    with pytest.raises(PolicyError) as err:
        load_agreements(path, schemas=REGISTRY)
    assert str(err.value).startswith(
        f"{path}: agreement 'frontex-crossings': redact path 'persons.passport' is not a field "
        "of irregular-crossing (did you mean "
    )


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "partners:\n  rs: {name: Serbia\nagreements: []\n")
    with pytest.raises(PolicyError, match=rf"^{re.escape(str(path))}: line 3, .*not valid YAML"):
        load_agreements(path)


def test_a_partner_listed_twice_is_an_error_not_the_last_one_wins(tmp_path: Path) -> None:
    text = (
        "partners:\n"
        "  rs: {name: Serbia, country: rs, public_key: rs.pub}\n"
        "  mk: {name: North Macedonia, country: mk, public_key: mk.pub}\n"
        "  rs: {name: Serbia again, country: rs, public_key: null}\n"
        "agreements: []\n"
    )
    with pytest.raises(PolicyError, match=r"line 4: duplicate partner id 'rs' \(first at line 2\)"):
        load_agreements(_write(tmp_path, text))


def test_a_key_repeated_inside_an_agreement_is_an_error(tmp_path: Path) -> None:
    doc = yaml.safe_dump(BASE, sort_keys=False).replace(
        "  max_tlp: AMBER\n", "  max_tlp: AMBER\n  max_tlp: RED\n", 1
    )
    with pytest.raises(PolicyError, match=r"duplicate key 'max_tlp' in agreements\.0"):
        load_agreements(_write(tmp_path, doc))


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BUS_AGREEMENTS"):
        load_agreements(tmp_path / "nope.yaml")


def test_yaml_dates_and_quoted_dates_are_both_accepted(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False)
    agreements = load_agreements(_write(tmp_path, text), schemas=REGISTRY)
    assert agreements.agreements[0].valid_from == date(2012, 1, 1)
    assert agreements.agreements[1].valid_from == date(2014, 1, 1)
