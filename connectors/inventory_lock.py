"""The multichannel inventory lock's rules, pure (docs/connectors.md, "Multichannel lock").

A product that sells out on one channel is set to 0 on the store's other channels, and put
back when it is restocked. Several breakers (a product's, a variant's) may lock one item at
once, as with ad holds. The first lock records the item's level; only an item with stock is set
to 0. The last unlock puts the recorded level back, but only if the channel still shows 0: a
level someone set there meanwhile (a restock on that channel) is theirs and stays. A lock or
unlock seen again (a redelivered action) changes nothing but a repeat of what it set.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Lock:
    """An item on another channel held at 0 by revloop: who holds it, and its level before."""

    holders: frozenset[str]
    level_before: int


def on_lock(lock: Lock | None, holder: str, current: int) -> tuple[Lock, bool]:
    """The lock after ``holder`` locks an item showing ``current``, and whether it must be set
    to 0 now: by the first holder when it had stock, or again by a holder seen before (a
    redelivery after a crash between its record and its call)."""
    if lock is None:
        return Lock(frozenset({holder}), current), current > 0
    again = holder in lock.holders
    return replace(lock, holders=lock.holders | {holder}), again and lock.level_before > 0


def on_unlock(lock: Lock | None, holder: str, current: int) -> tuple[Lock | None, int | None]:
    """The lock after ``holder`` unlocks (None: released), and the level to set now, if any."""
    if lock is None or holder not in lock.holders:
        return lock, None
    left = lock.holders - {holder}
    if left:
        return replace(lock, holders=left), None
    restore = lock.level_before > 0 and current == 0
    return None, lock.level_before if restore else None
