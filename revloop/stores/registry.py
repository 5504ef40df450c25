"""The store registry and its file: which store a webhook came from, and the secrets that
verify it. The file's webhook secrets are :class:`~revloop.crypto.SecretBox` tokens
(docs/security.md); saves replace it atomically, so readers need no lock."""

from __future__ import annotations

import bisect
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from revloop.crypto import CryptoError, Secret, SecretBox
from revloop.files import write_private
from revloop.stores.identity import CURRENCY
from revloop.stores.model import (
    Connection,
    RegistryError,
    SettingsVersion,
    Store,
    connection_context,
    require_aware,
    secret_context,
)

_FILE_KEYS: Final = frozenset(
    {
        "store_id",
        "platform",
        "identity",
        "secrets",
        "previous_secret_expires_at",
        "api_key_hashes",
        "currency",
        "settings",
        "connections",
    }
)
_OPTIONAL_FILE_KEYS: Final = frozenset(
    {"previous_secret_expires_at", "api_key_hashes", "currency", "settings", "connections"}
)


class _PlatformKeys:
    """The key sets of a group of stores, cached per span between their secrets' expiries."""

    def __init__(self, stores: tuple[Store, ...]) -> None:
        self._stores = stores
        self._expiries = sorted(
            {s.previous_secret_expires_at for s in stores if s.previous_secret_expires_at}
        )
        self._by_span: dict[int, frozenset[bytes]] = {}

    def at(self, now: datetime) -> frozenset[bytes]:
        span = bisect.bisect_right(self._expiries, now)  # how many expiries are past
        keys = self._by_span.get(span)
        if keys is None:
            keys = frozenset(k for s in self._stores for k in s.verification_keys(now))
            self._by_span[span] = keys
        return keys


class StoreRegistry:
    """Stores indexed by store id and by (platform, identity). Immutable: build a new one
    (``with_store``, ``load``) and swap the reference to change it."""

    def __init__(self, stores: Iterable[Store] = ()) -> None:
        by_id: dict[str, Store] = {}
        by_identity: dict[tuple[str, str], Store] = {}
        for store in stores:
            if store.store_id in by_id:
                raise RegistryError(f"store id {store.store_id!r} appears twice")
            key = (store.platform, store.identity)
            other = by_identity.get(key)
            if other is not None:
                raise RegistryError(
                    f"stores {other.store_id!r} and {store.store_id!r} both claim "
                    f"{store.platform} identity {store.identity!r}"
                )
            by_id[store.store_id] = by_identity[key] = store
        self._by_id = dict(sorted(by_id.items()))
        self._by_identity = by_identity
        by_platform: dict[str, list[Store]] = {}
        for store in self._by_id.values():
            by_platform.setdefault(store.platform, []).append(store)
        self._by_platform = {platform: tuple(group) for platform, group in by_platform.items()}
        self._platform_keys: dict[str, _PlatformKeys] = {}

    def lookup(self, platform: str, identity: str) -> Store | None:
        """The store with this *normalized* identity (see :func:`normalize_identity`)."""
        return self._by_identity.get((platform, identity))

    def get(self, store_id: str) -> Store | None:
        return self._by_id.get(store_id)

    def stores_for(self, platform: str) -> tuple[Store, ...]:
        return self._by_platform.get(platform, ())

    def verification_keys(self, platform: str, now: datetime) -> frozenset[bytes]:
        """Every secret any of the platform's stores accepts at ``now``. BigCommerce deliveries
        must be verified before their body names the store, so each one needs these. They change
        only when a previous secret expires, so they are worked out once per span between
        expiries: a delivery costs the same with one store or ten thousand."""
        require_aware(now)
        keys = self._platform_keys.get(platform)
        if keys is None:
            keys = self._platform_keys[platform] = _PlatformKeys(self.stores_for(platform))
        return keys.at(now)

    def with_store(self, store: Store) -> StoreRegistry:
        """A registry with ``store`` added, or replacing the store with the same id."""
        others = (s for s in self._by_id.values() if s.store_id != store.store_id)
        return StoreRegistry([*others, store])

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Store]:
        return iter(self._by_id.values())

    def __repr__(self) -> str:
        return f"StoreRegistry({len(self)} stores: {', '.join(self._by_id)})"

    @classmethod
    def load(cls, path: Path, box: SecretBox) -> StoreRegistry:
        """Read and decrypt a ``stores.json``. Raises RegistryError (or CryptoError) naming the
        file and the store at fault; FileNotFoundError when there is no file."""
        entries = file_entries(path)
        try:
            return cls(_store_from_json(entry, n, box) for n, entry in enumerate(entries, start=1))
        except (RegistryError, CryptoError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    @classmethod
    def update(
        cls, path: Path, box: SecretBox, change: Callable[[StoreRegistry], StoreRegistry]
    ) -> StoreRegistry:
        """Load the file (empty when missing), apply ``change`` and save the result, holding an
        exclusive lock throughout, so two writers (two `revloop stores add`, later a
        connector's OAuth callback) never lose each other's changes. Readers need no lock:
        saves replace the file atomically. ``change`` may raise to abandon the update."""
        path = Path(path)
        # Not 0700: the default directory is the state dir, which Postgres (another OS user)
        # must traverse. The file itself and its lock are 0600.
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            changed = change(cls.load(path, box) if path.exists() else cls())
            changed.save(path, box)
            return changed
        finally:
            os.close(lock)  # closing the descriptor releases the lock

    def save(self, path: Path, box: SecretBox) -> None:
        """Write the registry atomically, mode 0600, every secret encrypted under the primary
        master key (so a load followed by a save also rotates master keys)."""
        document = {"stores": [_store_to_json(store, box) for store in self]}
        write_private(Path(path), (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def store_currencies(path: Path) -> dict[str, str]:
    """Each store's currency (store id → ISO 4217 code) from a ``stores.json``, read without
    decrypting anything: the normalizer needs the currencies, not the webhook secrets, so it
    runs without the master keys. {} when there is no file."""
    if not Path(path).exists():
        return {}
    currencies = {}
    for n, entry in enumerate(file_entries(path), start=1):
        store_id = entry.get("store_id") if isinstance(entry, dict) else None
        if not isinstance(store_id, str):
            raise RegistryError(f"{path}: store #{n} has no store_id")
        currency = entry.get("currency")
        if currency is None:
            continue
        if not (isinstance(currency, str) and CURRENCY.fullmatch(currency)):
            raise RegistryError(f"{path}: store {store_id!r}: currency must be an ISO 4217 code")
        currencies[store_id] = currency
    return currencies


def file_entries(path: Path) -> list[Any]:
    try:
        document = json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc})") from None
    entries = document.get("stores") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise RegistryError(f'{path}: expected {{"stores": [...]}}')
    return entries


def _store_from_json(entry: Any, position: int, box: SecretBox) -> Store:
    where = f"store #{position}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where} is not an object")
    if isinstance(entry.get("store_id"), str):
        where = f"store {entry['store_id']!r}"
    unknown = entry.keys() - _FILE_KEYS
    missing = _FILE_KEYS - _OPTIONAL_FILE_KEYS - entry.keys()
    if unknown or missing:
        raise RegistryError(
            f"{where}: unknown fields {sorted(unknown)} / missing fields {sorted(missing)}"
        )
    store_id, tokens = entry["store_id"], entry["secrets"]
    expires = entry.get("previous_secret_expires_at")
    if not isinstance(store_id, str) or not isinstance(tokens, list):
        raise RegistryError(f"{where}: store_id must be a string and secrets a list of tokens")
    if not all(isinstance(t, str) for t in tokens):
        raise RegistryError(f"{where}: secrets must be a list of token strings")
    if expires is not None and not isinstance(expires, str):
        raise RegistryError(f"{where}: previous_secret_expires_at must be ISO 8601 or null")
    api_key_hashes = entry.get("api_key_hashes", [])
    if not isinstance(api_key_hashes, list) or not all(isinstance(h, str) for h in api_key_hashes):
        raise RegistryError(f"{where}: api_key_hashes must be a list of SHA-256 hex digests")
    try:
        secrets = tuple(Secret(box.decrypt(t, context=secret_context(store_id))) for t in tokens)
    except CryptoError as exc:
        raise CryptoError(f"{where}: cannot decrypt its webhook secrets: {exc}") from None
    versions = entry.get("settings", [])
    if not isinstance(versions, list):
        raise RegistryError(f"{where}: settings must be a list of versions")
    connections = entry.get("connections", [])
    if not isinstance(connections, list) or not all(
        isinstance(c, dict) and {"channel", "account", "credentials"} == c.keys()
        for c in connections
    ):
        raise RegistryError(
            f"{where}: connections must be a list of {{channel, account, credentials}}"
        )
    try:
        decrypted = [
            (
                c,
                Secret(
                    box.decrypt(
                        c["credentials"], context=connection_context(store_id, c["channel"])
                    )
                ),
            )
            for c in connections
        ]
    except (CryptoError, TypeError) as exc:
        raise CryptoError(f"{where}: cannot decrypt its connections: {exc}") from None
    try:
        return Store(
            store_id=store_id,
            platform=entry["platform"],
            identity=entry["identity"],
            secrets=secrets,
            previous_secret_expires_at=None if expires is None else datetime.fromisoformat(expires),
            api_key_hashes=tuple(api_key_hashes),
            currency=entry.get("currency"),
            settings=tuple(SettingsVersion.from_json(v) for v in versions),
            connections=tuple(
                Connection(c["channel"], c["account"], secret) for c, secret in decrypted
            ),
        )
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{where}: {exc}") from None


def _store_to_json(store: Store, box: SecretBox) -> dict[str, Any]:
    expires = store.previous_secret_expires_at
    entry: dict[str, Any] = {
        "store_id": store.store_id,
        "platform": str(store.platform),
        "identity": store.identity,
        "secrets": [
            box.encrypt(s.reveal(), context=secret_context(store.store_id)) for s in store.secrets
        ],
        "previous_secret_expires_at": (
            None if expires is None else expires.astimezone(UTC).isoformat()
        ),
    }
    # Written only when there are some, so a store without API keys is the same entry as before.
    if store.api_key_hashes:
        entry["api_key_hashes"] = list(store.api_key_hashes)
    if store.currency:
        entry["currency"] = store.currency
    if store.settings:
        entry["settings"] = [version.to_json() for version in store.settings]
    if store.connections:
        entry["connections"] = [
            {
                "channel": c.channel,
                "account": c.account,
                "credentials": box.encrypt(
                    c.credentials.reveal(), context=connection_context(store.store_id, c.channel)
                ),
            }
            for c in store.connections
        ]
    return entry
