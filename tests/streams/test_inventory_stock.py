"""Inventory stock folded from level updates (pure): examples and order-independence."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from streams.inventory import ItemStock, LevelUpdate, Method, apply, settle

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def update(n: int, minute: int, method: Method, quantity: int, location: str = "l1") -> LevelUpdate:
    return LevelUpdate(f"e{n}", location, method, quantity, T0 + timedelta(minutes=minute))


def fold(updates: list[LevelUpdate], stock: ItemStock | None = None) -> ItemStock:
    stock = stock or ItemStock()
    for u in updates:
        stock = apply(stock, u)
    return stock


A, R = Method.ABSOLUTE, Method.RELATIVE


def test_absolute_levels_replace_and_relative_changes_add() -> None:
    stock = fold([update(1, 0, A, 10), update(2, 1, R, -3), update(3, 2, R, -2)])
    assert stock.available == 5
    # A newer snapshot replaces the level and everything before it.
    assert fold([update(4, 3, A, 40)], stock).available == 40
    # Changes after the snapshot still count, whenever they arrive.
    assert fold([update(5, 4, R, -1), update(4, 3, A, 40)], stock).available == 39


def test_stale_and_duplicate_updates_change_nothing() -> None:
    stock = fold([update(1, 5, A, 10), update(2, 6, R, -1)])
    assert apply(stock, update(0, 4, A, 99)) == stock  # older than the snapshot
    assert apply(stock, update(3, 1, R, -7)) == stock  # a change the snapshot includes
    assert apply(stock, update(2, 6, R, -1)) == stock  # the same change again
    assert apply(stock, update(1, 5, A, 10)) == stock


def test_locations_add_up_and_each_keeps_its_own_time() -> None:
    stock = fold(
        [update(1, 0, A, 4, "east"), update(2, 9, A, 6, "west"), update(3, 2, R, 1, "east")]
    )
    assert stock.available == 11
    assert stock.location("east").updated_at == T0 + timedelta(minutes=2)
    assert stock.location("west").updated_at == T0 + timedelta(minutes=9)
    assert stock.location("north").available == 0


def test_settling_folds_old_changes_and_keeps_the_level() -> None:
    stock = fold([update(1, 0, R, 5), update(2, 1, R, -2), update(3, 30, R, 4)])
    settled = settle(stock, T0 + timedelta(minutes=10))
    assert settled.available == stock.available == 7
    assert len(settled.location("l1").adjustments) == 1
    # A change from before the horizon that arrives after settling is stale.
    assert apply(settled, update(9, 5, R, 100)) == settled


updates = st.lists(
    st.builds(
        update,
        st.integers(0, 30),  # repeated ids with other fields stand for conflicting redeliveries
        st.integers(0, 60),
        st.sampled_from(Method),
        st.integers(-20, 50),
        st.sampled_from(["l1", "l2"]),
    ),
    max_size=25,
).map(lambda us: list({u.event_id: u for u in us}.values()))  # an event id names one update


@given(updates, st.randoms())
def test_any_order_of_the_same_updates_ends_in_the_same_stock(
    us: list[LevelUpdate], rnd: random.Random
) -> None:
    shuffled = list(us)
    rnd.shuffle(shuffled)
    with_duplicates = shuffled + rnd.sample(us, k=min(len(us), 5))
    assert fold(with_duplicates) == fold(us)


@given(updates)
def test_the_level_is_the_last_snapshot_plus_the_changes_after_it(us: list[LevelUpdate]) -> None:
    for location in ("l1", "l2"):
        mine = sorted((u for u in us if u.location_id == location), key=lambda u: u.stamp)
        snapshots = [u for u in mine if u.method is Method.ABSOLUTE]
        base = snapshots[-1] if snapshots else None
        expected = (base.quantity if base else 0) + sum(
            u.quantity
            for u in mine
            if u.method is Method.RELATIVE and (not base or u.stamp > base.stamp)
        )
        assert fold(us).location(location).available == expected


@given(updates, st.integers(0, 70))
def test_settling_never_changes_a_level(us: list[LevelUpdate], minute: int) -> None:
    stock = fold(us)
    settled = settle(stock, T0 + timedelta(minutes=minute))
    for location in ("l1", "l2"):
        assert settled.location(location).available == stock.location(location).available
    late = update(99, minute - 1, Method.ABSOLUTE, 1000)
    if stock.locations and late.location_id in dict(stock.locations):
        assert apply(settled, late).location("l1") == settled.location("l1")
