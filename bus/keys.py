"""Ed25519 keys and signatures: each origin signs its values, every reader verifies them.

    generate_keypair(Path("keys"), "rs")          # keys/rs.key (0600) and keys/rs.pub
    signer = Signer.load(Path("keys"), "rs")
    signature = signer.sign(value)                 # raw 64 bytes, the ``bus-signature`` header
    KeyRing(Path("keys")).verify("rs", value, signature)   # raises SignatureError

File formats: ``<id>.pub`` holds the base64 of the raw 32-byte public key; ``<id>.key`` holds
the base64 of the raw 32-byte private seed and is created with mode 0600. The private key is
never logged or put in an error message.

Signing and verifying go through PyNaCl (libsodium): on the bus's values it signs about 1.3x
and verifies about 1.6x faster than ``cryptography`` (OpenSSL), and Ed25519 signatures are
deterministic, so both give the same bytes for the same key and value (a unit test holds them
to it). Partners may verify with any Ed25519 library.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path

from nacl.bindings import crypto_sign
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bus.errors import BusKeyError, SignatureError

_KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SIGNATURE_BYTES = 64
HUB_KEY_ID = "hub"


def check_key_id(key_id: str) -> str:
    """A key id is a partner or country id: lower-case letters, digits and dashes."""
    if not _KEY_ID.fullmatch(key_id):
        raise BusKeyError(
            f"Key id {key_id!r} is not valid: expected lower-case letters, digits and dashes "
            "(a country code such as 'rs' or a partner id such as 'jc-tabanovce')."
        )
    return key_id


def generate_keypair(keys_dir: Path, key_id: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<id>.key`` (mode 0600) and ``<id>.pub``; refuse to replace a key unless asked."""
    check_key_id(key_id)
    keys_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = keys_dir / f"{key_id}.key", keys_dir / f"{key_id}.pub"
    if key_path.exists() and not overwrite:
        raise BusKeyError(
            f"{key_path} exists already; pass --force to replace it (partners holding "
            f"{pub_path.name} will then reject new signatures until they get the new one)."
        )
    private = SigningKey.generate()
    seed, public = bytes(private), bytes(private.verify_key)
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(seed).decode() + "\n")
    os.chmod(key_path, 0o600)  # in case the umask widened nothing, make the mode explicit
    pub_path.write_text(base64.b64encode(public).decode() + "\n")
    return key_path, pub_path


def _read_b64_key(path: Path, what: str) -> bytes:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        how = (
            f"Generate it with `bus keys generate {path.stem}` (BUS_KEYS_DIR is {path.parent})"
            if path.suffix == ".key"
            else f"Copy {path.stem}'s {path.name} into BUS_KEYS_DIR ({path.parent})"
        )
        raise BusKeyError(f"No {what} at {path}. {how}.") from None
    except OSError as exc:
        raise BusKeyError(f"Cannot read {what} {path}: {exc.strerror}") from exc
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BusKeyError(f"{path} is not base64: expected the base64 of 32 raw bytes") from None
    if len(raw) != 32:
        raise BusKeyError(f"{path} holds {len(raw)} bytes after base64 decoding; expected 32")
    return raw


class Signer:
    """Signs values with one origin's private key."""

    def __init__(self, key_id: str, private_key: SigningKey) -> None:
        self.key_id = check_key_id(key_id)
        # libsodium's secret key (seed, then public key), handed to crypto_sign directly.
        self._secret = bytes(private_key) + bytes(private_key.verify_key)

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key of this signer."""
        return self._secret[32:]

    @classmethod
    def load(cls, keys_dir: Path, key_id: str) -> Signer:
        path = keys_dir / f"{check_key_id(key_id)}.key"
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise BusKeyError(
                f"{path} is readable by other users (mode {stat.S_IMODE(path.stat().st_mode):o}); "
                f"run `chmod 600 {path}`."
            )
        seed = _read_b64_key(path, "private key")
        return cls(key_id, SigningKey(seed))

    def sign(self, value: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``value``.

        PyNaCl's own binding of libsodium's ``crypto_sign``, without ``SigningKey.sign``'s
        encoder and ``SignedMessage`` around it (a tenth of the cost of a signature): the
        signed message is the signature followed by the value, so the signature is its head.
        """
        signed: bytes = crypto_sign(value, self._secret)
        return signed[:SIGNATURE_BYTES]

    def __repr__(self) -> str:  # never show key material
        return f"Signer(key_id={self.key_id!r})"


class KeyRing:
    """Public keys by key id, loaded from ``<id>.pub`` files on first use."""

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._keys: dict[str, VerifyKey] = {}

    def public_key(self, key_id: str) -> VerifyKey:
        key = self._keys.get(key_id)
        if key is None:
            raw = _read_b64_key(self.keys_dir / f"{check_key_id(key_id)}.pub", "public key")
            key = self._keys[key_id] = VerifyKey(raw)
        return key

    def verify(self, key_id: str, value: bytes, signature: bytes) -> None:
        """Raise ``SignatureError`` unless ``signature`` is ``key_id``'s signature of ``value``."""
        if len(signature) != SIGNATURE_BYTES:
            raise SignatureError(
                f"Signature by {key_id!r} has {len(signature)} bytes; expected {SIGNATURE_BYTES}"
            )
        try:
            key = self.public_key(key_id)
        except BusKeyError as exc:
            raise SignatureError(f"Cannot verify a signature by {key_id!r}: {exc}") from exc
        try:
            key.verify(value, signature)
        except BadSignatureError:
            raise SignatureError(
                f"Signature does not match the value for key id {key_id!r}: the value was "
                "changed after signing, or it was signed with another key."
            ) from None
