"""Exact money arithmetic: splitting an amount of minor units by weights.

Amounts are integers in a currency's minor units (never floats). A split must give parts that
sum exactly to the whole, deterministically, so that attribution credits and ledger postings
trace back cent by cent and a replay produces the same parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction


def allocate(total_minor: int, weights: Sequence[int | Fraction]) -> list[int]:
    """``total_minor`` split in proportion to ``weights``, by largest remainder.

    Each part first gets the floor of its exact share; the minor units left over go one each to
    the parts with the largest remainders, ties to the earlier part. The parts sum exactly to
    ``total_minor``, and a part whose weight is 0 gets 0. A negative total (a reversal) is split
    as the negation of its positive split, so a reversal undoes its original exactly.
    """
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    whole = sum(weights, Fraction(0))
    if not weights or whole == 0:
        raise ValueError("at least one weight must be positive")
    if total_minor < 0:
        return [-part for part in allocate(-total_minor, weights)]
    shares = [Fraction(total_minor) * w / whole for w in weights]
    parts = [int(share) for share in shares]  # floor: shares are not negative
    left = total_minor - sum(parts)
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return parts


def half_even(value: Fraction) -> int:
    """The nearest integer, a half to the even one (banker's rounding), exactly."""
    floor = value.numerator // value.denominator
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return floor
