"""Rebuilding derived state from history with a fresh group gives the same outputs as the live
run (issue 17, "Determinism"), checked with content digests.

The live run: canonical events under prefix A, `revloop worker` over them. The rebuild: A's
input topics copied record for record (key, value, timestamp, partition) under prefix B, and a
fresh worker (new group, new state directory) over B. Each derived topic is digested as the
sorted multiset of (key, canonical JSON of the decoded value): every field of every value
counts, ids included (they are deterministic). Kafka timestamps of derived records are left out:
a record the worker produces is stamped when it is produced, which is not part of its content.

The events are chosen so that the outcome cannot depend on how the worker interleaves its
inputs: each customer has one order (its created, paid and refunded events share a key, hence a
partition, hence an order), and the customers with touchpoints never order (their costs are
booked to the ledger). Where inputs of one
customer come from several partitions or topics, the worker sees them in arrival order, which a
rebuild does not reproduce (docs/streams.md); such outputs are deterministic only as standings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from revloop.kafka import (
    consumer_config,
    delete_topics,
    ensure_topics,
    high_watermarks,
    producer_config,
    read_ranges,
)
from revloop.settings import Settings
from schemas.topics import Topic
from tests.normalizer_support import SERDE, wait_for
from tests.streams.test_attribution_worker import order, touchpoint
from tests.worker_support import Worker

INPUTS = ("commerce.orders.v1", "marketing.touchpoints.v1")
DERIVED = ("analytics.attribution-scores.v1", "billing.ledger-entries.v1", "lifecycle.triggers.v1")
"""The circuit breaker's outputs are not here: they join products, levels and links from three
topics, so they follow arrival order (its own worker test checks a restart against an
uninterrupted run)."""


def canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def digest(records: list[tuple[bytes | None, dict[str, Any]]]) -> str:
    lines = sorted(
        json.dumps([(key or b"").decode(), canonical(value)], separators=(",", ":"))
        for key, value in records
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_all(settings: Settings, name: str) -> list[tuple[Any, ...]]:
    """(partition, key, value bytes, timestamp) of every committed record of ``name``."""
    reader = Consumer(consumer_config(settings, "determinism-reader"))
    try:
        ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
        return [
            (m.partition(), m.key(), m.value(), m.timestamp()[1])
            for m in read_ranges(reader, ranges, timeout=30)
        ]
    finally:
        reader.close()


def outputs(worker: Worker) -> dict[str, list[tuple[bytes | None, dict[str, Any]]]]:
    found = {}
    for catalogue_name in DERIVED:
        records = read_all(worker.settings, worker.prefix + catalogue_name)
        found[catalogue_name] = [(key, SERDE.decode(value).value) for _, key, value, _ in records]
    return found


def run_to_end(worker: Worker) -> dict[str, list[tuple[bytes | None, dict[str, Any]]]]:
    wait_for(lambda: all(worker.committed_past(name) for name in INPUTS), timeout=120)
    time.sleep(1)  # the last transaction's outputs are committed with its offsets
    return outputs(worker)


@pytest.fixture
def two_workers(
    settings: Settings, scratch_catalogue: Any, tmp_path: Path
) -> Iterator[tuple[Worker, Worker]]:
    made = []
    for name in ("live", "rebuild"):
        topics: tuple[Topic, ...] = scratch_catalogue()
        ensure_topics(settings, topics)
        (tmp_path / name).mkdir()
        made.append(Worker(settings, topics, tmp_path / name))
    yield made[0], made[1]
    for worker in made:
        worker.stop()
        names = worker.producer.list_topics(timeout=10).topics
        delete_topics(settings, [n for n in names if worker.group in n])


def test_a_rebuild_from_history_with_a_fresh_group_gives_the_live_runs_outputs(
    settings: Settings, two_workers: tuple[Worker, Worker]
) -> None:
    live, rebuild = two_workers
    for n in range(12):  # one order per customer: created, paid, and for some a refund
        customer, total = f"k{n}", 1_000 + 100 * n
        live.publish_quietly("OrderEvent", order(f"o{n}-c", n, f"o{n}", customer, total, ("p1",)))
        live.publish_quietly(
            "OrderEvent", order(f"o{n}-p", n + 1, f"o{n}", customer, total, ("p1",), "paid")
        )
        if n % 3 == 0:
            refund = order(
                f"o{n}-r", n + 2, f"o{n}", customer, 0, kind="refunded", refund=(f"r{n}", 100)
            )
            live.publish_quietly("OrderEvent", refund)
    for n in range(6):  # touches with a cost, of visitors who never order
        live.publish_quietly("Touchpoint", touchpoint(f"t{n}", n, f"visitor{n}", cost=250))
    assert live.producer.flush(10) == 0
    # History copied record for record: same partition, key, value and timestamp. The two runs
    # share nothing but these inputs, so they run side by side.
    copier = Producer(producer_config(settings))
    for name in INPUTS:
        for partition, key, value, stamp in read_all(settings, live.prefix + name):
            copier.produce(rebuild.prefix + name, value, key, partition=partition, timestamp=stamp)
    assert copier.flush(10) == 0
    live.start()
    rebuild.start()
    first, second = run_to_end(live), run_to_end(rebuild)
    assert all(first[name] for name in DERIVED)  # equal digests of nothing would prove nothing

    for name in DERIVED:
        assert digest(second[name]) == digest(first[name]), _difference(first[name], second[name])


def _difference(a: list[tuple[Any, Any]], b: list[tuple[Any, Any]]) -> str:
    """A readable hint of what differs, for the failure message."""
    count: dict[str, int] = defaultdict(int)
    for key, value in a:
        count[json.dumps([str(key), canonical(value)])] += 1
    for key, value in b:
        count[json.dumps([str(key), canonical(value)])] -= 1
    return "\n".join(f"{n:+d} {line[:400]}" for line, n in count.items() if n)[:3000]
