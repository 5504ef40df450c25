"""revloop.money.allocate: exact splits of minor units."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revloop.money import allocate

weights = st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20).filter(
    lambda ws: sum(ws) > 0
)
totals = st.integers(min_value=-(10**12), max_value=10**12)


def test_an_even_split_leaves_the_odd_cent_to_the_first_part() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(1000, [1, 1]) == [500, 500]


def test_the_largest_remainder_gets_the_leftover_unit() -> None:
    # Exact shares 16.5, 33.33…, 50.16…: the floors leave one unit, .5 is the largest remainder.
    assert allocate(100, [Fraction(33), Fraction(200, 3), Fraction(301, 3)]) == [17, 33, 50]


def test_a_zero_weight_gets_nothing_and_bad_weights_are_refused() -> None:
    assert allocate(999, [0, 1, 0]) == [0, 999, 0]
    with pytest.raises(ValueError, match="positive"):
        allocate(10, [0, 0])
    with pytest.raises(ValueError, match="positive"):
        allocate(10, [])
    with pytest.raises(ValueError, match="negative"):
        allocate(10, [2, -1])


@given(totals, weights)
def test_the_parts_sum_exactly_to_the_total(total: int, ws: list[int]) -> None:
    parts = allocate(total, ws)
    assert sum(parts) == total
    assert len(parts) == len(ws)


@given(totals, weights)
def test_each_part_is_within_one_unit_of_its_exact_share(total: int, ws: list[int]) -> None:
    for part, w in zip(allocate(total, ws), ws, strict=True):
        assert abs(part - Fraction(total * w, sum(ws))) < 1
        if w == 0:
            assert part == 0


@given(totals, weights)
def test_a_reversal_splits_as_the_negation_of_its_original(total: int, ws: list[int]) -> None:
    assert allocate(-total, ws) == [-part for part in allocate(total, ws)]


@given(st.integers(min_value=0, max_value=10**9), weights, st.integers(1, 50))
def test_scaling_every_weight_changes_nothing(total: int, ws: list[int], k: int) -> None:
    assert allocate(total, [w * k for w in ws]) == allocate(total, ws)
