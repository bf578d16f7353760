"""Hashes of the web front door's secrets (argon2id): passwords with argon2-cffi's
defaults, API tokens with lighter parameters (a token is 256 random bits: the hash only
has to make a stolen catalog useless, not slow a guesser down). The SHA-256 of a session id
(also 256 random bits) is what the catalog keeps of a session."""

from __future__ import annotations

import functools
import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_PASSWORDS = PasswordHasher()
_TOKENS = PasswordHasher(time_cost=1, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _PASSWORDS.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_password_hash() -> str:
    """A hash to verify against when the user does not exist (the same time either way);
    made on first use, not at import: every command imports this module (~140 ms)."""
    return _PASSWORDS.hash("no such user: the answer takes as long")


def hash_token(token: str) -> str:
    return _TOKENS.hash(token)


def verify_token(stored: str, token: str) -> bool:
    try:
        return _TOKENS.verify(stored, token)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
