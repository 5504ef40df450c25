"""Attribution rules, pure: which touches count for an order, how confident revloop is that its
marketing earned the order, and how the credit splits across the touches.

Confidence is in basis points (the seeds' 0.5 / 0.5 / 0.3 rule, exactly):

- +5000 if any touchpoint falls inside its kind's lookback window before the order;
- +5000 if the customer was acquired through a campaign (their first order, after a campaign
  touch inside the window);
- +3000 for each line item whose product a running campaign promotes;

capped at 10000. The order is incremental at the store's threshold (default 7000) or above.

Credit splits in integer minor units by largest remainder (:func:`revloop.money.allocate`), so
the parts always sum to the whole. Every input is event data (touch and order times, never the
wall clock), so a replay of the same events gives the same score.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from revloop.money import allocate

FULL_CONFIDENCE_BP = 10_000
TOUCH_IN_WINDOW_BP = 5_000
ACQUIRED_VIA_CAMPAIGN_BP = 5_000
PROMOTED_ITEM_BP = 3_000


class TouchKind(StrEnum):
    """The Touchpoint contract's kinds."""

    AD_CLICK = "ad_click"
    AD_VIEW = "ad_view"
    ENGAGED_VIEW = "engaged_view"
    CONTENT_VIEW = "content_view"


class Model(StrEnum):
    """The AttributionScore contract's models."""

    LAST_CLICK = "last_click"
    FIRST_CLICK = "first_click"
    LINEAR = "linear"
    TIME_DECAY = "time_decay"
    POSITION_BASED = "position_based"


@dataclass(frozen=True)
class Touch:
    touchpoint_id: str
    kind: TouchKind
    at: datetime
    campaign_id: str | None
    channel: str


@dataclass(frozen=True)
class AttributionRules:
    """One store's attribution settings."""

    lookback: Mapping[TouchKind, timedelta]
    incremental_at_bp: int
    model: Model
    time_decay_half_life: timedelta
    holdout_bp: int
    """The share of customers held out as a control group, in basis points."""

    def __post_init__(self) -> None:
        if set(self.lookback) != set(TouchKind):
            raise ValueError("lookback needs a window for every touch kind")
        if not 0 <= self.incremental_at_bp <= FULL_CONFIDENCE_BP:
            raise ValueError("incremental_at_bp must be within 0..10000")
        if not 0 <= self.holdout_bp <= FULL_CONFIDENCE_BP:
            raise ValueError("holdout_bp must be within 0..10000")
        if self.time_decay_half_life <= timedelta(0):
            raise ValueError("time_decay_half_life must be positive")


RulesAt = Callable[[datetime], AttributionRules]
"""A store's rules over time: those in effect at an event time (revloop/stores/)."""


@dataclass(frozen=True)
class Confidence:
    bp: int
    signals: tuple[str, ...]


@dataclass(frozen=True)
class Credit:
    touch: Touch
    weight_bp: int
    amount_minor: int


def in_window(touches: Sequence[Touch], order_at: datetime, rules: AttributionRules) -> list[Touch]:
    """The touches that count for an order at ``order_at``: at or before it, within their kind's
    lookback; oldest first (ties by touchpoint id, so the order is total)."""
    counted = [t for t in touches if t.at <= order_at and order_at - t.at <= rules.lookback[t.kind]]
    return sorted(counted, key=lambda t: (t.at, t.touchpoint_id))


def confidence(
    counted: Sequence[Touch], *, first_order: bool, promoted_items: Sequence[str]
) -> Confidence:
    """The seeds' rule in basis points. ``promoted_items`` are the order's line items (by
    product id) that a running campaign promotes, one entry per line item."""
    bp, signals = 0, []
    if counted:
        bp += TOUCH_IN_WINDOW_BP
        signals.append("touchpoint_in_window")
    if first_order and any(t.campaign_id for t in counted):
        bp += ACQUIRED_VIA_CAMPAIGN_BP
        signals.append("acquired_via_campaign")
    for product_id in promoted_items:
        bp += PROMOTED_ITEM_BP
        signals.append(f"promoted_item:{product_id}")
    return Confidence(min(bp, FULL_CONFIDENCE_BP), tuple(signals))


def weights(
    counted: Sequence[Touch], order_at: datetime, model: Model, half_life: timedelta
) -> list[int | Fraction]:
    """Each counted touch's weight under ``model`` (in :func:`in_window`'s order)."""
    n = len(counted)
    if n == 0:
        return []
    clicks = [i for i, t in enumerate(counted) if t.kind is TouchKind.AD_CLICK]
    if model is Model.LAST_CLICK or model is Model.FIRST_CLICK:
        # The click the model names; with no click at all, the touch in its place.
        pool = clicks or list(range(n))
        chosen = pool[-1] if model is Model.LAST_CLICK else pool[0]
        return [int(i == chosen) for i in range(n)]
    if model is Model.LINEAR:
        return [1] * n
    if model is Model.TIME_DECAY:
        # 2^(-age / half-life), scaled to integers so the split is exact arithmetic from here.
        ages = [(order_at - t.at) / half_life for t in counted]
        return [max(1, round(math.ldexp(2.0 ** (-age), 40))) for age in ages]
    if n <= 2:
        return [1] * n
    middle = Fraction(20, 100 * (n - 2))
    return [Fraction(40, 100), *([middle] * (n - 2)), Fraction(40, 100)]


def credits(
    counted: Sequence[Touch],
    order_at: datetime,
    incremental_minor: int,
    rules: AttributionRules,
) -> list[Credit]:
    """The split of ``incremental_minor`` over the counted touches: weights in basis points
    that sum to 10000, and amounts that sum to ``incremental_minor``. Touches with no share
    (e.g. the views under last click) are left out."""
    ws = weights(counted, order_at, rules.model, rules.time_decay_half_life)
    if not ws:
        return []
    bps = allocate(FULL_CONFIDENCE_BP, ws)
    amounts = allocate(incremental_minor, ws)
    return [
        Credit(touch, bp, amount)
        for touch, w, bp, amount in zip(counted, ws, bps, amounts, strict=True)
        if w
    ]


def in_holdout(customer_key: str, holdout_bp: int) -> bool:
    """Whether a customer is in the control group: a stable hash of the (already salted)
    customer key, so the same customer is always on the same side."""
    digest = hashlib.sha256(b"revloop/holdout/" + customer_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % FULL_CONFIDENCE_BP < holdout_bp
