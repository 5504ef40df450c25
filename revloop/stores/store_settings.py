"""Settings a store sets for itself: breaker thresholds and dwell, attribution windows, model,
threshold and holdout (``STORE_SETTINGS``). Each change is a new version that takes effect from a
given instant, and the worker applies to each event the version in effect at the event's time,
so a replay of the same events under the same file derives the same pauses and scores
(docs/streams.md). Versions are only ever added, from a time still to come."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from revloop.settings import Settings
from revloop.stores.live import CheckedFile
from revloop.stores.model import RegistryError, SettingsVersion, check_history
from revloop.stores.registry import file_entries

log = logging.getLogger(__name__)
R = TypeVar("R")


class StoreSettings:
    """Every store's settings over time, on top of the deployment's (``defaults``). Resolving is
    a bisect plus a cache look-up: the worker asks for every event."""

    def __init__(
        self, defaults: Settings, histories: Mapping[str, Sequence[SettingsVersion]]
    ) -> None:
        self._defaults = defaults
        self._starts = {
            store_id: [version.effective_from for version in versions]
            for store_id, versions in histories.items()
        }
        self._settings: dict[tuple[str, int], Settings] = {}
        for store_id, versions in histories.items():
            try:
                check_history(versions)
            except ValueError as exc:
                raise RegistryError(f"store {store_id!r}: {exc}") from None
            for n, version in enumerate(versions, start=1):
                try:
                    self._settings[(store_id, n)] = defaults.for_store(version.values)
                except ValueError as exc:
                    raise RegistryError(
                        f"store {store_id!r}: settings from {version.effective_from.isoformat()}"
                        f" are not valid: {exc}"
                    ) from None
        self._built: dict[tuple[Callable[[Settings], Any], str, int], Any] = {}

    def at(self, store_id: str, at: datetime) -> Settings:
        """The settings in effect for ``store_id`` at event time ``at``."""
        n = self._version(store_id, at)
        return self._settings[(store_id, n)] if n else self._defaults

    def build(self, store_id: str, at: datetime, make: Callable[[Settings], R]) -> R:
        """``make(settings in effect)``, made once per store and version (rules objects)."""
        key = (make, store_id, self._version(store_id, at))
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = make(self.at(store_id, at))
        return built

    def _version(self, store_id: str, at: datetime) -> int:
        starts = self._starts.get(store_id)
        return bisect.bisect_right(starts, at) if starts else 0


def settings_histories(path: Path) -> dict[str, tuple[SettingsVersion, ...]]:
    """Each store's settings versions from a ``stores.json``, read without decrypting anything
    (the worker needs no master key). {} when there is no file."""
    if not Path(path).exists():
        return {}
    histories = {}
    for n, entry in enumerate(file_entries(path), start=1):
        store_id = entry.get("store_id") if isinstance(entry, dict) else None
        if not isinstance(store_id, str):
            raise RegistryError(f"{path}: store #{n} has no store_id")
        raw = entry.get("settings", [])
        try:
            if not isinstance(raw, list):
                raise ValueError("settings must be a list of versions")
            histories[store_id] = tuple(SettingsVersion.from_json(v) for v in raw)
        except ValueError as exc:
            raise RegistryError(f"{path}: store {store_id!r}: {exc}") from None
    return histories


class LiveStoreSettings:
    """:class:`StoreSettings` from the stores file, read again when it changed (checked at most
    every ``check_seconds``): a version added while the worker runs applies from its
    ``effective_from``, which `revloop stores settings` puts far enough ahead for every worker
    to have read it. A file that fails to load keeps the last good settings (and is logged)."""

    def __init__(self, path: Path, defaults: Settings, check_seconds: float) -> None:
        self._file = CheckedFile(
            path,
            lambda p: StoreSettings(defaults, settings_histories(p)),
            check_seconds,
            "settings",
        )

    @property
    def current(self) -> StoreSettings:
        return self._file.value
