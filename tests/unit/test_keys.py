"""Ed25519 keys: files with the right modes and formats; any tampering is caught."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from bus import BusKeyError, KeyRing, SignatureError, Signer, generate_keypair


def test_generate_writes_a_private_key_0600_and_a_raw_base64_public_key(keys_dir: Path) -> None:
    key_path, pub_path = generate_keypair(keys_dir, "rs")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert len(base64.b64decode(pub_path.read_text().strip())) == 32


def test_generate_refuses_to_overwrite_without_force(keys_dir: Path) -> None:
    generate_keypair(keys_dir, "rs")
    with pytest.raises(BusKeyError, match="--force"):
        generate_keypair(keys_dir, "rs")
    generate_keypair(keys_dir, "rs", overwrite=True)


def test_a_signature_verifies_and_any_change_is_detected(keys_dir: Path) -> None:
    generate_keypair(keys_dir, "rs")
    generate_keypair(keys_dir, "mk")
    ring = KeyRing(keys_dir)
    value = b"\xc3\x01 some alert"
    signature = Signer.load(keys_dir, "rs").sign(value)
    ring.verify("rs", value, signature)
    with pytest.raises(SignatureError, match="does not match"):
        ring.verify("rs", value + b"!", signature)
    with pytest.raises(SignatureError, match="does not match"):
        ring.verify("mk", value, signature)
    with pytest.raises(SignatureError, match="64"):
        ring.verify("rs", value, signature[:10])


def test_an_unknown_signer_is_a_signature_error_naming_the_missing_file(keys_dir: Path) -> None:
    with pytest.raises(SignatureError, match=r"xk\.pub"):
        KeyRing(keys_dir).verify("xk", b"v", bytes(64))


def test_a_private_key_readable_by_others_is_refused(keys_dir: Path) -> None:
    key_path, _ = generate_keypair(keys_dir, "rs")
    key_path.chmod(0o644)
    with pytest.raises(BusKeyError, match="chmod 600"):
        Signer.load(keys_dir, "rs")


def test_key_material_never_appears_in_repr_or_errors(keys_dir: Path) -> None:
    key_path, _ = generate_keypair(keys_dir, "rs")
    secret = key_path.read_text().strip()
    signer = Signer.load(keys_dir, "rs")
    assert secret not in repr(signer)
    key_path.write_text(secret[:-4] + "!!!!")
    with pytest.raises(BusKeyError) as info:
        Signer.load(keys_dir, "rs")
    assert secret[:-4] not in str(info.value)


def test_key_ids_cannot_escape_the_keys_dir(keys_dir: Path) -> None:
    with pytest.raises(BusKeyError, match="not valid"):
        generate_keypair(keys_dir, "../etc/passwd")


def test_pynacl_and_cryptography_sign_identically_and_verify_each_other(keys_dir: Path) -> None:
    # The bus signs with PyNaCl (libsodium); partners may use cryptography (OpenSSL) or any
    # other Ed25519 library. Ed25519 is deterministic: same key, same value, same 64 bytes.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    key_path, pub_path = generate_keypair(keys_dir, "rs")
    seed = base64.b64decode(key_path.read_text())
    theirs = Ed25519PrivateKey.from_private_bytes(seed)
    their_public = Ed25519PublicKey.from_public_bytes(base64.b64decode(pub_path.read_text()))
    signer, ring = Signer.load(keys_dir, "rs"), KeyRing(keys_dir)
    for value in (b"", b"\xc3\x01", bytes(range(256)) * 7, "Петровић".encode()):
        ours = signer.sign(value)
        assert ours == theirs.sign(value)
        their_public.verify(ours, value)  # cryptography accepts PyNaCl's signature
        ring.verify("rs", value, theirs.sign(value))  # and the bus accepts cryptography's
        with pytest.raises(InvalidSignature):
            their_public.verify(ours, value + b"!")


def test_keys_written_by_cryptography_load_and_sign(keys_dir: Path) -> None:
    # Key files made before the switch to PyNaCl (raw seed and raw public key, base64) still work.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_path = keys_dir / "mk.key"
    key_path.write_text(base64.b64encode(seed).decode() + "\n")
    key_path.chmod(0o600)
    (keys_dir / "mk.pub").write_text(base64.b64encode(public).decode() + "\n")
    signature = Signer.load(keys_dir, "mk").sign(b"value")
    assert signature == private.sign(b"value")
    KeyRing(keys_dir).verify("mk", b"value", signature)
