"""Access derived from the agreements, credentials files and TLS material: pure, no broker."""

from __future__ import annotations

import dataclasses
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import SecretStr

from bus import BusSettings, ConfigError, PolicyError
from bus.access.acl import Grant, derive_access, in_namespace
from bus.access.credentials import ClientConfig, CredentialStore
from bus.access.tls import ensure_tls
from bus.agreements import Agreements, Partner, load_agreements
from bus.topics import TopicNames
from tests.conftest import REPO

AGREEMENTS = load_agreements(REPO / "examples" / "agreements.yaml")


def grants(access: object, principal: str) -> set[str]:
    return {str(g) for g in access.principals[principal].grants}  # type: ignore[attr-defined]


def test_a_country_writes_its_ingress_and_dead_letters_and_reads_only_its_inbox() -> None:
    access = derive_access(AGREEMENTS, TopicNames())
    assert grants(access, "mk") == {
        "mk: WRITE topic starting with 'ingress.mk.'",
        "mk: WRITE topic 'bus.dlq'",
        "mk: READ topic starting with 'partner.mk.'",
        "mk: READ group starting with 'mk.'",
        "mk: READ topic 'bus.schemas'",
    }


def test_a_partner_that_only_receives_writes_nothing() -> None:
    access = derive_access(AGREEMENTS, TopicNames())
    assert access.principals["frontex"].roles == ("partner",)  # no lookup agreement names it
    assert all(g.operation == "READ" for g in access.principals["frontex"].grants)


def test_a_requester_writes_its_lookup_requests_and_reads_its_answers_only() -> None:
    access = derive_access(AGREEMENTS, TopicNames())
    assert access.principals["europol"].roles == ("partner", "requester")
    assert grants(access, "europol") == {
        "europol: READ topic starting with 'partner.europol.'",
        "europol: READ group starting with 'europol.'",
        "europol: READ topic 'bus.schemas'",
        "europol: WRITE topic 'lookup.europol.requests'",
        "europol: READ topic 'lookup.europol.answers'",
    }
    lookups = {(g.principal, g.operation, g.resource) for g in access.grants
               if g.resource.startswith("lookup.") and g.principal != "index"}  # fmt: skip
    assert {p for p, _, _ in lookups} == set(AGREEMENTS.lookup_requesters)
    assert all(r == f"lookup.{p}.{'requests' if op == 'WRITE' else 'answers'}"
               for p, op, r in lookups)  # fmt: skip


def test_a_requester_loses_its_lookup_grants_with_its_agreement() -> None:
    europol = next(a for a in AGREEMENTS.lookups if a.requesters == {"europol"})
    without = dataclasses.replace(
        AGREEMENTS, lookups=tuple(a for a in AGREEMENTS.lookups if a is not europol)
    )
    access = derive_access(without, TopicNames())
    assert access.principals["europol"].roles == ("partner",)
    assert all(g.operation == "READ" for g in access.principals["europol"].grants)
    assert not any("lookup.europol." in g.resource for g in access.grants)


def test_the_index_reads_ingress_and_requests_and_writes_in_its_own_transactions() -> None:
    access = derive_access(AGREEMENTS, TopicNames())
    index = access.principals["index"]
    assert index.roles == ("joint index",)
    mine = grants(access, "index")
    assert "index: READ topic starting with 'ingress.'" in mine
    assert "index: READ group 'bus-index-lookups'" in mine
    assert "index: WRITE transactional id 'bus-index-lookups'" in mine
    assert {
        "index: READ topic 'bus.audit.lookups'",
        "index: WRITE topic 'bus.audit.lookups'",
    } <= mine
    # Hit notices go to the owners' inboxes only; it reads no inbox, no audit, no dead letter.
    inboxes = {g.resource for g in index.grants if g.resource.startswith("partner.")}
    assert inboxes == {f"partner.{o}.inbox" for o in AGREEMENTS.lookup_owners}
    assert "partner.frontex.inbox" not in inboxes
    assert all(g.operation == "WRITE" for g in index.grants if g.resource.startswith("partner."))
    assert all(g.pattern_type == "literal" for g in index.grants if g.resource != "ingress.")
    for topic in ("bus.audit", "bus.dlq", "bus.fanout.state"):
        assert not any(g.resource == topic for g in index.grants)
    for requester in AGREEMENTS.lookup_requesters:
        assert f"index: READ topic 'lookup.{requester}.requests'" in mine
        assert f"index: WRITE topic 'lookup.{requester}.answers'" in mine
    assert not any(g.operation == "WRITE" and g.resource.endswith(".requests")
                   for g in index.grants)  # fmt: skip


def test_only_the_fanout_reads_the_audit_and_its_state_and_nobody_reads_dead_letters() -> None:
    access = derive_access(AGREEMENTS, TopicNames())
    readers = {
        (g.resource, g.principal)
        for g in access.grants
        if g.operation == "READ" and g.resource in ("bus.audit", "bus.dlq", "bus.fanout.state")
    }
    assert readers == {("bus.audit", "fanout"), ("bus.fanout.state", "fanout")}
    fanout = grants(access, "fanout")
    assert "fanout: WRITE transactional id starting with 'bus-fanout-'" in fanout
    assert "fanout: READ group 'bus-fanout'" in fanout


def test_the_topic_prefix_names_principals_topics_groups_and_transactional_ids() -> None:
    access = derive_access(AGREEMENTS, TopicNames("staging."))
    assert set(access.principals) == {f"staging.{p}" for p in AGREEMENTS.partners} | {
        "staging.fanout",
        "staging.index",
    }
    for grant in access.grants:
        assert grant.principal.startswith("staging.")
        assert grant.resource.startswith("staging.")
    assert Grant("staging.mk", "group", "prefixed", "staging.mk.", "READ") in access.grants


def test_namespaces_of_two_prefixes_never_overlap() -> None:
    assert in_namespace("mk", "")
    assert not in_namespace("staging.mk", "")
    assert in_namespace("staging.mk", "staging.")
    assert not in_namespace("mk", "staging.")
    assert not in_namespace("admin", "")  # the operators are never managed from agreements
    assert not in_namespace("staging.a.b", "staging.")


def test_an_origin_without_a_partner_still_gets_its_country_principal() -> None:
    agreement = dataclasses.replace(
        AGREEMENTS.agreements[0], origins=frozenset({"rs", "hu"}), recipients=frozenset({"rs"})
    )
    partners = {"rs": AGREEMENTS.partners["rs"]}
    access = derive_access(Agreements(partners, (agreement,)), TopicNames())
    assert set(access.principals) == {"rs", "hu", "fanout", "index"}
    assert grants(access, "hu") == {
        "hu: WRITE topic starting with 'ingress.hu.'",
        "hu: WRITE topic 'bus.dlq'",
        "hu: READ topic 'bus.schemas'",
    }


@pytest.mark.parametrize("name", ["admin", "fanout", "index"])
def test_a_partner_cannot_take_a_name_the_bus_keeps(name: str) -> None:
    partners = {name: Partner(name, "Not the bus")}
    with pytest.raises(PolicyError, match="reserved"):
        derive_access(Agreements(partners, ()), TopicNames())


def test_credentials_are_private_files_in_a_private_directory(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "creds")
    template = ClientConfig("127.0.0.1:9092", "SASL_SSL", "SCRAM-SHA-512", ca_location=tmp_path)
    config, created = store.ensure("mk", template)
    assert created
    again, created_again = store.ensure("mk", template)
    assert not created_again
    assert again.password == config.password
    path = store.path("mk")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.password is not None
    assert config.password.get_secret_value() not in repr(config)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.load("mk")


def test_settings_take_a_kit_and_never_show_the_password(tmp_path: Path) -> None:
    kit = tmp_path / "client.properties"
    config = ClientConfig("broker:9093", "SASL_SSL", "SCRAM-SHA-512", "europol",
                          SecretStr("s3cret-value"), Path("ca.pem"))  # fmt: skip
    kit.write_bytes(config.to_properties("a comment\nanother"))
    kit.chmod(0o600)
    settings = BusSettings(client_config=kit)
    assert settings.bootstrap_servers == "broker:9093"
    assert settings.security_protocol == "SASL_SSL"
    assert settings.principal == "europol"
    assert settings.ssl_ca_file == tmp_path / "ca.pem"  # relative to the file
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)
    # An explicit setting wins over the file.
    assert (
        BusSettings(client_config=kit, bootstrap_servers="other:1").bootstrap_servers == "other:1"
    )
    kit.chmod(0o640)
    with pytest.raises(ConfigError, match="open to other users"):
        BusSettings(client_config=kit)


def test_the_broker_certificate_names_localhost_and_its_address(tmp_path: Path) -> None:
    material = ensure_tls(tmp_path / "tls")
    assert ensure_tls(tmp_path / "tls").ca_cert.read_bytes() == material.ca_cert.read_bytes()
    certs = x509.load_pem_x509_certificates(material.broker_store.read_bytes())
    names = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert certs[1].subject == x509.load_pem_x509_certificate(material.ca_cert.read_bytes()).subject
    for path in (material.ca_key, material.broker_store):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in material.broker_store.read_bytes()  # Java 17 reads it as is
