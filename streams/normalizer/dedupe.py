"""The normalizer's dedupe window: which event ids were already emitted, so a retried delivery
and a refund repeated in later order updates are emitted once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

from platforms.events import Emit, RawDelivery


class SeenEvents:
    """Event ids emitted within a time window, oldest first, so a retried delivery (same raw id)
    and a refund repeated in later order updates (same fact id) are emitted once.

    Times are the raw records' ``received_at``: the window follows the data, not the wall
    clock, so rebuilding it from the log gives the same answers as the run that wrote the log.
    """

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._expires: dict[str, datetime] = {}
        self._order: deque[tuple[datetime, str]] = deque()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._expires

    def __len__(self) -> int:
        return len(self._expires)

    def add(self, event_id: str, at: datetime) -> None:
        expires = at + self.window
        if self._expires.get(event_id, expires) <= expires:
            self._expires[event_id] = expires
            self._order.append((expires, event_id))

    def expire(self, now: datetime) -> None:
        while self._order and self._order[0][0] <= now:
            expires, event_id = self._order.popleft()
            if self._expires.get(event_id) == expires:
                del self._expires[event_id]


def first_sightings(
    raw: RawDelivery, events: Iterable[Emit], seen: SeenEvents
) -> tuple[bool, list[Emit]]:
    """Whether this delivery is new, and the events it derives that nobody emitted yet. Marks
    them all as seen."""
    seen.expire(raw.received_at)
    if raw.event_id in seen:
        return False, []
    seen.add(raw.event_id, raw.received_at)
    fresh = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id, raw.received_at)
            fresh.append(event)
    return True, fresh
