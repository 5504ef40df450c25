"""Attribution rules (pure): windows, the confidence rule, credit splits, the holdout."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.attribution import (
    AttributionRules,
    Model,
    Touch,
    TouchKind,
    confidence,
    credits,
    in_holdout,
    in_window,
)

ORDER_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOOKBACK = {
    TouchKind.AD_CLICK: timedelta(days=30),
    TouchKind.AD_VIEW: timedelta(days=1),
    TouchKind.ENGAGED_VIEW: timedelta(days=3),
    TouchKind.CONTENT_VIEW: timedelta(days=7),
}


def rules(model: Model = Model.LINEAR, holdout_bp: int = 0) -> AttributionRules:
    return AttributionRules(
        lookback=LOOKBACK,
        incremental_at_bp=7000,
        model=model,
        time_decay_half_life=timedelta(days=7),
        holdout_bp=holdout_bp,
    )


def touch(n: int, kind: TouchKind, days_before: float, campaign: str | None = "c1") -> Touch:
    return Touch(f"t{n}", kind, ORDER_AT - timedelta(days=days_before), campaign, "meta")


def test_each_kind_counts_within_its_own_window_and_never_after_the_order() -> None:
    touches = [
        touch(1, TouchKind.AD_CLICK, 29.9),
        touch(2, TouchKind.AD_CLICK, 30.1),
        touch(3, TouchKind.AD_VIEW, 0.9),
        touch(4, TouchKind.AD_VIEW, 1.1),
        touch(5, TouchKind.ENGAGED_VIEW, 3.0),
        touch(6, TouchKind.CONTENT_VIEW, 7.5),
        touch(7, TouchKind.AD_CLICK, -0.01),  # after the order
    ]
    assert [t.touchpoint_id for t in in_window(touches, ORDER_AT, rules())] == ["t1", "t5", "t3"]


def test_the_seeds_confidence_rule_in_basis_points() -> None:
    counted = [touch(1, TouchKind.AD_CLICK, 2)]
    assert confidence([], first_order=True, promoted_items=[]).bp == 0
    assert confidence(counted, first_order=False, promoted_items=[]).bp == 5000
    first = confidence(counted, first_order=True, promoted_items=[])
    assert (first.bp, first.signals) == (10000, ("touchpoint_in_window", "acquired_via_campaign"))
    organic_touch = [touch(1, TouchKind.CONTENT_VIEW, 2, campaign=None)]
    assert confidence(organic_touch, first_order=True, promoted_items=[]).bp == 5000
    promoted = confidence(counted, first_order=False, promoted_items=["p1"])
    assert (promoted.bp, promoted.signals[-1]) == (8000, "promoted_item:p1")
    assert confidence([], first_order=False, promoted_items=["p1", "p2", "p3", "p4"]).bp == 10000


def test_the_models_on_one_journey() -> None:
    journey = [
        touch(1, TouchKind.AD_VIEW, 0.9),
        touch(2, TouchKind.AD_CLICK, 10),
        touch(3, TouchKind.AD_CLICK, 5),
        touch(4, TouchKind.CONTENT_VIEW, 0.5),
    ]
    counted = in_window(journey, ORDER_AT, rules())
    assert [t.touchpoint_id for t in counted] == ["t2", "t3", "t1", "t4"]

    def split(model: Model) -> list[tuple[str, int, int]]:
        return [
            (c.touch.touchpoint_id, c.weight_bp, c.amount_minor)
            for c in credits(counted, ORDER_AT, 10_001, rules(model))
        ]

    assert split(Model.LAST_CLICK) == [("t3", 10000, 10_001)]
    assert split(Model.FIRST_CLICK) == [("t2", 10000, 10_001)]
    assert split(Model.LINEAR) == [
        ("t2", 2500, 2501),
        ("t3", 2500, 2500),
        ("t1", 2500, 2500),
        ("t4", 2500, 2500),
    ]
    assert split(Model.POSITION_BASED) == [
        ("t2", 4000, 4001),
        ("t3", 1000, 1000),
        ("t1", 1000, 1000),
        ("t4", 4000, 4000),
    ]
    decay = split(Model.TIME_DECAY)
    assert [bp for _, bp, _ in decay] == sorted(bp for _, bp, _ in decay)  # newer weighs more
    # 10 and 5 days old, five sevenths of a half-life apart.
    assert decay[1][1] / decay[0][1] == pytest.approx(2 ** (5 / 7), rel=0.002)


def test_without_a_click_the_click_models_credit_the_touch_in_its_place() -> None:
    views = [touch(1, TouchKind.AD_VIEW, 0.8), touch(2, TouchKind.AD_VIEW, 0.2)]
    assert [c.touch.touchpoint_id for c in credits(views, ORDER_AT, 100, rules())] == ["t1", "t2"]
    last = credits(views, ORDER_AT, 100, rules(Model.LAST_CLICK))
    assert [(c.touch.touchpoint_id, c.amount_minor) for c in last] == [("t2", 100)]


def test_settings_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError, match="every touch kind"):
        AttributionRules({}, 7000, Model.LINEAR, timedelta(days=7), 0)
    with pytest.raises(ValueError, match="incremental_at_bp"):
        AttributionRules(LOOKBACK, 10_001, Model.LINEAR, timedelta(days=7), 0)
    with pytest.raises(ValueError, match="holdout_bp"):
        AttributionRules(LOOKBACK, 7000, Model.LINEAR, timedelta(days=7), -1)


touches = st.lists(
    st.builds(
        lambda n, kind, minutes, campaign: Touch(
            f"t{n}", kind, ORDER_AT - timedelta(minutes=minutes), campaign, "meta"
        ),
        st.integers(0, 10**6),
        st.sampled_from(TouchKind),
        st.integers(-60, 60 * 24 * 40),
        st.none() | st.sampled_from(["c1", "c2"]),
    ),
    max_size=12,
    unique_by=lambda t: t.touchpoint_id,
)


@given(touches, st.integers(0, 10**10), st.sampled_from(Model))
def test_the_credits_sum_exactly_to_the_incremental_revenue(
    journey: list[Touch], amount: int, model: Model
) -> None:
    counted = in_window(journey, ORDER_AT, rules(model))
    split = credits(counted, ORDER_AT, amount, rules(model))
    if counted:
        assert sum(c.amount_minor for c in split) == amount
        assert sum(c.weight_bp for c in split) == 10000
    else:
        assert split == []


@given(touches, st.booleans(), st.lists(st.sampled_from(["p1", "p2", "p3"]), max_size=8))
def test_confidence_stays_within_0_and_10000(
    journey: list[Touch], first_order: bool, promoted: list[str]
) -> None:
    scored = confidence(
        in_window(journey, ORDER_AT, rules()), first_order=first_order, promoted_items=promoted
    )
    assert 0 <= scored.bp <= 10000


@given(touches, st.sampled_from(Model), st.randoms())
def test_the_split_does_not_depend_on_the_order_touches_arrive_in(
    journey: list[Touch], model: Model, rnd: random.Random
) -> None:
    shuffled = list(journey)
    rnd.shuffle(shuffled)
    a = credits(in_window(journey, ORDER_AT, rules(model)), ORDER_AT, 9_999, rules(model))
    b = credits(in_window(shuffled, ORDER_AT, rules(model)), ORDER_AT, 9_999, rules(model))
    assert a == b


def test_the_holdout_is_stable_and_near_its_share() -> None:
    keys = [f"key-{n}" for n in range(20_000)]
    held = [k for k in keys if in_holdout(k, 1000)]
    assert 0.09 < len(held) / len(keys) < 0.11
    assert held == [k for k in keys if in_holdout(k, 1000)]
    assert not any(in_holdout(k, 0) for k in keys[:1000])
    assert all(in_holdout(k, 10000) for k in keys[:1000])
    # A larger share keeps everyone the smaller one held out.
    assert set(held) <= {k for k in keys if in_holdout(k, 2500)}
