"""The Postgres sink judged by SIGKILL: killed mid-stream several times and restarted, it ends
with every table equal to an uninterrupted run's over the same topics."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from revloop.settings import Settings
from tests.sink_events import (
    action,
    customer,
    level,
    link,
    order,
    product,
    redact,
    refund,
    score,
    touchpoint,
    trigger,
)
from tests.sink_support import Sink, scratch_database, table_contents


def stream(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """A mixed stream over a few stores and entities: updates out of order, duplicates,
    refunds, reversals, a redaction."""
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        store = f"s{rng.randrange(3)}"
        minute = rng.uniform(0, 600)
        c = rng.randrange(40)
        o = rng.randrange(200)
        kind = rng.randrange(10)
        if kind == 0:
            variants = [f"v{rng.randrange(30)}" for _ in range(rng.randrange(1, 3))]
            p = f"p{rng.randrange(30)}"
            events.append(("ProductUpsert", product(f"e{i}", minute, p, f"T{i}", variants, store)))
        elif kind == 1:
            method = rng.choice(["absolute", "relative"])
            quantity = rng.randrange(0, 20) if method == "absolute" else rng.randrange(-3, 4)
            item = f"item-v{rng.randrange(30)}"
            events.append(("InventoryLevel", level(f"e{i}", minute, item, quantity, method, store)))
        elif kind == 2:
            email = f"c{c}@example.com"
            events.append(
                ("CustomerUpsert", customer(f"e{i}", minute, f"cu{c}", f"k{c}", email, store))
            )
        elif kind == 3:
            state = rng.choice(["created", "paid", "updated"])
            events.append(
                (
                    "OrderEvent",
                    order(f"e{i}", minute, f"o{o}", state, f"cu{c}", f"k{c}", store=store),
                )
            )
        elif kind == 4:
            events.append(("OrderEvent", refund(f"e{i}", minute, f"o{o}", f"r{i}", 100, store)))
        elif kind == 5:
            events.append(
                ("Touchpoint", touchpoint(f"e{i}", minute, f"t{i}", f"k{c}", "c1", store))
            )
        elif kind == 6:
            active = rng.random() < 0.5
            events.append(
                (
                    "CampaignProductLink",
                    link(f"e{i}", minute, f"c{c % 4}", f"p{o % 30}", active, store),
                )
            )
        elif kind == 7:
            events.append(
                (
                    "AttributionScore",
                    score(
                        f"e{i}", minute, f"o{o}", f"k{c}", rng.randrange(-500, 5000), store=store
                    ),
                )
            )
        elif kind == 8:
            events.append(("LifecycleTrigger", trigger(f"e{i}", minute, f"cu{c}", f"k{c}", store)))
        else:
            events.append(
                ("CircuitBreakerAction", action(f"e{i}", minute, f"p{o % 30}", "pause", 0, store))
            )
        if rng.random() < 0.05:
            events.append(events[-1])  # a duplicate delivery
    events.append(("CustomerRedact", redact("red-1", 300, "cu1", "k1", ["o1"], "s1")))
    return events


@pytest.mark.slow
def test_a_sink_killed_mid_stream_ends_with_the_uninterrupted_tables(
    settings: Settings, sink: Sink, tmp_path: Path
) -> None:
    events = stream(4000, seed=11)
    for record, value in events:
        sink.publish(record, value, flush=False)
    sink.producer.flush(30)
    with scratch_database(settings) as reference_dsn:
        (tmp_path / "reference").mkdir()
        reference = Sink(settings, sink.topics, reference_dsn, tmp_path / "reference")
        reference.start(REVLOOP_SINK_BATCH_SIZE="500")
        small = {"REVLOOP_SINK_BATCH_SIZE": "40"}
        rng = random.Random(3)
        for _ in range(3):
            sink.start(**small)
            time.sleep(rng.uniform(2.0, 4.0))
            sink.kill()
        # The kills fell mid-stream: batches were committed, and the end not yet reached.
        before = sink.stored_total()
        assert before > 0
        assert not sink.caught_up()
        sink.start(**small)
        # Static membership: the restart takes its partitions back at once, not after the
        # dead life's 45 s session.
        started = time.monotonic()
        while sink.stored_total() == before:
            assert time.monotonic() - started < 15, "the restarted sink did not resume in 15 s"
            time.sleep(0.2)
        sink.wait_caught_up(timeout=180)
        reference.wait_caught_up(timeout=180)
        reference.stop()
        expected = table_contents(reference_dsn)
    found = table_contents(sink.dsn)
    assert sum(len(rows) for rows in expected.values()) > 3000
    for name in expected:
        assert found[name] == expected[name], name
