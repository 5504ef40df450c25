"""Per-store API keys for the marketing feeds: ``rlk_<store_id>_<43 urlsafe base64 chars>``.

Only their SHA-256 digests are kept (:attr:`~revloop.stores.Store.api_key_hashes`);
:func:`new_api_key` makes one and :meth:`~revloop.stores.Store.accepts_api_key` checks one.
"""

from __future__ import annotations

import hashlib
import re
from secrets import token_urlsafe
from typing import Final

from revloop.stores.identity import STORE_ID

_API_KEY_PREFIX: Final = "rlk_"
_API_KEY_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
MAX_API_KEYS: Final = 10
"""API keys one store may hold at once (each request compares against all of them)."""


def new_api_key(store_id: str) -> str:
    """A fresh API key for ``store_id``: ``rlk_<store_id>_`` + 32 random bytes, urlsafe base64
    (43 characters). Show it once; keep only :func:`api_key_digest` of it."""
    if not isinstance(store_id, str) or not STORE_ID.fullmatch(store_id):
        raise ValueError(f"store id {store_id!r} must be a slug matching {STORE_ID.pattern}")
    return f"{_API_KEY_PREFIX}{store_id}_{token_urlsafe(32)}"


def api_key_digest(key: str) -> str:
    """What the registry keeps of an API key: its SHA-256, hex. The keys carry 256 random bits,
    so an unsalted fast hash is enough (there is nothing to guess)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def api_key_store_id(key: str) -> str | None:
    """The store an API key names, or None when it is not shaped like one. Says nothing about
    whether the key is valid: that is :meth:`Store.accepts_api_key`."""
    if not key.startswith(_API_KEY_PREFIX):
        return None
    # The token may itself contain '_', so it is split off by length, not by separator.
    rest = key[len(_API_KEY_PREFIX) :]
    store_id, separator, token = rest[:-44], rest[-44:-43], rest[-43:]
    if separator != "_" or not _API_KEY_TOKEN.fullmatch(token):
        return None
    return store_id if STORE_ID.fullmatch(store_id) else None
