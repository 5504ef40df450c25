"""`revloop worker` against the real broker: inventory levels, variants and campaign links in,
pauses and resumes out, exactly once, read with read_committed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from revloop.kafka import (
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    read_ranges,
)
from revloop.settings import Settings
from schemas.topics import TOPICS, Topic, topic_for_record
from streams.circuit_breaker.breaker import BreakerRules, BreakerState, observe
from tests.normalizer_support import SERDE, wait_for

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
        name = self.prefix + "actions.circuit-breaker.v1"
        reader = Consumer(consumer_config(self.settings, f"reader-{uuid.uuid4().hex}"))
        try:
            ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
            found = [SERDE.decode(m.value() or b"").value for m in read_ranges(reader, ranges)]
        finally:
            reader.close()
        return sorted(found, key=lambda a: a["envelope"]["occurred_at"])


@pytest.fixture
def worker(settings: Settings, scratch_catalogue: Any, tmp_path: Path) -> Iterator[Worker]:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    running = Worker(settings, topics, tmp_path)
    yield running
    running.stop()
    # quixstreams' own topics (repartition__…, changelog__…) carry the group in their names.
    names = running.producer.list_topics(timeout=10).topics
    delete_topics(settings, [n for n in names if running.group in n])


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


def level(
    event: str, minutes: float, item: str, quantity: int, product: str | None
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes),
        "inventory_item_id": item,
        "location_id": "default",
        "method": "absolute",
        "quantity": quantity,
        "product_id": product,
        "variant_id": None,
        "sku": None,
    }


def test_a_product_that_sells_out_pauses_its_campaigns_and_resumes_on_restock(
    worker: Worker,
) -> None:
    worker.publish(
        "CampaignProductLink",
        {
            "envelope": envelope("link-1", 0),
            "campaign_id": "c1",
            "product_id": "p1",
            "channel": "meta",
            "active": True,
        },
    )
    worker.publish(
        "ProductUpsert",
        {
            "envelope": envelope("prod-1", 0),
            "product_id": "p1",
            "title": "Merino Beanie",
            "handle": None,
            "status": "active",
            "vendor": None,
            "product_type": None,
            "tags": [],
            "variants": [
                {
                    "variant_id": "v2",
                    "sku": None,
                    "title": "Grey",
                    "price": {"amount_minor": 2500, "currency": "USD"},
                    "inventory_item_id": "i2",
                    "inventory_quantity": None,
                }
            ],
        },
    )
    worker.start()
    wait_for(
        lambda: (
            worker.committed_past("marketing.campaign-product-links.v1")
            and worker.committed_past("commerce.products.v1")
        ),
        timeout=90,
    )
    # p1's item i2 is known through p1's variants; p2's item i1 names its product itself.
    worker.publish("InventoryLevel", level("lv-1", 1, "i2", 2, None))
    worker.publish("InventoryLevel", level("lv-2", 3, "i2", 0, None))  # sold out: pause
    worker.publish("InventoryLevel", level("lv-2", 3, "i2", 0, None))  # a redelivery
    worker.publish("InventoryLevel", level("lv-3", 4, "i2", 9, None))  # back inside the dwell
    worker.publish("InventoryLevel", level("lv-4", 20, "i2", 4, None))  # after it: resume
    worker.publish("InventoryLevel", level("lv-5", 2, "i1", 0, "p2"))
    wait_for(lambda: len(worker.actions()) >= 3, timeout=90)
    time.sleep(2)  # anything more would arrive now
    actions = worker.actions()
    summary = [
        (a["product_id"], a["action"], a["available"], a["previous_available"], a["campaign_ids"])
        for a in actions
    ]
    assert summary == [
        ("p2", "pause", 0, None, []),
        ("p1", "pause", 0, 2, ["c1"]),
        ("p1", "resume", 9, None, ["c1"]),
    ]
    _, pause, resume = actions
    assert pause["envelope"]["occurred_at"] == T0 + timedelta(minutes=3)
    assert pause["envelope"]["caused_by"] == ["lv-2"]
    # The restock came inside the 5-minute dwell: the resume takes effect when the dwell ends.
    assert resume["envelope"]["occurred_at"] == T0 + timedelta(minutes=8)
    assert pause["envelope"]["source"] == "derived"
    assert pause["envelope"]["event_id"] != resume["envelope"]["event_id"]


def expected_actions(updates: list[tuple[str, int, int]]) -> list[tuple[str, str, str, int]]:
    """What an uninterrupted run derives, from the pure breaker: (product, action, at, available)
    per pause and resume. One item per product, so a product's totals are its item's levels."""
    rules = BreakerRules(
        out_of_stock_at=0, restock_at=1, low_stock_below=None, dwell=timedelta(minutes=5)
    )
    states: dict[str, BreakerState] = {}
    found = []
    for product, minute, quantity in updates:
        state, decisions = observe(
            states.get(product, BreakerState()), quantity, T0 + timedelta(minutes=minute), rules
        )
        states[product] = state
        found += [(product, d.transition.value, d.at.isoformat(), d.available) for d in decisions]
    return sorted(found)


def as_found(actions: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return sorted(
        (a["product_id"], a["action"], a["envelope"]["occurred_at"].isoformat(), a["available"])
        for a in actions
    )


@pytest.mark.slow
def test_a_worker_killed_mid_stream_ends_with_exactly_the_uninterrupted_actions(
    worker: Worker,
) -> None:
    rng = random.Random(7)
    products = [f"p{n}" for n in range(40)]
    updates = []
    for step in range(60):  # 2,400 updates; a product's updates are 3 minutes apart
        for product in products:
            updates.append((product, step * 3, rng.choice([0, 0, 1, 2, 5, 9])))
    expected = expected_actions(updates)
    assert len(expected) > 300

    worker.start()
    fed = 0

    def feed(until: int) -> None:
        nonlocal fed
        for product, minute, quantity in updates[fed:until]:
            worker.publish_quietly(
                "InventoryLevel",
                level(f"{product}-{minute}", minute, f"i-{product}", quantity, product),
            )
        worker.producer.flush(30)
        fed = until

    restarts = []
    for until in (600, 1200, 1800):
        feed(until)
        time.sleep(rng.uniform(1.0, 3.0))  # somewhere inside the batch
        assert worker.process is not None
        worker.process.kill()  # SIGKILL: no goodbye, a transaction left open
        worker.process.wait()
        before = worker.committed_total("commerce.inventory-levels.v1")
        worker.start()
        started = time.monotonic()
        feed(until + 60)
        # Working again: the restarted instance has committed input past where the dead one was.
        wait_for(
            lambda b=before: worker.committed_total("commerce.inventory-levels.v1") > b,  # type: ignore[misc]
            timeout=60,
        )
        restarts.append(time.monotonic() - started)
    feed(len(updates))
    wait_for(lambda: len(worker.actions()) >= len(expected), timeout=120)
    time.sleep(3)  # anything extra (a duplicate) would be readable by now
    actions = worker.actions()
    assert as_found(actions) == expected
    assert len({a["envelope"]["event_id"] for a in actions}) == len(actions)
    # Static membership, a stable transactional id fenced at start, and short fetch waits: back at
    # work within seconds, not the 44-75 s of a rejoin that waits out the dead member. The target
    # is 10 s; restarts here measure 8-13 s (docs/streams.md says where the time goes), so this
    # bound guards against a regression to waiting out sessions and transactions.
    assert max(restarts) < 20, restarts
    print(f"restarts took {', '.join(f'{s:.1f}' for s in restarts)} s")
