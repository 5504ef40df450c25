"""`revloop worker` in a test: a scratch catalogue, records published to it, the worker run over
it as a child process (so SIGKILL is real), and its outputs read with read_committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from revloop.kafka import (
    consumer_config,
    high_watermarks,
    producer_config,
    read_ranges,
)
from revloop.settings import Settings
from schemas.topics import TOPICS, Topic, topic_for_record
from tests.normalizer_support import SERDE

E = "dev.revloop.events."
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Worker:
    """A scratch catalogue, records published to it, and `revloop worker` over it."""

    def __init__(self, settings: Settings, topics: tuple[Topic, ...], state_dir: Path) -> None:
        self.settings = settings
        self.prefix = topics[0].name.removesuffix(TOPICS[0].name)
        self.group = f"worker-{uuid.uuid4().hex[:8]}"
        self.state_dir = state_dir
        self.producer = Producer(producer_config(settings))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "worker.log"

    def publish(self, record: str, value: dict[str, Any]) -> None:
        self.publish_quietly(record, value)
        self.producer.flush(10)

    def publish_quietly(self, record: str, value: dict[str, Any]) -> None:
        """Like :meth:`publish`, without waiting for the ack (flush the producer after)."""
        catalogued = topic_for_record(E + record)
        self.producer.produce(
            self.prefix + catalogued.name,
            key=catalogued.message_key(value),
            value=SERDE.encode(E + record, value),
        )
        self.producer.poll(0)

    def start(self) -> None:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "REVLOOP_TOPIC_PREFIX": self.prefix,
            "REVLOOP_STATE_DIR": str(self.state_dir),
            "REVLOOP_WORKER_GROUP_ID": self.group,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "revloop", "worker", "--instance-id", "w1"],
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def committed_past(self, catalogue_name: str) -> bool:
        """Whether the worker's group has committed up to the end of a scratch topic."""
        name = self.prefix + catalogue_name
        reader = Consumer(consumer_config(self.settings, self.prefix + self.group))
        try:
            ends = high_watermarks(reader, name)
            committed = reader.committed([TopicPartition(name, p) for p in ends], timeout=10)
            return all(tp.offset >= ends[tp.partition] for tp in committed if ends[tp.partition])
        finally:
            reader.close()

    def committed_total(self, catalogue_name: str) -> int:
        """The worker group's committed offsets on a scratch topic, summed over partitions."""
        name = self.prefix + catalogue_name
        reader = Consumer(consumer_config(self.settings, self.prefix + self.group))
        try:
            partitions = reader.list_topics(name, timeout=10).topics[name].partitions
            committed = reader.committed([TopicPartition(name, p) for p in partitions], timeout=10)
            return sum(max(tp.offset, 0) for tp in committed)
        finally:
            reader.close()

    def actions(self) -> list[dict[str, Any]]:
        return sorted(
            self.read("actions.circuit-breaker.v1"), key=lambda a: a["envelope"]["occurred_at"]
        )

    def read(self, catalogue_name: str) -> list[dict[str, Any]]:
        """Every committed record of a scratch output topic, decoded, in partition order."""
        name = self.prefix + catalogue_name
        reader = Consumer(consumer_config(self.settings, f"reader-{uuid.uuid4().hex}"))
        try:
            ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
            found = [SERDE.decode(m.value() or b"").value for m in read_ranges(reader, ranges)]
        finally:
            reader.close()
        return found


def envelope(event: str, minutes: float, store: str = "acme") -> dict[str, Any]:
    at = T0 + timedelta(minutes=minutes)
    return {
        "event_id": event,
        "store_id": store,
        "platform": "woocommerce",
        "occurred_at": at,
        "received_at": at,
        "source": "webhook",
        "caused_by": [],
    }
