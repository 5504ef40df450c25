"""The store registry: which store a webhook came from, and the secrets that verify it.

Ingest turns a delivery's identifying header into an identity with :func:`normalize_identity`,
finds the :class:`Store` with :meth:`StoreRegistry.lookup`, and checks the signature against
:meth:`Store.verification_keys`. The registry lives in a JSON file whose webhook secrets are
:class:`~revloop.crypto.SecretBox` tokens (docs/security.md).

The marketing feeds (``POST /events/...``) authenticate with per-store API keys instead:
``rlk_<store_id>_<43 urlsafe base64 chars>``. Only their SHA-256 digests are kept
(:attr:`Store.api_key_hashes`); :func:`new_api_key` makes one and :meth:`Store.accepts_api_key`
checks one.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlsplit

from revloop.crypto import CryptoError, Secret, SecretBox

T = TypeVar("T")
log = logging.getLogger(__name__)

__all__ = [
    "MAX_API_KEYS",
    "LiveCurrencies",
    "LiveStoreRegistry",
    "Platform",
    "RegistryError",
    "ReloadingFile",
    "Store",
    "StoreRegistry",
    "api_key_digest",
    "api_key_store_id",
    "new_api_key",
    "normalize_identity",
    "secret_context",
    "store_currencies",
]


class Platform(StrEnum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    BIGCOMMERCE = "bigcommerce"


class RegistryError(ValueError):
    """The registry or its file is inconsistent (duplicates, malformed entries)."""


_STORE_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Shopify's own sanitizer pattern; the 63-character cap is the DNS label limit.
_SHOP_DOMAIN: Final = re.compile(r"(?=[^.]{1,63}\.)[a-z0-9][a-z0-9_-]*\.myshopify\.com")
_STORE_HASH: Final = re.compile(r"[a-z0-9]{1,64}")
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_EXPECTED: Final = {
    Platform.SHOPIFY: "a shop domain like 'acme.myshopify.com'",
    Platform.WOOCOMMERCE: "a WooCommerce home URL like 'https://shop.example.com/'",
    Platform.BIGCOMMERCE: "a BigCommerce producer like 'stores/abc123' (or the bare hash)",
}
_FILE_KEYS: Final = frozenset(
    {
        "store_id",
        "platform",
        "identity",
        "secrets",
        "previous_secret_expires_at",
        "api_key_hashes",
        "currency",
    }
)
_OPTIONAL_FILE_KEYS: Final = frozenset({"previous_secret_expires_at", "api_key_hashes", "currency"})
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_WHITESPACE: Final = re.compile(r"\s")

_API_KEY_PREFIX: Final = "rlk_"
_API_KEY_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")
MAX_API_KEYS: Final = 10
"""API keys one store may hold at once (each request compares against all of them)."""


def new_api_key(store_id: str) -> str:
    """A fresh API key for ``store_id``: ``rlk_<store_id>_`` + 32 random bytes, urlsafe base64
    (43 characters). Show it once; keep only :func:`api_key_digest` of it."""
    if not isinstance(store_id, str) or not _STORE_ID.fullmatch(store_id):
        raise ValueError(f"store id {store_id!r} must be a slug matching {_STORE_ID.pattern}")
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
    return store_id if _STORE_ID.fullmatch(store_id) else None


def secret_context(store_id: str) -> str:
    """The AES-GCM associated data binding a stored webhook secret to its store."""
    return f"store:{store_id}:webhook_secret"


def normalize_identity(platform: str, raw: str) -> str:
    """The canonical identity of a store, from the header value (or operator input) naming it.

    Shopify: ``X-Shopify-Shop-Domain`` → ``acme.myshopify.com``. WooCommerce:
    ``X-WC-Webhook-Source`` (the home URL, usually with a trailing slash) →
    ``scheme://host[:port][/path]``. BigCommerce: the body's ``producer`` ``stores/{hash}``
    (or the bare hash) → ``hash``. Raises ValueError on anything else.
    """
    kind = _platform(platform)
    if not isinstance(raw, str):
        raise ValueError(f"{kind} identity must be a string, got {type(raw).__name__}")
    expected = f"{raw[:100]!r} is not {_EXPECTED[kind]}"
    value = raw.strip()
    if not value or not value.isprintable() or _WHITESPACE.search(value):
        raise ValueError(expected)
    if kind is Platform.SHOPIFY:
        domain = value.lower()
        if not _SHOP_DOMAIN.fullmatch(domain):
            raise ValueError(expected)
        return domain
    if kind is Platform.WOOCOMMERCE:
        return _normalize_home_url(value, expected)
    store_hash = value.removeprefix("stores/")
    if not _STORE_HASH.fullmatch(store_hash):
        raise ValueError(expected)
    return store_hash


def _normalize_home_url(value: str, expected: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(expected) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(expected)
    host = parts.hostname or ""
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(expected) from None
    else:
        try:
            # IDNA so a Unicode host and its punycode spelling are the same store.
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValueError(expected) from None
        if not _HOST.fullmatch(host):
            raise ValueError(expected)
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def _platform(value: str) -> Platform:
    try:
        return Platform(value)
    except ValueError:
        choices = ", ".join(p.value for p in Platform)
        raise ValueError(f"unknown platform {value!r} (expected one of: {choices})") from None


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

    def __post_init__(self) -> None:
        if not isinstance(self.store_id, str) or not _STORE_ID.fullmatch(self.store_id):
            raise ValueError(
                f"store id {self.store_id!r} must be a slug matching {_STORE_ID.pattern}"
            )
        # Stored as the plain value so reprs and the file show 'shopify', not Platform.SHOPIFY.
        platform = _platform(self.platform).value
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
            isinstance(self.currency, str) and _CURRENCY.fullmatch(self.currency)
        ):
            raise ValueError(f"store {self.store_id!r}: currency must be an ISO 4217 code like USD")
        hashes = self.api_key_hashes
        if not isinstance(hashes, tuple) or not all(
            isinstance(h, str) and _SHA256_HEX.fullmatch(h) for h in hashes
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
        _require_aware(now)
        expires = self.previous_secret_expires_at
        if expires is not None and now < expires:
            return tuple(s.reveal() for s in self.secrets)
        return (self.secrets[0].reveal(),)

    def rotated(self, secret: Secret, *, now: datetime, window: timedelta) -> Store:
        """This store with ``secret`` current and the current one accepted for ``window``.

        Older previous secrets are dropped: the expiry is per store, so keeping them would
        stretch their life. Re-adding the current secret changes nothing."""
        _require_aware(now)
        if secret == self.secrets[0]:
            return self
        if window <= timedelta(0):
            return self._with(secrets=(secret,), expires=None)
        return self._with(secrets=(secret, self.secrets[0]), expires=now + window)

    def _with(self, *, secrets: tuple[Secret, ...], expires: datetime | None) -> Store:
        # replace() keeps every other field (the API keys among them) and re-runs the checks.
        return replace(self, secrets=secrets, previous_secret_expires_at=expires)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware (e.g. datetime.now(UTC))")


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
        _require_aware(now)
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
        entries = _file_entries(path)
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
        _write_private(Path(path), (json.dumps(document, indent=2) + "\n").encode("utf-8"))


class ReloadingFile(Generic[T]):
    """A value read from a file, read again when the file changes. The stores file is replaced
    atomically on every change (`revloop stores`, later a connector's OAuth callback), so a
    running service that calls :meth:`refresh` now and then serves a new store or a rotated key
    without a restart."""

    def __init__(self, path: Path, load: Callable[[Path], T]) -> None:
        self.path = Path(path)
        self._load = load
        self._stamp = _file_stamp(self.path)
        self.value = load(self.path)

    def refresh(self) -> bool:
        """Read the file again if it changed since the last attempt; True if it was read. When
        it fails to load, the last good value stays and the error is raised, once per change of
        the file."""
        stamp = _file_stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.value = self._load(self.path)
        return True


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size): an atomic replace always changes the inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class LiveStoreRegistry:
    """The stores file's registry as of the last :meth:`refresh`: what ingest serves from."""

    def __init__(self, path: Path, box: SecretBox) -> None:
        self._file = ReloadingFile(path, lambda p: StoreRegistry.load(p, box))

    @property
    def current(self) -> StoreRegistry:
        return self._file.value

    def refresh(self) -> bool:
        return self._file.refresh()

    def lookup(self, platform: str, identity: str) -> Store | None:
        return self._file.value.lookup(platform, identity)

    def get(self, store_id: str) -> Store | None:
        return self._file.value.get(store_id)

    def verification_keys(self, platform: str, now: datetime) -> frozenset[bytes]:
        return self._file.value.verification_keys(platform, now)

    def __repr__(self) -> str:
        return f"LiveStoreRegistry({self._file.path}: {self._file.value!r})"


class LiveCurrencies(Mapping[str, str]):
    """:func:`store_currencies`, read again when the file changed, checked on a lookup at most
    every ``check_seconds``: the normalizer knows the currency of a store added after it
    started. A file that fails to load keeps the last good currencies (and is logged)."""

    def __init__(self, path: Path, check_seconds: float = 1.0) -> None:
        self._file = ReloadingFile(path, store_currencies)
        self._check_seconds = check_seconds
        self._next_check = time.monotonic() + check_seconds

    def __getitem__(self, store_id: str) -> str:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._check_seconds
            try:
                self._file.refresh()
            except (OSError, RegistryError) as exc:
                log.error("stores file changed but did not load; previous currencies kept: %s", exc)
        return self._file.value[store_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._file.value)

    def __len__(self) -> int:
        return len(self._file.value)


def store_currencies(path: Path) -> dict[str, str]:
    """Each store's currency (store id → ISO 4217 code) from a ``stores.json``, read without
    decrypting anything: the normalizer needs the currencies, not the webhook secrets, so it
    runs without the master keys. {} when there is no file."""
    if not Path(path).exists():
        return {}
    currencies = {}
    for n, entry in enumerate(_file_entries(path), start=1):
        store_id = entry.get("store_id") if isinstance(entry, dict) else None
        if not isinstance(store_id, str):
            raise RegistryError(f"{path}: store #{n} has no store_id")
        currency = entry.get("currency")
        if currency is None:
            continue
        if not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)):
            raise RegistryError(f"{path}: store {store_id!r}: currency must be an ISO 4217 code")
        currencies[store_id] = currency
    return currencies


def _file_entries(path: Path) -> list[Any]:
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
    try:
        return Store(
            store_id=store_id,
            platform=entry["platform"],
            identity=entry["identity"],
            secrets=secrets,
            previous_secret_expires_at=None if expires is None else datetime.fromisoformat(expires),
            api_key_hashes=tuple(api_key_hashes),
            currency=entry.get("currency"),
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
    return entry


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 in the target directory, so the rename is atomic and the
    # file is never readable by others, not even briefly.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
