"""The circuit breaker's state machine (pure): examples and hypothesis properties."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.circuit_breaker import (
    BreakerRules,
    BreakerState,
    Decision,
    Transition,
    advance,
    observe,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = BreakerRules(out_of_stock_at=0, restock_at=1, low_stock_below=5, dwell=timedelta(minutes=5))


def run(
    observations: list[tuple[int, int]], rules: BreakerRules = RULES, ticks: Sequence[int] = ()
) -> list[Decision]:
    """Feed (minute, available) observations, advancing stream time to each minute in ``ticks``
    on the way; every decision in order."""
    state, decisions = BreakerState(), []
    pending = sorted(ticks)
    for minute, available in observations:
        while pending and pending[0] <= minute:
            state, out = advance(state, T0 + timedelta(minutes=pending.pop(0)), rules)
            decisions += out
        state, out = observe(state, available, T0 + timedelta(minutes=minute), rules)
        decisions += out
    for minute in pending:
        state, out = advance(state, T0 + timedelta(minutes=minute), rules)
        decisions += out
    return decisions


def kinds(decisions: list[Decision]) -> list[tuple[str, int]]:
    return [(d.transition.value, int((d.at - T0).total_seconds() // 60)) for d in decisions]


def test_it_pauses_on_selling_out_and_resumes_on_restock_after_the_dwell() -> None:
    decisions = run([(0, 10), (1, 3), (2, 0), (10, 8)])
    assert kinds(decisions) == [("low_stock", 1), ("pause", 2), ("resume", 10)]
    pause, resume = decisions[1], decisions[2]
    assert (pause.available, pause.previous_available) == (0, 3)
    assert (resume.available, resume.previous_available) == (8, 0)


def test_a_restock_inside_the_dwell_resumes_when_the_dwell_ends() -> None:
    # Restocked one minute after selling out: the resume waits for minute 2 + 5.
    assert kinds(run([(2, 0), (3, 9)])) == [("pause", 2)]
    assert kinds(run([(2, 0), (3, 9)], ticks=[6])) == [("pause", 2)]
    assert kinds(run([(2, 0), (3, 9)], ticks=[7])) == [("pause", 2), ("resume", 7)]
    # The next update after the dwell resumes as of the dwell's end, not of the update.
    assert kinds(run([(2, 0), (3, 9), (30, 9)])) == [("pause", 2), ("resume", 7)]


def test_selling_out_again_inside_the_dwell_keeps_it_paused() -> None:
    assert kinds(run([(2, 0), (3, 9), (4, 0), (20, 0)], ticks=[8, 15])) == [("pause", 2)]


def test_a_stale_observation_changes_nothing() -> None:
    state, _ = observe(BreakerState(), 0, T0 + timedelta(minutes=5), RULES)
    assert observe(state, 50, T0, RULES) == (state, [])


def test_thresholds_that_would_flap_are_refused() -> None:
    with pytest.raises(ValueError, match="restock_at"):
        BreakerRules(out_of_stock_at=2, restock_at=2, low_stock_below=None, dwell=timedelta(0))
    with pytest.raises(ValueError, match="low_stock_below"):
        BreakerRules(out_of_stock_at=2, restock_at=3, low_stock_below=1, dwell=timedelta(0))


observations = st.lists(
    st.tuples(st.integers(0, 200), st.integers(-3, 12)), min_size=1, max_size=40
).map(lambda obs: sorted(obs, key=lambda o: o[0]))
rules = st.builds(
    lambda oos, gap, low, dwell: BreakerRules(
        out_of_stock_at=oos,
        restock_at=oos + gap,
        low_stock_below=None if low is None else oos + low,
        dwell=timedelta(minutes=dwell),
    ),
    st.integers(-1, 3),
    st.integers(1, 4),
    st.none() | st.integers(1, 6),
    st.integers(0, 20),
)


@given(observations, rules)
def test_pauses_and_resumes_alternate_starting_with_a_pause(
    obs: list[tuple[int, int]], r: BreakerRules
) -> None:
    flips = [d.transition for d in run(obs, r) if d.transition is not Transition.LOW_STOCK]
    assert flips == [Transition.PAUSE, Transition.RESUME] * (len(flips) // 2) + (
        [Transition.PAUSE] if len(flips) % 2 else []
    )


@given(observations, rules, st.lists(st.integers(0, 220), max_size=30))
def test_the_decisions_do_not_depend_on_how_often_time_advances(
    obs: list[tuple[int, int]], r: BreakerRules, ticks: list[int]
) -> None:
    last = obs[-1][0]
    # Ticks up to the last observation only: a tick after it may legitimately emit a resume.
    early = [t for t in ticks if t <= last]
    assert run(obs, r, early) == run(obs, r)


@given(observations, rules)
def test_it_is_paused_exactly_when_sold_out_or_inside_the_dwell_or_not_yet_restocked(
    obs: list[tuple[int, int]], r: BreakerRules
) -> None:
    state = BreakerState()
    for minute, available in obs:
        state, _ = observe(state, available, T0 + timedelta(minutes=minute), r)
        if available <= r.out_of_stock_at:
            assert state.paused
        if available >= r.restock_at and state.paused:
            assert state.paused_at is not None
            assert T0 + timedelta(minutes=minute) < state.paused_at + r.dwell
    # Far enough in the future, a restocked product runs again and a sold-out one stays paused;
    # between the two thresholds it keeps whichever it had.
    state, _ = advance(state, T0 + timedelta(days=1), r)
    assert state.available is not None
    if state.available >= r.restock_at:
        assert not state.paused
    if state.available <= r.out_of_stock_at:
        assert state.paused
