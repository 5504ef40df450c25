"""Dead letters as operators see them (``revloop dlq``), and redrive: putting a letter back
through the pipeline exactly once.

A dead letter references its source record (topic, partition, offset, event id) and carries no
copy of it. A redrive reads the source again, reworks it (the stage's own code: the normalizer
re-normalizes a raw record; a connector's input is produced to its topic again) and writes the
result together with a marker on ``ops.dead-letter-redrives.v1`` in one Kafka transaction. The
transactional id is fixed, so two redrives running at once fence each other, and the markers
are read only after the fence, so a letter with a marker is skipped: once, never twice.

A source whose offset is below its partition's low watermark is gone (raw.webhooks.v1 keeps 30
days): its letter cannot be redriven, and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from revloop.ids import deterministic_id
from revloop.kafka import consumer_config, producer_config, read_ranges
from revloop.settings import Settings
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import topic, topic_for_record

DEAD_LETTER = "dev.revloop.events.DeadLetter"
REDRIVE = "dev.revloop.events.DeadLetterRedrive"
REDRIVES = topic("ops.dead-letter-redrives.v1")
TRANSACTIONAL_ID = "revloop.dlq.redrive"
"""Fixed, so concurrent redrives fence each other (the prefix keeps environments apart)."""

Position = tuple[str, int]
Watermarks = Mapping[Position, tuple[int, int]]


@dataclass(frozen=True)
class Letter:
    """One dead letter: what failed, where, why, and where its source record sits."""

    letter_id: str
    stage: str
    reason: str
    message: str
    store_id: str
    platform: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    source_key: bytes | None
    event_id: str | None
    """The event the source record carries (the raw delivery's id, or the input event's)."""
    written_at: datetime
    attempts: int
    rewritten_at: datetime | None = None
    """When the same letter (same id) was last written again, e.g. by a connector whose
    re-produced input failed again after a redrive."""

    @classmethod
    def from_value(cls, value: Mapping[str, Any], written_at: datetime) -> Letter:
        envelope = value["envelope"]
        caused_by = envelope.get("caused_by") or []
        return cls(
            letter_id=envelope["event_id"],
            stage=value["stage"],
            reason=value["error_type"],
            message=value["error_message"],
            store_id=envelope["store_id"],
            platform=envelope["platform"],
            source_topic=value.get("original_topic"),
            source_partition=value.get("original_partition"),
            source_offset=value.get("original_offset"),
            source_key=value.get("original_key"),
            event_id=value.get("raw_event_id") or (caused_by[0] if caused_by else None),
            written_at=written_at,
            attempts=value.get("attempts", 1),
        )

    @property
    def source(self) -> tuple[str, int, int] | None:
        if self.source_topic is None or self.source_partition is None:
            return None
        if self.source_offset is None or self.source_partition < 0 or self.source_offset < 0:
            return None
        return self.source_topic, self.source_partition, self.source_offset


@dataclass(frozen=True)
class Marker:
    letter_id: str
    outcome: str
    event_ids: tuple[str, ...]
    at: datetime


def source_state(letter: Letter, marks: Watermarks) -> str:
    """``readable``; ``expired`` (below the low watermark: retention deleted it); ``missing``
    (at or past the end, e.g. the topic was recreated); ``no source`` (the letter names none)."""
    source = letter.source
    if source is None:
        return "no source"
    low, high = marks.get((source[0], source[1]), (0, 0))
    if source[2] < low:
        return "expired"
    if source[2] >= high:
        return "missing"
    return "readable"


def failed_again(letter: Letter, marker: Marker | None) -> bool:
    """Whether the letter was written again after its redrive (its stage failed again)."""
    return (
        marker is not None and letter.rewritten_at is not None and letter.rewritten_at > marker.at
    )


def select(
    letters: Iterable[Letter],
    *,
    ids: Sequence[str] = (),
    stage: str | None = None,
    reason: str | None = None,
    store: str | None = None,
) -> list[Letter]:
    return [
        letter
        for letter in letters
        if (not ids or letter.letter_id in ids)
        and (stage is None or letter.stage == stage)
        and (reason is None or letter.reason == reason)
        and (store is None or letter.store_id == store)
    ]


def marker_value(
    letter: Letter, outcome: str, event_ids: Sequence[str], at: datetime
) -> dict[str, Any]:
    """The DeadLetterRedrive record for ``letter``; its id is the letter's, so it is one."""
    return {
        "envelope": {
            "event_id": deterministic_id(f"dead-letter-redrive/{letter.letter_id}"),
            "store_id": letter.store_id,
            "platform": letter.platform,
            "occurred_at": at,
            "received_at": at,
            "source": "redrive",
            "caused_by": [letter.letter_id],
        },
        "letter_id": letter.letter_id,
        "stage": letter.stage,
        "outcome": outcome,
        "event_ids": list(event_ids),
    }


# -- reading ---------------------------------------------------------------------------------


def _reader(settings: Settings) -> Consumer:
    # No group is joined (partitions are assigned), so nothing is committed and nobody moves.
    return Consumer(consumer_config(settings, "revloop.dlq.read"))


def watermarks(
    consumer: Consumer, positions: Iterable[Position], timeout: float
) -> dict[Position, tuple[int, int]]:
    """(low, high) of each partition; a partition that does not exist reads as empty. Any
    other error raises: a slow broker must not pass for an empty topic (redrive reads its
    markers this way, and "no markers" would redrive letters a second time)."""
    found: dict[Position, tuple[int, int]] = {}
    for name, partition in set(positions):
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(name, partition), timeout=timeout
            )
        except KafkaException as exc:
            if not _absent(exc.args[0]):
                raise
            low, high = 0, 0
        found[(name, partition)] = (int(low), int(high))
    return found


def _read_topic(
    consumer: Consumer, name: str, timeout: float
) -> Iterable[tuple[Message, datetime]]:
    metadata = consumer.list_topics(name, timeout=timeout).topics.get(name)
    if metadata is None or _absent(metadata.error):
        return []
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    marks = watermarks(consumer, [(name, p) for p in metadata.partitions], timeout)
    ranges = dict(marks)
    found: list[tuple[Message, datetime]] = []
    # No overall deadline: the topic is read to its end however long it is.
    for message in read_ranges(consumer, ranges, drained_at_high_watermark=True):
        _, stamp = message.timestamp()
        found.append((message, datetime.fromtimestamp(stamp / 1000, UTC)))
    return found


def _absent(error: KafkaError | None) -> bool:
    """Whether ``error`` says the topic or partition does not exist (yet)."""
    return error is not None and error.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
    )


class UnreadableLetters(Exception):
    """Records on the dead-letter topic that do not decode as dead letters."""


def read_letters(settings: Settings, serde: AvroSerde) -> list[Letter]:
    """Every dead letter, oldest first; a letter written twice (same id) is listed once.
    Raises UnreadableLetters, naming their positions, when a record does not decode: a letter
    must never vanish from `dlq list` and `dlq redrive` without a word."""
    name = settings.topic_name(topic_for_record(DEAD_LETTER))
    consumer = _reader(settings)
    try:
        letters: dict[str, Letter] = {}
        unreadable: list[str] = []
        for message, written in _read_topic(consumer, name, settings.kafka_call_timeout_seconds):
            try:
                letter = Letter.from_value(serde.decode(message.value() or b"").value, written)
            except (SerdeError, KeyError) as exc:
                unreadable.append(
                    f"{message.topic()}[{message.partition()}]@{message.offset()} "
                    f"({type(exc).__name__})"
                )
                continue
            first = letters.setdefault(letter.letter_id, letter)
            if first is not letter:
                letters[letter.letter_id] = dataclasses.replace(first, rewritten_at=written)
        if unreadable:
            raise UnreadableLetters(
                f"{len(unreadable)} record(s) on {name} are not dead letters: "
                + ", ".join(unreadable[:10])
            )
        return sorted(letters.values(), key=lambda letter: letter.written_at)
    finally:
        consumer.close()


def read_markers(settings: Settings, serde: AvroSerde) -> dict[str, Marker]:
    """Every committed redrive marker, by letter id."""
    consumer = _reader(settings)
    try:
        markers: dict[str, Marker] = {}
        found = _read_topic(
            consumer, settings.topic_name(REDRIVES), settings.kafka_call_timeout_seconds
        )
        for message, written in found:
            value = serde.decode(message.value() or b"").value
            # The newest marker counts: a letter written again after its redrive is redriven again.
            markers[value["letter_id"]] = Marker(
                value["letter_id"], value["outcome"], tuple(value["event_ids"]), written
            )
        return markers
    finally:
        consumer.close()


def source_watermarks(
    settings: Settings, letters: Iterable[Letter]
) -> dict[Position, tuple[int, int]]:
    consumer = _reader(settings)
    try:
        positions = [(s[0], s[1]) for s in (letter.source for letter in letters) if s is not None]
        return watermarks(consumer, positions, settings.kafka_call_timeout_seconds)
    finally:
        consumer.close()


def read_source(consumer: Consumer, letter: Letter, timeout: float) -> Message | None:
    """The letter's source record, or None when it is not there (deleted, or an aborted
    transaction's record, which read_committed never returns)."""
    source = letter.source
    if source is None:
        return None
    name, partition, offset = source
    span = {(name, partition): (offset, offset + 1)}
    with contextlib.suppress(TimeoutError):
        for message in read_ranges(consumer, span, timeout=timeout, drained_at_high_watermark=True):
            if message.offset() == offset:
                return message
    return None


# -- redriving --------------------------------------------------------------------------------

Output = tuple[str, bytes | None, bytes]
"""(topic, key, value) of a record a redrive writes."""


@dataclass(frozen=True)
class Reworked:
    """What a letter's source record becomes when put through its stage again."""

    outcome: str
    """normalized, skipped, reproduced; or failed (``failure`` says why)."""
    outputs: list[Output] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    failure: str | None = None


Rework = Callable[[Letter, Message], Reworked]


def reproduce(letter: Letter, message: Message) -> Reworked:
    """A connector's letter: its input record, produced to its topic again, so the connector
    (whose cause is now fixed) carries it out as if it were new."""
    value = message.value()
    name = message.topic()
    if value is None or name is None:
        return Reworked("failed", failure="the source record has no value")
    return Reworked("reproduced", [(name, message.key(), value)], [letter.event_id or ""])


@dataclass(frozen=True)
class Result:
    letter: Letter
    status: str
    """redriven, would-redrive, already-redriven, expired, missing, unsupported, failed."""
    detail: str = ""
    event_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("redriven", "would-redrive", "already-redriven")


class Transactions:
    """A producer whose writes commit as units, under a fixed transactional id: a second
    holder of the id fences the first (its next commit fails, nothing of it is visible)."""

    def __init__(self, settings: Settings, transactional_id: str) -> None:
        self._timeout = settings.kafka_call_timeout_seconds
        self._producer = Producer(
            producer_config(
                settings, **{"transactional.id": settings.topic_prefix + transactional_id}
            )
        )
        self._producer.init_transactions(self._timeout)

    def close(self) -> None:
        self._producer.flush(self._timeout)

    def commit(self, outputs: Sequence[Output]) -> None:
        self._producer.begin_transaction()
        try:
            for name, key, value in outputs:
                self._producer.produce(name, key=key, value=value)
            self._producer.commit_transaction(self._timeout)
        except BaseException:
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(self._timeout)
            raise


def redrive(
    settings: Settings,
    serde: AvroSerde,
    letters: Sequence[Letter],
    reworks: Mapping[str, Rework],
    *,
    dry_run: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_result: Callable[[Result], None] = lambda _result: None,
) -> list[Result]:
    """Redrive each letter once (see the module doc). ``reworks`` maps a stage to what
    redriving means for it; a letter of another stage is ``unsupported``."""
    if not letters:
        return []
    # Fence any other redrive first, then read the markers: whatever it committed is seen.
    writer = None if dry_run else Transactions(settings, TRANSACTIONAL_ID)
    consumer: Consumer | None = None
    results: list[Result] = []
    try:
        markers = read_markers(settings, serde)
        marks = source_watermarks(settings, letters)
        marker_topic = settings.topic_name(REDRIVES)
        timeout = settings.kafka_call_timeout_seconds
        consumer = _reader(settings)
        for letter in letters:
            result, reworked = _redrive_one(letter, markers, marks, reworks, consumer, timeout)
            if reworked is not None and writer is not None:
                at = clock()
                value = marker_value(letter, reworked.outcome, reworked.event_ids, at)
                marker = (marker_topic, REDRIVES.message_key(value), serde.encode(REDRIVE, value))
                writer.commit([*reworked.outputs, marker])
                markers[letter.letter_id] = Marker(
                    letter.letter_id, reworked.outcome, result.event_ids, at
                )
                result = Result(letter, "redriven", reworked.outcome, result.event_ids)
            results.append(result)
            on_result(result)
    finally:
        if consumer is not None:
            consumer.close()
        if writer is not None:
            writer.close()
    return results


def _redrive_one(
    letter: Letter,
    markers: Mapping[str, Marker],
    marks: Watermarks,
    reworks: Mapping[str, Rework],
    consumer: Consumer,
    timeout: float,
) -> tuple[Result, Reworked | None]:
    """What to do with one letter: a Result, and the Reworked to write when it is to be
    redriven (``would-redrive``)."""
    done = markers.get(letter.letter_id)
    if done is not None and not failed_again(letter, done):
        return _only(Result(letter, "already-redriven", f"{done.outcome} at {done.at.isoformat()}"))
    rework = reworks.get(letter.stage)
    if rework is None:
        return _only(Result(letter, "unsupported", f"stage {letter.stage} has no redrive"))
    state = source_state(letter, marks)
    if state == "expired":
        return _only(
            Result(
                letter,
                "expired",
                f"{letter.source_topic} no longer holds offset {letter.source_offset} "
                "(its retention passed): the record cannot be read again",
            )
        )
    if state != "readable":
        return _only(Result(letter, "missing", f"source {state}"))
    message = read_source(consumer, letter, timeout)
    if message is None:
        return _only(Result(letter, "missing", "the source record could not be read"))
    reworked = rework(letter, message)
    if reworked.failure is not None:
        return _only(Result(letter, "failed", reworked.failure))
    return Result(letter, "would-redrive", reworked.outcome, tuple(reworked.event_ids)), reworked


def _only(result: Result) -> tuple[Result, None]:
    return result, None
