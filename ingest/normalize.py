"""Raw webhook → canonical events, without Kafka: which platform normalizer runs, what becomes a
dead letter, and which events were already emitted.

``ingest.normalizer`` is the Kafka shell around these functions.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ingest import bigcommerce, shopify, woocommerce
from ingest.canonical import (
    EVENTS,
    Emit,
    NormalizeContext,
    NotNormalizable,
    RawDelivery,
    Skip,
)
from ingest.webhooks import deterministic_id
from revloop.text import invalid_text_at, may_hold_surrogates

PlatformNormalizer = Callable[[RawDelivery, NormalizeContext], "list[Emit] | Skip"]

NORMALIZERS: Mapping[str, PlatformNormalizer] = {
    "shopify": shopify.normalize,
    "woocommerce": woocommerce.normalize,
    "bigcommerce": bigcommerce.normalize,
}
_MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class Outcome:
    """What one raw delivery became: events, a deliberate skip, or a dead letter."""

    status: str  # "normalized", "skipped" or "dead_lettered"
    events: tuple[Emit, ...] = ()
    reason: str = ""
    message: str = ""


def normalize_delivery(raw: RawDelivery, context: NormalizeContext) -> Outcome:
    normalizer = NORMALIZERS.get(raw.platform)
    if normalizer is None:
        return Outcome("dead_lettered", reason="unknown_platform", message=raw.platform)
    bad_text = _invalid_text(raw.body)
    if bad_text is not None:
        return Outcome(
            "dead_lettered",
            reason="invalid_unicode",
            message=f"text at {bad_text} is not valid Unicode (a lone surrogate escape)",
        )
    try:
        result = normalizer(raw, context)
    except NotNormalizable as exc:
        return Outcome("dead_lettered", reason=exc.reason, message=str(exc)[:_MESSAGE_LIMIT])
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        # A payload shape no normalizer expected. Only the exception type is kept: its message
        # could quote payload values, and dead letters outlive the raw topic's PII retention.
        return Outcome("dead_lettered", reason="unexpected_shape", message=type(exc).__name__)
    if isinstance(result, Skip):
        return Outcome("skipped", reason=result.reason)
    return Outcome("normalized", events=tuple(result))


def _invalid_text(body: bytes) -> str | None:
    """Where the body spells text that is not Unicode (revloop/text.py), checked once here so
    no platform normalizer has to."""
    if not may_hold_surrogates(body):
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON at all: the platform normalizer says so (bad_json)
    return invalid_text_at(payload)


@dataclass(frozen=True)
class RawReference:
    """Where a raw record sits, so a dead letter can point at it and carry its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def dead_letter(
    ref: RawReference,
    *,
    raw: RawDelivery | None,
    reason: str,
    message: str,
    stage: str,
    at: datetime,
) -> Emit:
    """The DeadLetter for a raw record, with its id fixed by the record's position (or its raw
    event id), so processing it twice yields one dead letter."""
    source_id = raw.event_id if raw else f"{ref.topic}/{ref.partition}/{ref.offset}"
    store_id = raw.store_id if raw else (ref.key or b"unknown").decode("utf-8", "replace")
    envelope: dict[str, Any] = {
        "event_id": deterministic_id(f"dead-letter/{stage}/{source_id}"),
        "store_id": store_id,
        "platform": raw.platform if raw else "other",
        "occurred_at": raw.occurred_at if raw else at,
        "received_at": raw.received_at if raw else at,
        "source": "derived",
        "caused_by": [raw.event_id] if raw else [],
    }
    return Emit(
        EVENTS + "DeadLetter",
        {
            "envelope": envelope,
            "stage": stage,
            "error_type": reason,
            "error_message": message,
            "original_topic": ref.topic,
            "original_partition": ref.partition,
            "original_offset": ref.offset,
            "original_key": ref.key,
            "original_value": ref.value,
            "raw_event_id": raw.event_id if raw else None,
            "attempts": 1,
        },
    )


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
