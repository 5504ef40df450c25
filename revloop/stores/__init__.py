"""The store registry: which store a webhook came from, and the secrets that verify it.

Ingest turns a delivery's identifying header into an identity with :func:`normalize_identity`,
finds the :class:`Store` with :meth:`StoreRegistry.lookup`, and checks the signature against
:meth:`Store.verification_keys`. The marketing feeds authenticate with per-store API keys
(:mod:`revloop.stores.api_keys`). Services read the file through the live views, which follow
its changes without a restart. A store's own settings (thresholds, windows, model) are versions
in effect from a given time (:mod:`revloop.stores.store_settings`). Its ad channels' accounts and
credentials (:class:`Connection`) are encrypted in the file like its webhook secrets.
"""

from revloop.stores.api_keys import MAX_API_KEYS, api_key_digest, api_key_store_id, new_api_key
from revloop.stores.identity import Platform, normalize_identity
from revloop.stores.live import LiveCurrencies, LiveStoreRegistry
from revloop.stores.model import (
    CHANNELS,
    Connection,
    RegistryError,
    SettingsVersion,
    Store,
    secret_context,
)
from revloop.stores.registry import StoreRegistry, store_currencies
from revloop.stores.store_settings import LiveStoreSettings, StoreSettings

__all__ = [
    "CHANNELS",
    "MAX_API_KEYS",
    "Connection",
    "LiveCurrencies",
    "LiveStoreRegistry",
    "LiveStoreSettings",
    "Platform",
    "RegistryError",
    "SettingsVersion",
    "Store",
    "StoreRegistry",
    "StoreSettings",
    "api_key_digest",
    "api_key_store_id",
    "new_api_key",
    "normalize_identity",
    "secret_context",
    "store_currencies",
]
