"""Pseudonymous customer identity: the only form in which a customer may appear in keys, logs and
most topics.

``customer_key`` is an HMAC-SHA256 of the normalized email under a deployment secret (the salt),
so the same shopper gets the same key from every store's orders and from every touchpoint feed,
while nobody without the salt can test a guessed email against it. Emails themselves travel
only on the compacted customers topic (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["customer_key", "customer_key_for_id", "normalize_email"]


def normalize_email(email: str) -> str:
    """Trimmed and case-folded. Plus-addressing and dots are kept: they may be different
    mailboxes, and merging two people is worse than missing a join."""
    return email.strip().casefold()


def customer_key(salt: bytes, email: str) -> str:
    """The key of the shopper with this email; raises ValueError for an empty email."""
    normalized = normalize_email(email)
    if "@" not in normalized:
        raise ValueError("not an email address")
    return _keyed(salt, "email", normalized)


def customer_key_for_id(salt: bytes, store_id: str, customer_id: str) -> str:
    """The key of a shopper known only by a platform customer id (scoped to its store, since
    platform ids are not unique across stores)."""
    return _keyed(salt, "customer", f"{store_id}/{customer_id}")


def _keyed(salt: bytes, kind: str, value: str) -> str:
    if not salt:
        raise ValueError("customer key salt is empty")
    digest = hmac.new(salt, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"ck_{digest[:40]}"
