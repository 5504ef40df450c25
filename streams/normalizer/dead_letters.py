"""The dead letter for a raw record the normalizer cannot turn into events: where the record sits
and why, never its bytes (a body holds personal data, and dead letters are kept forever; the
raw topic keeps it 30 days). Its id is fixed by the record, so processing it twice yields one
letter, and ``revloop dlq redrive`` reads the record again from its position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from platforms.events import EVENTS, Emit, RawDelivery
from revloop.ids import deterministic_id


@dataclass(frozen=True)
class RawReference:
    """Where a raw record sits, so a dead letter can point at it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    """The raw record's key: ingest keys raw.webhooks.v1 by store id, which is no personal
    data, so the letter keeps it."""


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
            "original_value": None,  # a reference, not a copy: the body holds personal data
            "raw_event_id": raw.event_id if raw else None,
            "attempts": 1,
        },
    )
