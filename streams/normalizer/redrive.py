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
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from platforms.events import EVENTS
from revloop.dead_letters import Letter, Output, Rework, Reworked, Transactions
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


def replay_ranges(
    consumer: Consumer, raw_topic: str, start: datetime, end: datetime | None, timeout: float
) -> dict[tuple[str, int], tuple[int, int]]:
    """Each raw partition's offsets whose timestamps fall in [start, end)."""
    partitions = list(consumer.list_topics(raw_topic, timeout=timeout).topics[raw_topic].partitions)

    def offsets_at(at: datetime | None) -> dict[int, int]:
        highs = {
            p: int(consumer.get_watermark_offsets(TopicPartition(raw_topic, p), timeout=timeout)[1])
            for p in partitions
        }
        if at is None:
            return highs
        stamp = int(at.timestamp() * 1000)
        found = consumer.offsets_for_times(
            [TopicPartition(raw_topic, p, stamp) for p in partitions], timeout=timeout
        )
        # -1: no record at or after the instant, so the range runs to the end.
        return {tp.partition: tp.offset if tp.offset >= 0 else highs[tp.partition] for tp in found}

    starts, ends = offsets_at(start), offsets_at(end)
    return {(raw_topic, p): (starts[p], ends[p]) for p in partitions if ends[p] > starts[p]}


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
    try:
        ranges = replay_ranges(consumer, normalizer.input_topic, start, end, timeout)
        total = sum(high - low for low, high in ranges.values())
        progress(0, total)
        if not ranges:
            return report
        writer = Transactions(settings, REPLAY_TRANSACTIONAL_ID)
        seen: dict[int, SeenEvents] = {}
        pending: list[Output] = []
        done = 0

        def flush() -> None:
            writer.commit(pending)
            pending.clear()
            progress(done, total)

        for message in read_ranges(consumer, ranges, drained_at_high_watermark=True):
            partition = message.partition() or 0
            window = seen.setdefault(partition, SeenEvents(normalizer.dedupe_window))
            reworked = renormalize(normalizer, message, window)
            report.records += 1
            report.outcomes[reworked.outcome] += 1
            if reworked.failure is not None:
                report.failures[reworked.failure] += 1
            report.events += len(reworked.outputs)
            pending.extend(reworked.outputs)
            done += 1
            if done % REPLAY_BATCH == 0:
                flush()
        flush()
        return report
    finally:
        consumer.close()
