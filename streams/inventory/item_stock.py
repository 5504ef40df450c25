"""The stock of one inventory item, folded from its level updates. Pure.

Each location holds the last absolute level (a snapshot) and the relative adjustments made
after it (BigCommerce sends changes, not levels):

- an absolute update newer than the snapshot replaces it, and drops the adjustments it already
  includes (those before it);
- a relative update after the snapshot is kept, once, by its event id; one before the snapshot
  is already counted in it and changes nothing;
- a duplicate changes nothing, and neither does an update older than the snapshot.

"Newer" compares the source's change time (``occurred_at``), ties broken by event id, so the
result depends only on which updates arrived, never on their order: a replay, or a redelivery
out of order, ends in the same stock. :func:`settle` folds adjustments older than a horizon into
the snapshot, bounding the state; an update older than the horizon that arrives after it is
stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

Stamp = tuple[datetime, str]
"""When a change happened at the source, and its event id: a total order of updates."""


class Method(StrEnum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"


@dataclass(frozen=True)
class LevelUpdate:
    event_id: str
    location_id: str
    method: Method
    quantity: int
    at: datetime

    @property
    def stamp(self) -> Stamp:
        return (self.at, self.event_id)


@dataclass(frozen=True)
class LocationStock:
    snapshot: int | None = None
    """The last absolute level; None until one arrives (adjustments count from 0)."""
    snapshot_stamp: Stamp | None = None
    adjustments: tuple[tuple[Stamp, int], ...] = ()
    """Relative changes after the snapshot, by stamp (sorted, unique)."""

    @property
    def available(self) -> int:
        return (self.snapshot or 0) + sum(delta for _, delta in self.adjustments)

    @property
    def updated_at(self) -> datetime | None:
        stamps = [s for s, _ in self.adjustments]
        if self.snapshot_stamp is not None:
            stamps.append(self.snapshot_stamp)
        return max(stamps)[0] if stamps else None


@dataclass(frozen=True)
class ItemStock:
    locations: tuple[tuple[str, LocationStock], ...] = field(default=())
    """By location id (sorted)."""

    @property
    def available(self) -> int:
        return sum(location.available for _, location in self.locations)

    @property
    def updated_at(self) -> datetime | None:
        """The source time of the newest update any location has taken."""
        times = [t for _, location in self.locations if (t := location.updated_at)]
        return max(times) if times else None

    def location(self, location_id: str) -> LocationStock:
        return dict(self.locations).get(location_id, LocationStock())


def apply(stock: ItemStock, update: LevelUpdate) -> ItemStock:
    """The stock after ``update`` (the same stock when it is stale or a duplicate)."""
    before = stock.location(update.location_id)
    after = _apply(before, update)
    if after == before:
        return stock
    locations = dict(stock.locations)
    locations[update.location_id] = after
    return ItemStock(tuple(sorted(locations.items())))


def _apply(location: LocationStock, update: LevelUpdate) -> LocationStock:
    stamp = update.stamp
    if location.snapshot_stamp is not None and stamp <= location.snapshot_stamp:
        return location  # stale, or the snapshot itself again
    if update.method is Method.ABSOLUTE:
        later = tuple((s, d) for s, d in location.adjustments if s > stamp)
        return LocationStock(update.quantity, stamp, later)
    if any(s == stamp for s, _ in location.adjustments):
        return location  # this adjustment again
    return replace(
        location, adjustments=tuple(sorted((*location.adjustments, (stamp, update.quantity))))
    )


def settle(stock: ItemStock, horizon: datetime) -> ItemStock:
    """The same levels, with every update from before ``horizon`` settled: adjustments before
    it fold into the snapshot, and any update older than it that arrives later is stale."""
    floor: Stamp = (horizon, "")
    locations = []
    for location_id, location in stock.locations:
        if location.snapshot_stamp is None or location.snapshot_stamp < floor:
            old = sum(d for s, d in location.adjustments if s < floor)
            location = LocationStock(
                (location.snapshot or 0) + old,
                floor,
                tuple((s, d) for s, d in location.adjustments if s >= floor),
            )
        locations.append((location_id, location))
    return ItemStock(tuple(locations))


# -- as JSON, for the runtime's state store ------------------------------------------------------


def _stamp_json(stamp: Stamp) -> list[str]:
    return [stamp[0].isoformat(), stamp[1]]


def _stamp(value: list[str]) -> Stamp:
    return (datetime.fromisoformat(value[0]), value[1])


def stock_to_json(stock: ItemStock) -> dict[str, object]:
    return {
        location_id: {
            "snapshot": location.snapshot,
            "stamp": None
            if location.snapshot_stamp is None
            else _stamp_json(location.snapshot_stamp),
            "adjustments": [[_stamp_json(s), d] for s, d in location.adjustments],
        }
        for location_id, location in stock.locations
    }


def stock_from_json(value: dict[str, Any]) -> ItemStock:
    return ItemStock(
        tuple(
            sorted(
                (
                    location_id,
                    LocationStock(
                        entry["snapshot"],
                        None if entry["stamp"] is None else _stamp(entry["stamp"]),
                        tuple((_stamp(s), int(d)) for s, d in entry["adjustments"]),
                    ),
                )
                for location_id, entry in value.items()
            )
        )
    )
