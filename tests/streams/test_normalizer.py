"""The normalizer against a real broker: raw records in, canonical events out, exactly once.

Each test owns a scratch copy of the topic catalogue, so its counts are exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from platforms.events import NormalizeContext
from platforms.webhooks import Delivery, raw_record
from revloop.kafka import ensure_topics
from revloop.settings import Settings
from streams.normalizer.processor import Normalizer
from tests import ROOT
from tests.normalizer_support import (
    CONTEXT,
    SERDE,
    STORES,
    Pipeline,
    fixture_body,
    inventory_body,
    wait_for,
)


@pytest.fixture
def pipeline(settings: Settings, scratch_catalogue: Any) -> Pipeline:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    return Pipeline(settings, topics)


@pytest.fixture
def running(pipeline: Pipeline) -> Iterator[Any]:
    """Start a normalizer thread; yields a function that stops it."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def start(context: NormalizeContext = CONTEXT) -> Normalizer:
        stop = threading.Event()
        normalizer = pipeline.normalizer(context)
        thread = threading.Thread(target=normalizer.run, args=(stop,), daemon=True)
        thread.start()
        threads.append((thread, stop))
        return normalizer

    def stop_all() -> None:
        for thread, stop in threads:
            stop.set()
            thread.join(30)
        threads.clear()

    yield start, stop_all
    stop_all()


def kinds(pipeline: Pipeline) -> Counter[str]:
    return Counter(value["kind"] for _, value in pipeline.read("commerce.orders.v1"))


def test_deliveries_become_canonical_events_once_even_across_a_restart(
    pipeline: Pipeline, running: Any
) -> None:
    start, stop = running
    create = fixture_body("shopify", "orders__create")
    pipeline.publish("shopify", "orders/create", create, "ev-create")
    pipeline.publish("shopify", "orders/create", create, "ev-create")  # the platform retried
    pipeline.publish(
        "shopify", "orders/updated", fixture_body("shopify", "orders__updated"), "ev-upd"
    )
    refund = fixture_body("shopify", "refunds__create")
    pipeline.publish("shopify", "refunds/create", refund, "ev-refund")  # refund already seen
    pipeline.publish(
        "shopify", "products/update", fixture_body("shopify", "products__update"), "ev-p"
    )
    pipeline.publish("woocommerce", "order.updated", b'{"id": 8, "line_items": [', "ev-bad")
    pipeline.publish("shopify", "themes/publish", b"{}", "ev-theme")
    start()
    wait_for(
        lambda: (
            len(pipeline.read("ops.dead-letters.v1")) == 1 and sum(kinds(pipeline).values()) >= 3
        )
    )

    assert kinds(pipeline) == Counter({"created": 1, "updated": 1, "refunded": 1})
    assert len(pipeline.read("commerce.products.v1")) == 1
    ((_, letter),) = pipeline.read("ops.dead-letters.v1")
    assert (letter["stage"], letter["error_type"]) == ("normalize", "bad_json")
    assert letter["original_topic"] == pipeline.raw_topic
    where = (letter["original_partition"], letter["original_offset"])
    raw = dict(pipeline.read_positions("raw.webhooks.v1"))[where]
    assert raw["envelope"]["event_id"] == letter["raw_event_id"] == "ev-bad"
    assert letter["original_value"] is None  # a reference: the body stays on the raw topic
    assert raw["body"] == b'{"id": 8, "line_items": ['

    # A new instance rebuilds the dedupe window from the raw log: old retries stay dropped.
    stop()
    pipeline.publish("shopify", "orders/create", create, "ev-create")
    pipeline.publish("shopify", "refunds/create", refund, "ev-refund-again")
    pipeline.publish("shopify", "orders/paid", fixture_body("shopify", "orders__paid"), "ev-paid")
    start()
    wait_for(lambda: kinds(pipeline)["paid"] == 1)
    time.sleep(2)  # anything wrongly emitted would have landed with the paid event
    assert kinds(pipeline) == Counter({"created": 1, "updated": 1, "refunded": 1, "paid": 1})
    assert len(pipeline.read("ops.dead-letters.v1")) == 1


def test_records_that_break_the_normalizer_become_dead_letters_and_the_partition_moves_on(
    pipeline: Pipeline, running: Any
) -> None:
    # Signed deliveries whose ids are lone surrogate escapes: valid JSON, not Unicode. Each once
    # killed the normalizer while it built a Kafka key, on every restart.
    poison = {
        ("shopify", "products/update"): b'{"id": "\\ud800", "variants": []}',
        ("shopify", "inventory_levels/update"): (
            b'{"inventory_item_id": "\\udc00", "location_id": 1, "available": 3}'
        ),
        ("woocommerce", "order.updated"): b'{"id": "\\ud800", "status": "processing"}',
        ("bigcommerce", "store/product/updated"): (
            b'{"scope": "store/product/updated", "data": {"type": "product", "id": "\\ud800"}}'
        ),
    }
    for n, ((platform, topic), body) in enumerate(poison.items()):
        pipeline.publish(platform, topic, body, f"ev-poison-{n}")
    # After the poison, on the same partition: still normalized.
    create = fixture_body("shopify", "orders__create")
    pipeline.publish("shopify", "orders/create", create, "ev-after")
    start, _ = running
    normalizer = start()
    wait_for(lambda: len(pipeline.read("ops.dead-letters.v1")) == len(poison))
    wait_for(lambda: kinds(pipeline)["created"] == 1)

    letters = [letter for _, letter in pipeline.read("ops.dead-letters.v1")]
    assert sorted(letter["raw_event_id"] for letter in letters) == [
        f"ev-poison-{n}" for n in range(len(poison))
    ]
    assert {letter["error_type"] for letter in letters} == {"invalid_unicode"}
    assert all("\\ud8" not in letter["error_message"] for letter in letters)  # no values quoted
    counted = normalizer.metrics.registry.get_sample_value(
        "revloop_normalizer_records_total",
        {"platform": "shopify", "outcome": "dead_lettered", "reason": "invalid_unicode"},
    )
    assert counted == 2


class FailingCurrencies(dict[str, str]):
    """A store-currency source that fails in a way no normalizer anticipates (as a stores file
    on a dying disk might)."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("disk went away")


def test_an_unforeseen_error_parks_the_record_not_the_process(
    pipeline: Pipeline, running: Any
) -> None:
    # Products carry no currency, so normalizing one asks the failing source.
    product = fixture_body("shopify", "products__update")
    pipeline.publish("shopify", "products/update", product, "ev-product")
    pipeline.publish("shopify", "products/update", product, "ev-product")  # a retry: one letter
    pipeline.publish("shopify", "orders/create", fixture_body("shopify", "orders__create"), "ev-o")
    start, _ = running
    start(NormalizeContext(customer_salt=b"salt", store_currency=FailingCurrencies()))
    wait_for(lambda: kinds(pipeline)["created"] == 1)
    time.sleep(1)

    ((_, letter),) = pipeline.read("ops.dead-letters.v1")
    assert (letter["stage"], letter["error_type"]) == ("normalize", "unexpected_error")
    assert letter["error_message"] == "RuntimeError while normalizing"
    assert letter["raw_event_id"] == "ev-product"
    assert letter["original_value"] is None
    assert pipeline.read("commerce.products.v1") == []


CHILD = """
import sys, threading
from platforms.events import NormalizeContext
from streams.normalizer.processor import Normalizer
from revloop.settings import Settings
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
bootstrap, prefix, group = sys.argv[1:4]
Normalizer(
    settings=Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        normalizer_batch_size=50,
        # The broker's minimum: the killed instance's partitions move fast.
        normalizer_session_timeout_ms=6000,
    ),
    context=NormalizeContext(customer_salt=b"salt"),
    serde=AvroSerde(CommittedCatalogue.load()),
    group_id=group,
    instance_id="child",
).run(threading.Event())
"""


@pytest.mark.slow
def test_a_normalizer_killed_mid_stream_resumes_without_loss_or_duplicates(
    pipeline: Pipeline, settings: Settings
) -> None:
    total = 3000
    for n in range(total):
        body = inventory_body(n)
        store = next(iter(STORES.stores_for("shopify")))
        now = datetime.now(UTC) - timedelta(seconds=total - n)
        record = raw_record(
            Delivery(store, "inventory_levels/update", f"ev-{n}", None, now, {}),
            body,
            "application/json",
            now,
        )
        pipeline.producer.produce(
            pipeline.raw_topic,
            key=f"acme-shopify-{n % 6}".encode(),  # spread over every raw partition
            value=SERDE.encode("dev.revloop.events.RawWebhook", record),
        )
    pipeline.producer.flush(30)

    def child() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                settings.bootstrap_servers,
                pipeline.prefix,
                pipeline.group_id,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    first = child()
    wait_for(lambda: len(pipeline.read("commerce.inventory-levels.v1")) >= total // 5, timeout=90)
    os.kill(first.pid, signal.SIGKILL)  # mid-stream, most likely mid-transaction
    first.wait(10)
    second = child()
    try:
        wait_for(lambda: len(pipeline.read("commerce.inventory-levels.v1")) >= total, timeout=120)
        time.sleep(2)
        ids = [
            v["envelope"]["caused_by"][0] for _, v in pipeline.read("commerce.inventory-levels.v1")
        ]
    finally:
        second.kill()
        second.wait(10)
    assert len(ids) == total
    assert set(ids) == {f"ev-{n}" for n in range(total)}
