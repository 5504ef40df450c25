"""What the exactly-once loop runs: a processor turns each input record into output records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Message, TopicPartition


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
