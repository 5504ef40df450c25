"""Views of the stores file that follow its changes while a process runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from revloop.crypto import SecretBox
from revloop.files import ReloadingFile
from revloop.stores.model import RegistryError, Store
from revloop.stores.registry import StoreRegistry, store_currencies

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class CheckedFile(Generic[T]):
    """A value loaded from the stores file, read again when the file changed, checked at most
    every ``check_seconds``. A file that fails to load keeps the last good value (logged, naming
    ``what``): a running service never loses its stores to a bad edit."""

    def __init__(
        self, path: Path, load: Callable[[Path], T], check_seconds: float, what: str
    ) -> None:
        self._file = ReloadingFile(path, load)
        self._check_seconds = check_seconds
        self._next_check = time.monotonic() + check_seconds
        self._what = what

    @property
    def value(self) -> T:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._check_seconds
            try:
                self._file.refresh()
            except (OSError, RegistryError) as exc:
                log.error(
                    "stores file changed but did not load; previous %s kept: %s", self._what, exc
                )
        return self._file.value


class LiveCurrencies(Mapping[str, str]):
    """:func:`store_currencies`, followed as the file changes (:class:`CheckedFile`): the
    normalizer knows the currency of a store added after it started."""

    def __init__(self, path: Path, check_seconds: float) -> None:
        self._file = CheckedFile(path, store_currencies, check_seconds, "currencies")

    def __getitem__(self, store_id: str) -> str:
        return self._file.value[store_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._file.value)

    def __len__(self) -> int:
        return len(self._file.value)
