"""Which breakers hold an ad object paused, and what a pause or resume must change: pure
(docs/connectors.md, "Pause and resume").

A campaign may promote several products, so several breakers (a product's, or one of its
variants') can hold the same ad object paused at once. The first pause records the status the
object had; only an object that was running is paused. A resume releases one holder, and the
object runs again only when no holder is left and it was running before the first pause: an
ad the merchant had paused stays paused. A pause or resume seen again (a redelivered action)
changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


def holder_of(action: Mapping[str, Any]) -> str:
    """The breaker a CircuitBreakerAction speaks for: ``<product>/<variant>``, ``*`` for the
    whole product. Its pauses and resumes hold and release ad objects under this name."""
    return f"{action['product_id']}/{action.get('variant_id') or '*'}"


RUNNING = frozenset({"ACTIVE", "ENABLED"})
"""Statuses of a running object (Meta's and Google's words)."""


@dataclass(frozen=True)
class Hold:
    """An ad object paused by revloop: who holds it, and its status before the first pause."""

    holders: frozenset[str]
    status_before: str

    @property
    def was_running(self) -> bool:
        return self.status_before in RUNNING


def on_pause(hold: Hold | None, holder: str, current: str) -> tuple[Hold, bool]:
    """The hold after ``holder`` pauses an object whose status is ``current``, and whether the
    object must be set paused now: by the first holder, or again by a holder seen before (a
    redelivery after a crash that may have come between its hold and its call; setting it is
    idempotent). A further holder finds it paused already."""
    if hold is None:
        hold = Hold(frozenset({holder}), current)
        return hold, hold.was_running
    again = holder in hold.holders
    return replace(hold, holders=hold.holders | {holder}), again and hold.was_running


def on_resume(hold: Hold | None, holder: str) -> tuple[Hold | None, bool]:
    """The hold after ``holder`` resumes (None: released), and whether the object must run
    again now."""
    if hold is None or holder not in hold.holders:
        return hold, False
    left = hold.holders - {holder}
    if left:
        return replace(hold, holders=left), False
    return None, hold.was_running
