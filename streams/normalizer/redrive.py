"""Raw records through the normalizer again: a dead letter's source (``revloop dlq redrive``)
or every record of a time range (``revloop replay redrive``), after a normalizer fix.

Both run the live normalizer's own planning (:meth:`Normalizer.plan`) with envelope source
``redrive``. Event ids derive from the raw delivery, not from the source or the run, so a
re-normalized event has the id the live run gave it (or would have): consumers dedupe on it.
A record that fails again writes no new letter (its letter, with the same id, exists).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, Message

from platforms.events import EVENTS
from revloop.dead_letters import Letter, Output, Rework, Reworked, Transactions
from revloop.history import plan_range, to_millis
from revloop.kafka import consumer_config, read_ranges
from revloop.settings import Settings
from streams.normalizer.dedupe import SeenEvents
from streams.normalizer.processor import Normalizer, build_normalizer

STAGES = ("deserialize", "normalize")
"""The normalizer's dead-letter stages."""

REPLAY_TRANSACTIONAL_ID = "revloop.replay.redrive"
REPLAY_BATCH = 500
"""Raw records per replay transaction: a killed replay loses at most one batch's work."""


def redrive_normalizer(settings: Settings) -> Normalizer:
    """The live normalizer, configured as ``revloop normalize`` is, stamping ``redrive``."""
    normalizer = build_normalizer(settings)
    return as_redrive(normalizer)


def as_redrive(normalizer: Normalizer) -> Normalizer:
    normalizer.context = dataclasses.replace(normalizer.context, source="redrive")
    return normalizer


def renormalize(normalizer: Normalizer, message: Message, seen: SeenEvents) -> Reworked:
    """What one raw record becomes now; ``failed`` with the reason if it is a dead letter again."""
    plan = normalizer.plan(message, seen)
    if plan.outcome == "dead_lettered":
        return Reworked("failed", failure=f"dead-lettered again: {plan.reason}")
    writes = [w for w in plan.writes if w.event.record != EVENTS + "DeadLetter"]
    return Reworked(
        plan.outcome,
        [(w.topic, w.key, w.value) for w in writes],
        [w.event.event_id for w in writes],
    )


def letter_rework(normalizer: Normalizer) -> Rework:
    """Redrive for the normalizer's letters: its source raw record, normalized alone."""

    def rework(_letter: Letter, message: Message) -> Reworked:
        return renormalize(normalizer, message, SeenEvents(normalizer.dedupe_window))

    return rework


@dataclass
class ReplayReport:
    records: int = 0
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)


def replay(
    normalizer: Normalizer,
    start: datetime,
    end: datetime | None = None,
    *,
    progress: Callable[[int, int], None] = lambda _done, _total: None,
) -> ReplayReport:
    """Re-normalize the raw records received in [start, end) into the canonical topics, in
    transactions of :data:`REPLAY_BATCH` records. Duplicates within the range are dropped as
    the live normalizer drops them (one dedupe window per partition); anything the live run
    already wrote comes out with the same ids. ``progress(done, total)`` after each batch
    (``total`` counts offsets, so it may overshoot by transaction markers)."""
    settings = normalizer.settings
    timeout = settings.kafka_call_timeout_seconds
    consumer = Consumer(consumer_config(settings, "revloop.replay.redrive"))
    report = ReplayReport()
    writer: Transactions | None = None
    try:
        raw = normalizer.input_topic
        until = end or datetime.max.replace(tzinfo=UTC)  # no record that late: the log's end
        plan = plan_range(consumer, raw, start, until, timeout)
        ranges = {(raw, partition): span for partition, span in plan.items()}
        start_ms, end_ms = to_millis(start), to_millis(until)
        total = sum(high - low for low, high in ranges.values())
        progress(0, total)
        if not ranges:
            return report
        writer = transactions = Transactions(settings, REPLAY_TRANSACTIONAL_ID)
        seen: dict[int, SeenEvents] = {}
        pending: list[Output] = []
        done = 0

        def flush() -> None:
            transactions.commit(pending)
            pending.clear()
            progress(done, total)

        for message in read_ranges(consumer, ranges, drained_at_high_watermark=True):
            done += 1
            # Timestamps within a partition need not grow: one outside the range is not in it.
            if not start_ms <= message.timestamp()[1] < end_ms:
                continue
            partition = message.partition() or 0
            window = seen.setdefault(partition, SeenEvents(normalizer.dedupe_window))
            reworked = renormalize(normalizer, message, window)
            report.records += 1
            report.outcomes[reworked.outcome] += 1
            if reworked.failure is not None:
                report.failures[reworked.failure] += 1
            report.events += len(reworked.outputs)
            pending.extend(reworked.outputs)
            if done % REPLAY_BATCH == 0:
                flush()
        flush()
        return report
    finally:
        consumer.close()
        if writer is not None:
            writer.close()
