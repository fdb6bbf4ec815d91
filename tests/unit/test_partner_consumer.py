"""The example partner consumer counts only the origin's or the hub's signature."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bus import Signer, generate_keypair
from examples.partner_consumer import check_signature, load_keys, origin_of

VALUE = b"\xc3\x01 any value"


@pytest.fixture
def signed(keys_dir: Path) -> tuple[dict[str, Ed25519PublicKey], dict[str, bytes]]:
    for key_id in ("rs", "gr", "hub"):
        generate_keypair(keys_dir, key_id)
    (keys_dir / "Not A Key Id.pub").write_text("ignored")
    signatures = {k: Signer.load(keys_dir, k).sign(VALUE) for k in ("rs", "gr", "hub")}
    return load_keys(keys_dir), signatures


def test_keys_are_loaded_once_by_valid_key_id(
    signed: tuple[dict[str, Ed25519PublicKey], dict[str, bytes]],
) -> None:
    keys, _ = signed
    assert sorted(keys) == ["gr", "hub", "rs"]


def test_an_alert_counts_its_origins_or_the_hubs_signature_only(
    signed: tuple[dict[str, Ed25519PublicKey], dict[str, bytes]],
) -> None:
    keys, sig = signed
    assert check_signature(keys, "rs", "rs", VALUE, sig["rs"]) is None
    assert check_signature(keys, "hub", "rs", VALUE, sig["hub"]) is None
    assert check_signature(keys, "gr", "rs", VALUE, sig["gr"]) == (
        "signed by 'gr'; only 'hub' or 'rs' may sign it"
    )
    assert check_signature(keys, "rs", "rs", VALUE, sig["gr"]) == (
        "the signature does not verify with rs.pub"
    )
    assert check_signature(keys, "rs", "rs", VALUE + b"!", sig["rs"]) is not None
    assert check_signature(keys, None, "rs", VALUE, sig["rs"]) is not None
    assert check_signature(keys, "xk", "xk", VALUE, sig["rs"]) == "no xk.pub among the keys"


def test_a_notice_without_an_alert_header_counts_the_hubs_signature_only(
    signed: tuple[dict[str, Ed25519PublicKey], dict[str, bytes]],
) -> None:
    keys, sig = signed
    notice = {"alert_id": "…", "origin_of_withdrawn": "rs"}  # no header.origin
    assert origin_of(notice) is None
    assert origin_of({"header": {"origin": "rs"}}) == "rs"
    assert check_signature(keys, "hub", origin_of(notice), VALUE, sig["hub"]) is None
    assert check_signature(keys, "rs", origin_of(notice), VALUE, sig["rs"]) == (
        "signed by 'rs'; only 'hub' may sign it"
    )


def test_a_malformed_public_key_stops_the_consumer_naming_the_file(keys_dir: Path) -> None:
    (keys_dir / "rs.pub").write_text("not base64 at all!")
    with pytest.raises(SystemExit, match=r"rs\.pub: not the base64 of a 32-byte Ed25519 key"):
        load_keys(keys_dir)
