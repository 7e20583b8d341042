"""API keys and verification codes: generation, peppered hashing, constant-time checks.

An API key is ``as_live_`` followed by 43 URL-safe characters (32 random bytes). Only its
HMAC-SHA256 under the server pepper is stored, with a short prefix the owner can recognise.
Verification codes are six random digits, hashed the same way with the agent id mixed in, so
equal codes of two agents never share a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "as_live_"
KEY_RANDOM_BYTES = 32
# What the profile shows: the fixed prefix and the first four random characters.
SHOWN_PREFIX_LENGTH = len(KEY_PREFIX) + 4
CODE_DIGITS = 6


def new_api_key() -> str:
    """A fresh API key, to be shown once."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def shown_prefix(api_key: str) -> str:
    """The part of a key that may be displayed, e.g. ``as_live_Ab3x``."""
    return api_key[:SHOWN_PREFIX_LENGTH]


def looks_like_api_key(value: str) -> bool:
    """Whether a string has the shape of one of our keys (checked before any lookup)."""
    return value.startswith(KEY_PREFIX) and 40 <= len(value) <= 200 and value.isascii()


def hash_secret(pepper: str, value: str, *, context: str = "api-key") -> str:
    """HMAC-SHA256 of ``value`` under ``pepper``, bound to ``context``; 64 hex characters."""
    message = f"{context}\x00{value}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def secret_matches(pepper: str, value: str, stored_hash: str, *, context: str = "api-key") -> bool:
    """Whether ``value`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(pepper, value, context=context), stored_hash)


def new_code() -> str:
    """Six random digits, leading zeros kept."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_context(agent_id: int) -> str:
    return f"email-code:{agent_id}"
