"""The normalizer's test harness: a scratch pipeline on the real broker, and its fixtures."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer

from platforms.events import NormalizeContext
from platforms.webhooks import Delivery, raw_record
from revloop.kafka import consumer_config, high_watermarks, producer_config, read_ranges
from revloop.settings import Settings
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from schemas.topics import TOPICS, Topic
from streams.normalizer.processor import Normalizer
from tests import FIXTURES
from tests.ingest_support import make_registry

SERDE = AvroSerde(CommittedCatalogue.load())
STORES = make_registry()
CONTEXT = NormalizeContext(customer_salt=b"salt", store_currency={"acme-shopify": "USD"})


class Pipeline:
    def __init__(self, settings: Settings, topics: tuple[Topic, ...]) -> None:
        self.settings = settings
        self.prefix = topics[0].name.removesuffix(TOPICS[0].name)
        self.raw_topic = self.prefix + "raw.webhooks.v1"
        self.group_id = f"test-normalizer-{uuid.uuid4().hex[:8]}"
        self.instance_id = uuid.uuid4().hex[:8]
        self.producer = Producer(producer_config(settings))

    def publish(self, platform: str, topic: str, body: bytes, event_id: str) -> None:
        store = next(iter(STORES.stores_for(platform)))
        now = datetime.now(UTC)
        delivery = Delivery(store, topic, event_id, None, now, {})
        record = raw_record(delivery, body, "application/json", now)
        self.producer.produce(
            self.raw_topic,
            key=store.store_id.encode(),
            value=SERDE.encode("dev.revloop.events.RawWebhook", record),
        )
        self.producer.flush(10)

    def normalizer(self, context: NormalizeContext = CONTEXT) -> Normalizer:
        """The pipeline's normalizer: one process slot, so each start is a restart of the same
        static member (a new id would wait out the stopped one's session)."""
        return Normalizer(
            settings=self.settings.model_copy(update={"topic_prefix": self.prefix}),
            context=context,
            serde=SERDE,
            group_id=self.group_id,
            instance_id=self.instance_id,
        )

    def read(self, catalogue_name: str) -> list[tuple[int, dict[str, Any]]]:
        """Every committed record on a scratch topic, as (offset, decoded value)."""
        return [(offset, value) for (_, offset), value in self.read_positions(catalogue_name)]

    def read_positions(self, catalogue_name: str) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        """Every committed record on a scratch topic, as ((partition, offset), decoded value):
        offsets repeat across partitions, positions do not."""
        name = self.prefix + catalogue_name
        consumer = Consumer(consumer_config(self.settings, f"reader-{uuid.uuid4().hex}"))
        try:
            ends = high_watermarks(consumer, name)
            ranges = {(name, p): (0, end) for p, end in ends.items()}
            found: list[tuple[tuple[int, int], dict[str, Any]]] = []
            with contextlib.suppress(TimeoutError):  # what could be read; callers poll again
                for message in read_ranges(consumer, ranges, timeout=20):
                    position = (message.partition() or 0, message.offset() or 0)
                    found.append((position, SERDE.decode(message.value() or b"").value))
            return found
        finally:
            consumer.close()


def wait_for(check: Any, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.3)


def fixture_body(platform: str, name: str) -> bytes:
    return (FIXTURES / platform / f"{name}.json").read_bytes()


def inventory_body(n: int) -> bytes:
    """Shopify's inventory_levels/update fixture at level ``n``: one distinct stock change per
    ``n`` (an identical body is the same change delivered again, and is deduplicated)."""
    level = json.loads(fixture_body("shopify", "inventory_levels__update"))
    return json.dumps({**level, "available": n}).encode()
