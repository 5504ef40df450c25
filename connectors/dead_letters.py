"""Dead letters for what a connector could not carry out (``ops.dead-letters.v1``): a reference
to the input record, the store, the call and why. Never a token and never a payload: the
record's key and position find it again. The key is the input topic's catalogue key (store and
resource ids), no personal data. ``revloop dlq redrive`` re-produces a ``connect.hydrate``
letter's input record to its topic; ``connect.ads`` letters are not redriven (the executor has
recorded the action as done, and the product's next breaker action acts instead)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from revloop.settings import Settings
from schemas.serde import AvroSerde
from schemas.topics import topic_for_record

DEAD_LETTER = "dev.revloop.events.DeadLetter"


def dead_letter(
    settings: Settings,
    serde: AvroSerde,
    message: Message,
    envelope: Mapping[str, Any],
    *,
    stage: str,
    error_type: str,
    why: str,
) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of the DeadLetter for the input ``message`` whose event has
    ``envelope``."""
    now = datetime.now(UTC)
    value = {
        "envelope": {
            "event_id": f"dead-letter/{stage}/{envelope['event_id']}",
            "store_id": envelope["store_id"],
            "platform": envelope["platform"],
            "occurred_at": now,
            "received_at": now,
            "source": "derived",
            "caused_by": [envelope["event_id"]],
        },
        "stage": stage,
        "error_type": error_type,
        "error_message": why,
        "original_topic": message.topic(),
        "original_partition": message.partition(),
        "original_offset": message.offset(),
        "original_key": message.key(),
        "original_value": None,
        "raw_event_id": None,
        "attempts": settings.connect_retry_attempts,
    }
    catalogued = topic_for_record(DEAD_LETTER)
    return (
        settings.topic_name(catalogued),
        catalogued.message_key(value),
        serde.encode(DEAD_LETTER, value),
    )
