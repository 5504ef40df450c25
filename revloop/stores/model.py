"""One store: its slug, where its webhooks come from, and the secrets that sign them."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Final

from revloop.crypto import Secret
from revloop.settings import STORE_SETTINGS
from revloop.stores.api_keys import MAX_API_KEYS, SHA256_HEX, api_key_digest
from revloop.stores.identity import CURRENCY, STORE_ID, normalize_identity, platform_of


class RegistryError(ValueError):
    """The registry or its file is inconsistent (duplicates, malformed entries)."""


def secret_context(store_id: str) -> str:
    """The AES-GCM associated data binding a stored webhook secret to its store."""
    return f"store:{store_id}:webhook_secret"


def connection_context(store_id: str, channel: str) -> str:
    """The AES-GCM associated data binding a connection's credentials to its store and channel."""
    return f"store:{store_id}:connection:{channel}"


AD_CHANNELS: Final = frozenset({"meta", "google"})
STORE_CHANNELS: Final = frozenset({"shopify", "woocommerce", "bigcommerce"})
NOTIFY: Final = "notify"
CHANNELS: Final = AD_CHANNELS | STORE_CHANNELS | {NOTIFY}
"""What a store can connect (docs/connectors.md): ad accounts, store platform APIs (its own,
for hydration, backfill and reconciliation; others, for the multichannel lock), and the URL its
pauses and resumes are notified to (``notify``: the account is the URL, the credentials the
signing secret)."""
_ACCOUNTS: Final = {
    "meta": re.compile(r"^act_[0-9]{1,20}$|^[0-9]{1,20}$"),
    "google": re.compile(r"^[0-9]{1,20}$"),
    # The platform's own shop-name pattern: the domain becomes API URLs, so nothing else passes.
    "shopify": re.compile(r"^[a-z0-9][a-z0-9-]{0,59}\.myshopify\.com$"),
    "woocommerce": re.compile(r"^https://[a-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"),
    "bigcommerce": re.compile(r"^[a-z0-9]{1,20}$"),
    # No user info, no fragment; https is required when it is called (http to loopback only
    # where the deployment allows it: tests and the demo).
    NOTIFY: re.compile(r"^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?$"),
}
_CREDENTIALS: Final = {
    "meta": {"token"},
    "google": {"token", "developer_token"},
    "shopify": {"token"},
    "woocommerce": {"consumer_key", "consumer_secret"},
    "bigcommerce": {"token"},
    NOTIFY: {"secret"},
}
_GOOGLE_REFRESH: Final = {"developer_token", "refresh_token", "client_id", "client_secret"}


@dataclass(frozen=True)
class Connection:
    """A store's account on a channel, and the credentials that act on it (a JSON object of
    strings, decrypted only in memory; the fields each channel needs are in ``_CREDENTIALS``,
    Google's ``login_customer_id`` is optional)."""

    channel: str
    account: str
    """Meta's ad account (``act_<digits>``), Google's customer id (digits, no dashes), the
    myshopify domain, the WooCommerce site URL, the BigCommerce store hash."""
    credentials: Secret = field(repr=False)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r} is not one of {sorted(CHANNELS)}")
        if not isinstance(self.account, str) or not _ACCOUNTS[self.channel].fullmatch(self.account):
            raise ValueError(f"{self.channel} account {self.account!r} is not an account id")
        fields = self.fields()
        needed = _CREDENTIALS[self.channel]
        if self.channel == "google" and "token" not in fields:
            needed = _GOOGLE_REFRESH  # an hourly access token minted from a refresh token
        if not needed <= fields.keys() or not all(isinstance(v, str) for v in fields.values()):
            alternative = (
                f" (or {', '.join(sorted(_GOOGLE_REFRESH))})" if self.channel == "google" else ""
            )
            raise ValueError(
                f"{self.channel} credentials are a JSON object of strings with "
                f"{', '.join(sorted(needed))}{alternative}"
            )

    def fields(self) -> dict[str, Any]:
        try:
            value = json.loads(self.credentials.reveal())
        except ValueError:
            raise ValueError(f"{self.channel} credentials are not JSON") from None
        if not isinstance(value, dict):
            raise ValueError(f"{self.channel} credentials are not a JSON object")
        return value


@dataclass(frozen=True)
class Store:
    """One store: its slug, where its webhooks come from, and the secrets that sign them.

    ``secrets`` is the current secret first, then the previous one, accepted until
    ``previous_secret_expires_at`` so deliveries signed before a rotation still verify.
    ``api_key_hashes`` are the SHA-256 hex digests of the store's feed API keys (never the keys).
    """

    store_id: str
    platform: str
    identity: str
    secrets: tuple[Secret, ...]
    previous_secret_expires_at: datetime | None = None
    api_key_hashes: tuple[str, ...] = field(default=(), repr=False)
    currency: str | None = None
    """The shop currency (ISO 4217): product payloads carry prices without one."""
    settings: tuple[SettingsVersion, ...] = ()
    """The store's own settings over time (revloop/stores/store_settings.py)."""
    connections: tuple[Connection, ...] = field(default=(), repr=False)
    """Its ad channels' accounts and credentials, one per channel."""

    def connection(self, channel: str) -> Connection | None:
        return next((c for c in self.connections if c.channel == channel), None)

    def __post_init__(self) -> None:
        if not isinstance(self.store_id, str) or not STORE_ID.fullmatch(self.store_id):
            raise ValueError(
                f"store id {self.store_id!r} must be a slug matching {STORE_ID.pattern}"
            )
        # Stored as the plain value so reprs and the file show 'shopify', not Platform.SHOPIFY.
        platform = platform_of(self.platform).value
        object.__setattr__(self, "platform", platform)
        object.__setattr__(self, "identity", normalize_identity(platform, self.identity))
        if (
            not isinstance(self.secrets, tuple)
            or not self.secrets
            or not all(isinstance(s, Secret) and s.reveal() for s in self.secrets)
        ):
            raise ValueError(f"store {self.store_id!r} needs a tuple of non-empty Secret values")
        expires = self.previous_secret_expires_at
        if expires is not None and (expires.tzinfo is None or expires.utcoffset() is None):
            raise ValueError(f"store {self.store_id!r}: previous_secret_expires_at needs a zone")
        if (len(self.secrets) > 1) != (expires is not None):
            raise ValueError(
                f"store {self.store_id!r}: previous secrets and previous_secret_expires_at "
                "go together"
            )
        if self.currency is not None and not (
            isinstance(self.currency, str) and CURRENCY.fullmatch(self.currency)
        ):
            raise ValueError(f"store {self.store_id!r}: currency must be an ISO 4217 code like USD")
        if not isinstance(self.settings, tuple) or not all(
            isinstance(v, SettingsVersion) for v in self.settings
        ):
            raise ValueError(f"store {self.store_id!r}: settings must be a tuple of versions")
        check_history(self.settings)
        if not isinstance(self.connections, tuple) or not all(
            isinstance(c, Connection) for c in self.connections
        ):
            raise ValueError(f"store {self.store_id!r}: connections must be a tuple of Connection")
        if len({c.channel for c in self.connections}) != len(self.connections):
            raise ValueError(f"store {self.store_id!r}: one connection per channel")
        hashes = self.api_key_hashes
        if not isinstance(hashes, tuple) or not all(
            isinstance(h, str) and SHA256_HEX.fullmatch(h) for h in hashes
        ):
            raise ValueError(
                f"store {self.store_id!r}: api_key_hashes must be a tuple of SHA-256 hex digests"
            )
        if len(set(hashes)) != len(hashes):
            raise ValueError(f"store {self.store_id!r}: api_key_hashes has duplicates")
        if len(hashes) > MAX_API_KEYS:
            raise ValueError(f"store {self.store_id!r}: more than {MAX_API_KEYS} API keys")

    def accepts_api_key(self, key: str) -> bool:
        """Whether ``key`` is one of this store's API keys. Compares the key's digest with every
        stored digest in constant time, without stopping at a match."""
        digest = api_key_digest(key).encode("ascii")
        ok = False
        for stored in self.api_key_hashes:
            ok |= hmac.compare_digest(digest, stored.encode("ascii"))
        return ok

    def with_api_key_hash(self, digest: str) -> Store:
        """This store with one more API key (given by its digest)."""
        if len(self.api_key_hashes) >= MAX_API_KEYS:
            raise ValueError(
                f"store {self.store_id!r} already has {MAX_API_KEYS} API keys; revoke them "
                "first (`revloop stores api-key --revoke-all`)"
            )
        return replace(self, api_key_hashes=(*self.api_key_hashes, digest))

    def without_api_keys(self) -> Store:
        return replace(self, api_key_hashes=())

    def verification_keys(self, now: datetime) -> tuple[bytes, ...]:
        """The secrets a delivery may be signed with at ``now``: the current one, plus the
        previous ones until they expire."""
        require_aware(now)
        expires = self.previous_secret_expires_at
        if expires is not None and now < expires:
            return tuple(s.reveal() for s in self.secrets)
        return (self.secrets[0].reveal(),)

    def rotated(self, secret: Secret, *, now: datetime, window: timedelta) -> Store:
        """This store with ``secret`` current and the current one accepted for ``window``.

        Older previous secrets are dropped: the expiry is per store, so keeping them would
        stretch their life. Re-adding the current secret changes nothing."""
        require_aware(now)
        if secret == self.secrets[0]:
            return self
        if window <= timedelta(0):
            return self._with(secrets=(secret,), expires=None)
        return self._with(secrets=(secret, self.secrets[0]), expires=now + window)

    def _with(self, *, secrets: tuple[Secret, ...], expires: datetime | None) -> Store:
        # replace() keeps every other field (the API keys among them) and re-runs the checks.
        return replace(self, secrets=secrets, previous_secret_expires_at=expires)


@dataclass(frozen=True)
class SettingsVersion:
    """A store's own values from ``effective_from`` on (until its next version); a setting
    missing from ``values`` takes the deployment's value."""

    effective_from: datetime
    values: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        require_aware(self.effective_from)
        unknown = set(self.values) - STORE_SETTINGS
        if unknown:
            raise ValueError(f"not settable per store: {', '.join(sorted(unknown))}")

    def to_json(self) -> dict[str, Any]:
        return {"effective_from": self.effective_from.isoformat(), "values": dict(self.values)}

    @classmethod
    def from_json(cls, entry: Any) -> SettingsVersion:
        if not isinstance(entry, dict) or set(entry) != {"effective_from", "values"}:
            raise ValueError('a settings version is {"effective_from": ..., "values": {...}}')
        if not isinstance(entry["values"], dict) or not isinstance(entry["effective_from"], str):
            raise ValueError("effective_from must be ISO 8601 and values an object")
        return cls(datetime.fromisoformat(entry["effective_from"]), dict(entry["values"]))


def check_history(versions: Sequence[SettingsVersion]) -> None:
    """Versions must be in strictly increasing ``effective_from`` order."""
    for earlier, later in pairwise(versions):
        if later.effective_from <= earlier.effective_from:
            raise ValueError("settings versions must take effect in increasing time order")


def require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware (e.g. datetime.now(UTC))")
