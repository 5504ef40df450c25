"""Dead letters reference their source and carry no personal data; `dlq redrive` puts a letter
back through the normalizer exactly once; `replay redrive` re-normalizes a time range into the
ids the live run gave. Against the real broker, on a scratch copy of the catalogue."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from platforms.events import NormalizeContext
from revloop.dead_letters import (
    Letter,
    Marker,
    failed_again,
    read_letters,
    redrive,
    select,
    source_state,
)
from revloop.kafka import consumer_config, ensure_topics, high_watermarks, read_ranges
from revloop.settings import Settings
from streams.normalizer.redrive import as_redrive, letter_rework, replay
from tests.normalizer_support import CONTEXT, SERDE, Pipeline, fixture_body, wait_for

PII = "jane.doe.pii@example.com"
NO_CURRENCY = NormalizeContext(customer_salt=b"salt", store_currency={})


def product(product_id: int) -> bytes:
    body = json.loads(fixture_body("shopify", "products__update"))
    return json.dumps({**body, "id": product_id, "body_html": f"Ask {PII}"}).encode()


def raw_bytes(settings: Settings, name: str) -> list[bytes]:
    consumer = Consumer(consumer_config(settings, "test-raw-bytes"))
    try:
        ranges = {(name, p): (0, end) for p, end in high_watermarks(consumer, name).items()}
        return [m.value() or b"" for m in read_ranges(consumer, ranges, timeout=20)]
    finally:
        consumer.close()


def test_letters_reference_their_source_and_redrive_once_until_retention_passes(
    settings: Settings, scratch_catalogue: Any
) -> None:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    pipeline = Pipeline(settings, topics)
    start = datetime.now(UTC) - timedelta(seconds=5)
    # Products name no currency: with the store's currency unknown they are dead-lettered.
    pipeline.publish("shopify", "products/update", product(1001), "ev-product-a")
    pipeline.publish("shopify", "orders/create", fixture_body("shopify", "orders__create"), "ev-o")
    pipeline.publish("shopify", "products/update", product(1002), "ev-product-b")

    live = pipeline.normalizer(NO_CURRENCY)
    stop = threading.Event()
    thread = threading.Thread(target=live.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(pipeline.read("ops.dead-letters.v1")) == 2)
        wait_for(lambda: len(pipeline.read("commerce.orders.v1")) == 1)
    finally:
        stop.set()
        thread.join(30)

    # The letter is a reference: no body, no personal data anywhere in its bytes.
    prefixed = live.settings
    letter_bytes = raw_bytes(settings, pipeline.prefix + "ops.dead-letters.v1")
    assert len(letter_bytes) == 2 and all(PII.encode() not in b for b in letter_bytes)
    assert any(PII.encode() in b for b in raw_bytes(settings, pipeline.raw_topic))
    raw_at = {
        v["envelope"]["event_id"]: pos for pos, v in pipeline.read_positions("raw.webhooks.v1")
    }
    values = {v["raw_event_id"]: v for _, v in pipeline.read("ops.dead-letters.v1")}
    for event_id in ("ev-product-a", "ev-product-b"):
        letter = values[event_id]
        assert letter["original_value"] is None
        assert letter["error_type"] == "store_currency_unknown"
        assert letter["original_topic"] == pipeline.raw_topic
        assert (letter["original_partition"], letter["original_offset"]) == raw_at[event_id]
        assert letter["original_key"] == b"acme-shopify"  # a store id: no personal data

    # The cause is fixed (the store's currency is configured): redrive letter A, twice.
    fixed = as_redrive(pipeline.normalizer(CONTEXT))
    reworks = {"normalize": letter_rework(fixed)}
    letters = read_letters(prefixed, SERDE)
    (letter_a,) = [x for x in letters if x.event_id == "ev-product-a"]
    (letter_b,) = [x for x in letters if x.event_id == "ev-product-b"]
    (first,) = redrive(prefixed, SERDE, select(letters, ids=[letter_a.letter_id]), reworks)
    (second,) = redrive(prefixed, SERDE, select(letters, ids=[letter_a.letter_id]), reworks)
    assert (first.status, first.detail) == ("redriven", "normalized")
    assert second.status == "already-redriven"
    products = pipeline.read("commerce.products.v1")
    assert [(v["product_id"], v["envelope"]["source"]) for _, v in products] == [
        ("1001", "redrive")
    ]
    assert [v["envelope"]["event_id"] for _, v in products] == list(first.event_ids)

    # Replaying the range re-normalizes everything into the ids already written.
    live_orders = {v["envelope"]["event_id"] for _, v in pipeline.read("commerce.orders.v1")}
    report = replay(fixed, start)
    assert (report.records, report.outcomes["normalized"]) == (3, 3)
    orders = Counter(v["envelope"]["event_id"] for _, v in pipeline.read("commerce.orders.v1"))
    assert set(orders) == live_orders and set(orders.values()) == {2}
    products_now = Counter(v["product_id"] for _, v in pipeline.read("commerce.products.v1"))
    redriven_a = {
        v["envelope"]["event_id"]
        for _, v in pipeline.read("commerce.products.v1")
        if v["product_id"] == "1001"
    }
    assert products_now == Counter({"1001": 2, "1002": 1}) and redriven_a == set(first.event_ids)

    # Retention passes: the raw partition's records are deleted; letter B can't be redriven.
    partition, offset = raw_at["ev-product-b"]
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    target = TopicPartition(pipeline.raw_topic, partition, offset + 1)
    admin.delete_records([target])[target].result(30)
    (expired,) = redrive(prefixed, SERDE, [letter_b], reworks)
    assert expired.status == "expired" and not expired.ok
    assert "retention" in expired.detail
    assert (
        Counter(v["product_id"] for _, v in pipeline.read("commerce.products.v1")) == products_now
    )


def test_a_source_below_the_low_watermark_is_expired_and_one_past_the_end_missing() -> None:
    at = datetime.now(UTC)
    value = {
        "envelope": {"event_id": "l", "store_id": "s", "platform": "shopify", "caused_by": []},
        "stage": "normalize",
        "error_type": "bad_json",
        "error_message": "",
        "original_topic": "raw",
        "original_partition": 0,
        "original_offset": 5,
    }
    letter = Letter.from_value(value, at)
    assert source_state(letter, {("raw", 0): (6, 9)}) == "expired"
    assert source_state(letter, {("raw", 0): (5, 9)}) == "readable"
    assert source_state(letter, {("raw", 0): (0, 5)}) == "missing"
    assert source_state(Letter.from_value({**value, "original_topic": None}, at), {}) == (
        "no source"
    )
    # A connector letter written again after its redrive (the stage failed again) is open again.
    marker = Marker("l", "reproduced", (), at)
    assert not failed_again(letter, marker)
    later = dataclasses.replace(letter, rewritten_at=at + timedelta(seconds=1))
    assert failed_again(later, marker) and not failed_again(later, None)
