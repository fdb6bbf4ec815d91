"""``identity_token``: a keyed pseudonym of a person, equal across countries, scripts and spellings.

    hasher = IdentityHasher.from_settings(adapter_settings)
    hasher.token("Петровић", "Марко", date(1984, 3, 15), "rs", language="sr")
    # == hasher.token("Πέτροβιτς", "Μάρκο", date(1984, 3, 15), "rs", language="el")

The token is HMAC-SHA256, under the bus-wide ``BUS_IDENTITY_KEY``, of the match keys of family
and given names (``names.match_key``), the date of birth and the nationality. Without the key a
token cannot be recomputed from a guessed name, so a partner can match persons (hit/no-hit)
without learning who they are. A token is made only when all four parts are known: a name alone
would match too many people.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from services.adapters.errors import AdapterError
from services.adapters.names import match_key
from services.adapters.settings import DEV_IDENTITY_KEY, MIN_IDENTITY_KEY_CHARS, AdapterSettings

TOKEN_PREFIX = "it1."
_SEP = "\x1f"


class IdentityHasher:
    """Makes identity tokens under one key; the key is never shown or logged."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_IDENTITY_KEY_CHARS:
            raise AdapterError(
                f"The identity key has {len(key)} bytes; at least {MIN_IDENTITY_KEY_CHARS} are "
                "needed. Generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        self._key = key

    @classmethod
    def from_settings(
        cls, settings: AdapterSettings, *, allow_dev_key: bool = False
    ) -> IdentityHasher:
        """The hasher for ``BUS_IDENTITY_KEY``; without it, the public development key only if
        ``allow_dev_key`` (demos and tests), else an ``AdapterError`` saying what to set."""
        if settings.identity_key is not None:
            return cls(settings.identity_key.get_secret_value().encode("utf-8"))
        if allow_dev_key:
            return cls.development()
        raise AdapterError(
            "BUS_IDENTITY_KEY is not set. Every adapter of the bus needs the same secret key to "
            "make identity tokens; set it (at least 32 characters, e.g. from "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`), or pass "
            "--dev-identity-key for a demo with a public, non-secret key."
        )

    @classmethod
    def development(cls) -> IdentityHasher:
        """The public development key: for demos and tests, never for real data."""
        return cls(DEV_IDENTITY_KEY.encode("utf-8"))

    def __repr__(self) -> str:  # never show the key
        return "IdentityHasher(key=<hidden>)"

    def token(
        self,
        family_name: str | None,
        given_names: str | None,
        date_of_birth: date | None,
        nationality: str | None,
        *,
        language: str,
    ) -> str | None:
        """The token of a person, or None when a part is missing; names in any script."""
        if not (family_name and given_names and date_of_birth and nationality):
            return None
        family, given = match_key(family_name, language), match_key(given_names, language)
        if not family or not given:
            return None
        message = _SEP.join(
            ("it1", family, given, date_of_birth.isoformat(), nationality.lower())
        ).encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return TOKEN_PREFIX + digest[:32]
