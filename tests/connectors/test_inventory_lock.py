"""The multichannel lock's rules: every sequence of locks and unlocks, by any holders, ends with
the item back at its level, unless someone set another level meanwhile."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.inventory_lock import Lock, on_lock, on_unlock


def test_a_lock_zeroes_stock_and_the_last_unlock_restores_it() -> None:
    lock, zero = on_lock(None, "p1/*", 5)
    assert zero and lock == Lock(frozenset({"p1/*"}), 5)
    lock, zero = on_lock(lock, "p1/v2", 0)  # a second breaker finds it at 0 already
    assert not zero and lock.holders == {"p1/*", "p1/v2"}
    lock2, level = on_unlock(lock, "p1/*", 0)
    assert lock2 is not None and level is None  # p1/v2 still holds it
    assert on_unlock(lock2, "p1/v2", 0) == (None, 5)
    # Restocked on that channel meanwhile: its level stays.
    assert on_unlock(lock2, "p1/v2", 3) == (None, None)
    # An item without stock is recorded but never touched.
    empty, zero = on_lock(None, "p2/*", 0)
    assert not zero and on_unlock(empty, "p2/*", 0) == (None, None)
    # A stranger's unlock, and an unlock of nothing, change nothing.
    assert on_unlock(lock, "p9/*", 0) == (lock, None)
    assert on_unlock(None, "p9/*", 0) == (None, None)


@given(
    st.integers(0, 50),
    st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "b", "c"])), max_size=30),
)
def test_every_sequence_ends_where_it_began(level: int, steps: list[tuple[bool, str]]) -> None:
    """Replaying actions in order, with repeats: once every holder that locked has unlocked,
    the channel shows the level it had (nobody else touching it)."""
    lock: Lock | None = None
    shown = level
    locked: set[str] = set()
    for is_lock, holder in steps:
        if is_lock:
            lock, zero = on_lock(lock, holder, shown)
            locked.add(holder)
            if zero:
                shown = 0
        else:
            lock, restore = on_unlock(lock, holder, shown)
            locked.discard(holder)
            if restore is not None:
                shown = restore
        assert (lock is None) == (not locked)
        if locked:
            assert shown == 0
    for holder in sorted(locked):
        lock, restore = on_unlock(lock, holder, shown)
        if restore is not None:
            shown = restore
    assert lock is None and shown == level
