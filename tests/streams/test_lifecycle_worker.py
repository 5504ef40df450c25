"""`revloop worker` against the real broker: orders in, lifecycle triggers out, the time-driven
ones fired by stream time (session-window timers), exactly once."""

from __future__ import annotations

import time
from datetime import timedelta

from tests.normalizer_support import wait_for
from tests.streams.test_attribution_worker import order
from tests.worker_support import T0, Worker

TRIGGERS = "lifecycle.triggers.v1"
DAY = 24 * 60  # minutes
START = -120 * DAY  # event times in the past: brokers refuse timestamps far ahead of their clock


def test_orders_trigger_flows_and_stream_time_fires_win_back_and_churn_risk(
    worker: Worker,
) -> None:
    worker.start()
    # A: every 10 days, then silent: at risk 30 days after the last order, win back after 60.
    for n, day in enumerate((0, 10, 20)):
        worker.publish_quietly(
            "OrderEvent", order(f"a{n}", START + day * DAY, f"a{n}", "ka", 1_000)
        )
    # B: a second order 50 days on postpones win back; a 50-day habit is no churn risk at 30.
    for n, day in enumerate((0, 50)):
        worker.publish_quietly(
            "OrderEvent", order(f"b{n}", START + day * DAY, f"b{n}", "kb", 1_000)
        )
    # A guest has no lifecycle; a repeated delivery counts once.
    worker.publish_quietly("OrderEvent", order("g0", START, "g0", None, 1_000))
    worker.publish_quietly("OrderEvent", order("a0", START, "a0", "ka", 1_000))
    worker.producer.flush(10)
    wait_for(lambda: len(worker.read(TRIGGERS)) >= 4, timeout=90)
    assert not [t for t in worker.read(TRIGGERS) if t["flow"] in ("win_back", "churn_risk")]
    # Other customers' orders on day 100 move every partition's stream time past the timers.
    for n in range(200):
        worker.publish_quietly(
            "OrderEvent", order(f"f{n}", START + 100 * DAY, f"f{n}", f"kf{n}", 500)
        )
    worker.producer.flush(10)
    wait_for(lambda: len(worker.read(TRIGGERS)) >= 206, timeout=120)
    time.sleep(2)  # anything more would arrive now
    triggers = worker.read(TRIGGERS)
    assert len(triggers) == 206
    mine = sorted(
        (t["customer_id"], t["flow"], t["order_id"], (t["due_at"] - T0) / timedelta(days=1) + 120)
        for t in triggers
        if t["customer_id"] in ("id-ka", "id-kb") and t["flow"] in ("win_back", "churn_risk")
    )
    # The time-driven flows follow from the state alone: exact anchors and due times.
    assert mine == [("id-ka", "churn_risk", "a2", 50.0), ("id-ka", "win_back", "a2", 80.0)]
    # The order-driven ones go to the first and second order *seen*: the orders topic is keyed
    # by order, so a customer's orders can reach the worker in any order (docs/streams.md).
    for customer, orders in (("id-ka", {"a0", "a1", "a2"}), ("id-kb", {"b0", "b1"})):
        flows = sorted((t["flow"], t["order_id"]) for t in triggers if t["customer_id"] == customer)
        order_driven = [f for f in flows if f[0] in ("post_purchase", "repeat_customer")]
        assert [f for f, _ in order_driven] == ["post_purchase", "repeat_customer"]
        assert {o for _, o in order_driven} <= orders and len({o for _, o in order_driven}) == 2
    win_back = next(t for t in triggers if t["flow"] == "win_back")
    assert win_back["envelope"]["caused_by"] == ["a2"]
    assert win_back["customer_key"] == "ka"
    assert len({t["trigger_id"] for t in triggers}) == len(triggers)
