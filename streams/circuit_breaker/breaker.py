"""The circuit breaker for one product (or variant): pause its ads when it sells out, resume them
when it is back in stock. Pure: totals and event times in, decisions out.

- It **opens** (pause) when the available total falls to ``out_of_stock_at`` or below.
- It **closes** (resume) when the total is back at ``restock_at`` or above, but not before
  ``dwell`` has passed since it opened, so a product flickering around zero does not flap its
  ads. A restock inside the dwell resumes when the dwell ends, as of that instant.
- A **low-stock** warning fires once when the total falls below ``low_stock_below``, and is
  armed again when the total is back at or above it.

Time is event time (the inventory update's ``occurred_at``), never the wall clock, so a replay
of the same updates yields the same decisions at the same instants. :func:`advance` applies the
passing of stream time (a dwell ending); :func:`observe` calls it first, so the decisions do not
depend on how often the runtime advances time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Transition(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    LOW_STOCK = "low_stock"


@dataclass(frozen=True)
class BreakerRules:
    """One store's thresholds (settings per store; see docs/streams.md)."""

    out_of_stock_at: int
    restock_at: int
    low_stock_below: int | None
    dwell: timedelta

    def __post_init__(self) -> None:
        if self.restock_at <= self.out_of_stock_at:
            raise ValueError("restock_at must be above out_of_stock_at, or the breaker would flap")
        if self.low_stock_below is not None and self.low_stock_below <= self.out_of_stock_at:
            raise ValueError("low_stock_below must be above out_of_stock_at")
        if self.dwell < timedelta(0):
            raise ValueError("dwell must not be negative")


@dataclass(frozen=True)
class BreakerState:
    paused: bool = False
    available: int | None = None
    """The last total observed, as of ``as_of``."""
    as_of: datetime | None = None
    paused_at: datetime | None = None
    low_stock_warned: bool = False


@dataclass(frozen=True)
class Decision:
    transition: Transition
    at: datetime
    """The event time the transition takes effect."""
    available: int
    previous_available: int | None
    reason: str


def advance(
    state: BreakerState, now: datetime, rules: BreakerRules
) -> tuple[BreakerState, list[Decision]]:
    """Stream time has reached ``now``: resume if a restock was waiting for the dwell to end."""
    if not state.paused or state.available is None or state.available < rules.restock_at:
        return state, []
    assert state.paused_at is not None
    due = state.paused_at + rules.dwell
    if now < due:
        return state, []
    at = max(due, state.as_of or due)
    resumed = replace(state, paused=False, paused_at=None)
    reason = f"back in stock: {state.available} available (threshold {rules.restock_at})"
    return resumed, [Decision(Transition.RESUME, at, state.available, None, reason)]


def observe(
    state: BreakerState, available: int, at: datetime, rules: BreakerRules
) -> tuple[BreakerState, list[Decision]]:
    """The product's total is ``available`` as of ``at``. An observation older than the last
    one changes nothing (the inventory table already drops stale updates; this holds anyway)."""
    if state.as_of is not None and at < state.as_of:
        return state, []
    state, decisions = advance(state, at, rules)
    previous = state.available
    state = replace(state, available=available, as_of=at)
    if not state.paused and available <= rules.out_of_stock_at:
        state = replace(state, paused=True, paused_at=at)
        reason = f"sold out: {available} available (threshold {rules.out_of_stock_at})"
        decisions.append(Decision(Transition.PAUSE, at, available, previous, reason))
    elif state.paused and available >= rules.restock_at:
        state, resumed = advance(state, at, rules)
        decisions += [replace(d, previous_available=previous) for d in resumed]
    if rules.low_stock_below is not None:
        low = available < rules.low_stock_below
        if low and not state.low_stock_warned and not state.paused:
            reason = f"low stock: {available} available (below {rules.low_stock_below})"
            decisions.append(Decision(Transition.LOW_STOCK, at, available, previous, reason))
        state = replace(state, low_stock_warned=low)
    return state, decisions


# -- as JSON, for the runtime's state store ------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def state_to_json(state: BreakerState) -> dict[str, object]:
    return {
        "paused": state.paused,
        "available": state.available,
        "as_of": _iso(state.as_of),
        "paused_at": _iso(state.paused_at),
        "low_stock_warned": state.low_stock_warned,
    }


def state_from_json(value: dict[str, Any]) -> BreakerState:
    return BreakerState(
        paused=bool(value["paused"]),
        available=value["available"],
        as_of=_instant(value["as_of"]),
        paused_at=_instant(value["paused_at"]),
        low_stock_warned=bool(value["low_stock_warned"]),
    )
