"""The exactly-once consume-transform-produce loop every hand-written processor runs in (the
normalizer, the hydrator), and the protocol a processor implements.

Each batch is one Kafka transaction: the processor's outputs and the input offsets commit
together, so a crash mid-batch leaves neither half-written outputs nor a skipped record. Readers
use read_committed. When Kafka asks for an abort, the loop aborts, has the processor restore its
state as of the committed offsets, and reads the batch again.

Every blocking Kafka call runs under the watchdog: a call that overruns its own timeout plus the
grace ends the process with exit 75 for the supervisor to restart (revloop/watchdog.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from revloop.kafka import Guard, consumer_config, kafka_error, producer_config, requires_abort
from revloop.settings import Settings
from revloop.watchdog import Watchdog


@dataclass(frozen=True)
class Output:
    """One record to produce, encoded: topic, key and value."""

    topic: str
    key: bytes | None
    value: bytes


class Processor(Protocol):
    """A consume-transform-produce step over one input topic.

    The loop calls :meth:`process` for every record of a batch, produces what it returns and
    commits the outputs with the input offsets in one transaction. State a processor keeps in
    memory must be rebuilt in :meth:`restore` from the log as it stood at the committed offsets:
    the loop calls it on assignment and again after an aborted batch, before re-reading.
    """

    @property
    def input_topic(self) -> str: ...

    def prepare(self) -> None:
        """Before the first poll: fail fast on what would otherwise fail every record."""

    def restore(self, committed: Sequence[TopicPartition]) -> None:
        """The state for these partitions as of their committed offsets."""

    def forget(self, partitions: Sequence[int]) -> None:
        """Partitions this instance no longer owns."""

    def process(self, message: Message) -> Sequence[Output]:
        """What one input record becomes. Must not raise for a bad record (turn it into a dead
        letter instead); whatever it raises stops or aborts the batch."""

    def batch_done(self) -> None:
        """After each committed or aborted batch (e.g. to update gauges)."""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOptions:
    """How one processor's loop joins its group. Values come from Settings."""

    group_id: str
    instance_id: str
    """Stable per process slot: a restarted instance reuses its transactional id, which aborts
    whatever its previous life left open instead of letting it block readers until timeout,
    and its static group membership, which gives it its partitions back without a rebalance."""
    batch_size: int
    batch_wait_seconds: float
    """How long a batch waits to fill: a record waits up to this before its transaction."""
    session_timeout_ms: int
    """How long a silent (e.g. killed) instance keeps its partitions before the group moves them."""
    max_poll_interval_ms: int
    producer_overrides: Mapping[str, Any] = field(default_factory=dict)


def kafka_call_guard(watchdog: Watchdog, settings: Settings) -> Guard:
    """A blocking Kafka call's deadline: its own timeout plus the watchdog's grace."""
    seconds = settings.kafka_call_timeout_seconds + settings.watchdog_grace_seconds

    def guard(what: str) -> AbstractContextManager[None]:
        return watchdog.guard(what, seconds)

    return guard


class ExactlyOnceLoop:
    def __init__(
        self, settings: Settings, processor: Processor, options: LoopOptions, watchdog: Watchdog
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.options = options
        self._guard = kafka_call_guard(watchdog, settings)
        self._timeout = settings.kafka_call_timeout_seconds

    @property
    def transactional_id(self) -> str:
        return f"{self.settings.topic_prefix}{self.options.group_id}.{self.options.instance_id}"

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set. Raises on errors Kafka calls fatal (e.g. this
        instance was fenced by a newer one with the same transactional id)."""
        consumer = Consumer(
            consumer_config(
                self.settings,
                self.options.group_id,
                **{
                    # Static membership: a restart (after a SIGKILL too) takes its partitions
                    # back at once instead of waiting out its dead life's session.
                    "group.instance.id": self.options.instance_id,
                    "max.poll.interval.ms": self.options.max_poll_interval_ms,
                    "session.timeout.ms": self.options.session_timeout_ms,
                },
            )
        )
        producer = Producer(
            producer_config(
                self.settings,
                **{"transactional.id": self.transactional_id, **self.options.producer_overrides},
            )
        )
        self.processor.prepare()
        with self._guard("init_transactions"):
            producer.init_transactions(self._timeout)
        consumer.subscribe(
            [self.processor.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        try:
            while not stop.is_set():
                messages = consumer.consume(
                    self.options.batch_size, timeout=self.options.batch_wait_seconds
                )
                if messages:
                    self._process_batch(consumer, producer, messages)
        finally:
            with self._guard("closing the consumer"):
                consumer.close()
            with self._guard("flushing the producer"):
                producer.flush(self._timeout)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._guard("reading committed offsets"):
            committed = consumer.committed(partitions, timeout=self._timeout)
        self.processor.restore(committed)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.processor.forget([tp.partition for tp in partitions])
        self.processor.batch_done()

    def _process_batch(
        self, consumer: Consumer, producer: Producer, messages: list[Message]
    ) -> None:
        with self._guard("begin_transaction"):
            producer.begin_transaction()
        next_offsets: dict[int, int] = {}
        try:
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    continue
                for output in self.processor.process(message):
                    producer.produce(output.topic, key=output.key, value=output.value)
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None, "consumed records have one"
                next_offsets[partition] = offset + 1
            with self._guard("send_offsets_to_transaction"):
                producer.send_offsets_to_transaction(
                    [
                        TopicPartition(self.processor.input_topic, p, o)
                        for p, o in next_offsets.items()
                    ],
                    consumer.consumer_group_metadata(),
                    self._timeout,
                )
            self._commit(producer)
        except KafkaException as exc:
            if not requires_abort(exc):
                raise
            log.warning("transaction aborted, re-reading the batch: %s", exc)
            with self._guard("abort_transaction"):
                producer.abort_transaction(self._timeout)
            self._rewind(consumer)
        self.processor.batch_done()

    def _commit(self, producer: Producer, attempts: int = 3) -> None:
        """Commit, retrying what Kafka calls retriable (a timeout); anything else propagates."""
        for attempt in range(attempts):
            try:
                with self._guard("commit_transaction"):
                    producer.commit_transaction(self._timeout)
                return
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is None or not error.retriable() or attempt == attempts - 1:
                    raise

    def _rewind(self, consumer: Consumer) -> None:
        """After an abort, return to the committed offsets with the state they imply."""
        with self._guard("reading committed offsets"):
            committed = consumer.committed(consumer.assignment(), timeout=self._timeout)
        self.processor.restore(committed)
        for tp in committed:
            if tp.offset >= 0:
                consumer.seek(tp)
            else:
                consumer.seek(TopicPartition(tp.topic, tp.partition, 0))
