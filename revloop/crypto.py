"""AES-256-GCM envelopes for credentials at rest, with key rotation (see docs/security.md).

A token is ``v1.<key_id>.<base64url(nonce || ciphertext || tag)>`` without padding: plain text,
so it can sit in JSON, TOML or a database column. The caller's ``context`` (for example
``store:acme-shopify:webhook_secret``) is the AES-GCM associated data, so a token copied to
another store or field fails to decrypt instead of yielding the wrong store's secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from revloop.settings import Settings

__all__ = ["CryptoError", "Secret", "SecretBox", "new_master_key"]

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_VERSION: Final = "v1"
# No '.', ':' or ',': they separate token parts and REVLOOP_MASTER_KEYS entries.
_KEY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_KEYGEN_HINT: Final = (
    "run `revloop stores keygen` and put its output in REVLOOP_MASTER_KEYS "
    "(the environment or .env)"
)


class CryptoError(Exception):
    """A key or token is unusable. Messages name key ids and contexts, never keys or plaintext."""


class Secret:
    """Decrypted secret bytes held in memory, masked in ``repr``/``str`` so logs can't leak them."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret holds bytes")
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


class SecretBox:
    """Encrypts under the primary key; decrypts under whichever key id a token names."""

    def __init__(self, keyring: Mapping[str, bytes], primary: str) -> None:
        if not keyring:
            raise CryptoError(f"the master keyring is empty: {_KEYGEN_HINT}")
        for key_id, key in keyring.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise CryptoError(f"master key {key_id!r} must be exactly {KEY_BYTES} bytes")
        if primary not in keyring:
            raise CryptoError(f"the primary key id {primary!r} is not in the keyring")
        # Only AESGCM objects are kept; their repr carries no key material.
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.items()}
        self._primary = primary

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The keyring in ``REVLOOP_MASTER_KEYS``; its first entry is the primary."""
        if settings.master_keys is None:
            raise CryptoError(f"REVLOOP_MASTER_KEYS is not set: {_KEYGEN_HINT}")
        keyring = _parse_master_keys(settings.master_keys.get_secret_value())
        return cls(keyring, next(iter(keyring)))

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        aad = _aad(context)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(nonce, plaintext, aad)
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{_VERSION}.{self._primary}.{body}"

    def decrypt(self, token: str, *, context: str) -> bytes:
        aad = _aad(context)
        key_id, blob = _parse_token(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CryptoError(
                f"token names master key {key_id!r}, which is not in the keyring "
                f"(have: {', '.join(self._ciphers)}); was it removed too early?"
            )
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise CryptoError(
                f"token under master key {key_id!r} failed authentication for context "
                f"{context!r}: it was altered, belongs to another context, or key {key_id!r} "
                "is not the key that encrypted it"
            ) from None

    def rotate(self, token: str, context: str) -> str:
        """Re-encrypt ``token`` under the primary key (with a fresh nonce)."""
        return self.encrypt(self.decrypt(token, context=context), context=context)

    def __repr__(self) -> str:
        return f"SecretBox(primary={self._primary!r}, key_ids={self.key_ids!r})"


def new_master_key(key_id: str) -> str:
    """A fresh ``REVLOOP_MASTER_KEYS`` entry: ``<key_id>:<base64 of 32 random bytes>``."""
    _check_key_id(key_id)
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise CryptoError(f"master key id {key_id!r} must match {_KEY_ID.pattern}")


def _aad(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise CryptoError("a non-empty context string is required")
    try:
        return context.encode("utf-8")
    except UnicodeEncodeError:
        raise CryptoError("the context is not valid Unicode text") from None


def _parse_token(token: str) -> tuple[str, bytes]:
    if not isinstance(token, str):
        raise CryptoError("malformed token: expected a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise CryptoError("malformed token: expected 'v1.<key_id>.<base64url>'")
    version, key_id, body = parts
    if version != _VERSION:
        raise CryptoError(f"unsupported token version {version[:8]!r} (this build reads v1)")
    if not _KEY_ID.fullmatch(key_id):
        raise CryptoError("malformed token: invalid key id")
    if not _B64URL.fullmatch(body):
        raise CryptoError("malformed token: the body is not unpadded base64url")
    try:
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CryptoError("malformed token: the body is not unpadded base64url") from None
    # Non-canonical spellings (stray low bits in the last character) are refused so that
    # every change to the text of a token is an error, not a silent alias.
    if base64.urlsafe_b64encode(blob).rstrip(b"=").decode("ascii") != body:
        raise CryptoError("malformed token: the body is not canonical base64url")
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise CryptoError("malformed token: the body is too short")
    return key_id, blob


def _parse_master_keys(value: str) -> dict[str, bytes]:
    # Messages cite entries by position and id only: the value is key material.
    keyring: dict[str, bytes] = {}
    for position, entry in enumerate(value.split(","), start=1):
        key_id, sep, encoded = entry.strip().partition(":")
        if not sep or not key_id or not encoded:
            raise CryptoError(
                f"REVLOOP_MASTER_KEYS entry #{position} is not '<id>:<base64 key>': {_KEYGEN_HINT}"
            )
        if not _KEY_ID.fullmatch(key_id):
            # Not echoed: a swapped '<base64>:<id>' would put the key here.
            raise CryptoError(
                f"REVLOOP_MASTER_KEYS entry #{position} has an invalid key id "
                f"(it must match {_KEY_ID.pattern})"
            )
        if key_id in keyring:
            raise CryptoError(f"REVLOOP_MASTER_KEYS names key id {key_id!r} twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"master key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise CryptoError(
                f"master key {key_id!r} decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}"
            )
        keyring[key_id] = key
    return keyring
