"""Views of the stores file that follow its changes while a process runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

from revloop.crypto import SecretBox
from revloop.files import ReloadingFile
from revloop.stores.model import RegistryError, Store
from revloop.stores.registry import StoreRegistry, store_currencies

log = logging.getLogger(__name__)


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

    def __init__(self, path: Path, check_seconds: float) -> None:
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
