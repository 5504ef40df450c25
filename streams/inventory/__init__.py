"""Inventory state per store and item: levels per location, folded in any order."""

from streams.inventory.item_stock import (
    ItemStock,
    LevelUpdate,
    LocationStock,
    Method,
    apply,
    settle,
)

__all__ = ["ItemStock", "LevelUpdate", "LocationStock", "Method", "apply", "settle"]
