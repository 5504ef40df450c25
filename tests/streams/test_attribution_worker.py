"""`revloop worker` against the real broker: touchpoints, orders and campaign links in,
attribution scores out, exactly once, read with read_committed."""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

import pytest

from revloop.ids import deterministic_id
from revloop.ledger import (
    DaySpend,
    Entry,
    score_entries,
    spend_report_entries,
    touch_spend_entries,
)
from revloop.settings import Settings
from streams.attribution.scoring import CustomerBook, Score, observe, standing_minor
from streams.attribution.topology import customer_of, order_records, rules_from, scoring_input
from tests.normalizer_support import wait_for
from tests.worker_support import T0, Worker, envelope

SCORES = "analytics.attribution-scores.v1"
TRIGGERS = "lifecycle.triggers.v1"


def link(
    event: str, minutes: float, campaign: str, product: str, active: bool = True
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes),
        "campaign_id": campaign,
        "product_id": product,
        "channel": "meta",
        "active": active,
    }


def touchpoint(
    n: str,
    minutes: float,
    customer: str,
    campaign: str | None = "c1",
    kind: str = "ad_click",
    cost: int | None = None,
) -> dict[str, Any]:
    return {
        "envelope": envelope(f"touch-{n}", minutes),
        "touchpoint_id": n,
        "kind": kind,
        "channel": "meta",
        "customer_key": customer,
        "campaign_id": campaign,
        "ad_id": None,
        "content_id": None,
        "product_ids": [],
        "click_id": None,
        "landing_url": None,
        "cost": None if cost is None else money(cost),
    }


def spend_report(n: str, minutes: float, campaign: str, day: date, minor: int) -> dict[str, Any]:
    return {
        "envelope": envelope(f"spend-{n}", minutes),
        "channel": "meta",
        "campaign_id": campaign,
        "day": day,
        "spend": money(minor),
    }


def money(minor: int) -> dict[str, Any]:
    return {"amount_minor": minor, "currency": "USD"}


def order(
    event: str,
    minutes: float,
    order_id: str,
    customer: str | None,
    total: int,
    products: tuple[str, ...] = (),
    kind: str = "created",
    refund: tuple[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "envelope": envelope(event, minutes),
        "kind": kind,
        "order_id": order_id,
        "order_number": None,
        "customer_id": f"id-{customer}" if customer else None,
        "customer_key": customer,
        "currency": "USD",
        "total": money(total) if kind != "refunded" else None,
        "subtotal": None,
        "total_tax": None,
        "total_discounts": None,
        "total_shipping": None,
        "financial_status": None,
        "fulfillment_status": None,
        "placed_at": None,
        "cancelled_at": None,
        "line_items": [
            {
                "line_item_id": f"{order_id}-{i}",
                "product_id": product,
                "variant_id": None,
                "sku": None,
                "title": None,
                "quantity": 1,
                "unit_price": money(total // max(1, len(products))),
                "total": money(total // max(1, len(products))),
            }
            for i, product in enumerate(products)
        ],
        "refund": (
            {
                "refund_id": refund[0],
                "amount": money(refund[1]),
                "created_at": T0 + timedelta(minutes=minutes),
                "line_items": [],
            }
            if refund
            else None
        ),
        "attribution_hints": {},
    }


def summary(scores: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            s["order_id"],
            s["confidence_bp"],
            s["incremental_revenue"]["amount_minor"],
            [(c["touchpoint_id"], c["amount"]["amount_minor"]) for c in s["credits"]],
            s["signals"],
            s["reverses"] is not None,
        )
        for s in scores
    ]


def test_orders_are_scored_against_touches_and_promotions_and_refunds_reverse_them(
    worker: Worker,
) -> None:
    worker.publish("CampaignProductLink", link("link-1", 0, "c1", "p1"))
    worker.publish("Touchpoint", touchpoint("t1", 1, "k1"))
    worker.start()
    wait_for(lambda: worker.committed_past("marketing.touchpoints.v1"), timeout=90)
    # k1's first order after a campaign click, of a promoted product: fully confident.
    worker.publish("OrderEvent", order("o1-created", 10, "o1", "k1", 5_000, ("p1",)))
    worker.publish("OrderEvent", order("o1-paid", 11, "o1", "k1", 5_000, ("p1",), "paid"))
    worker.publish(
        "OrderEvent", order("o1-r1", 30, "o1", "k1", 0, kind="refunded", refund=("r1", 1_000))
    )
    # A guest order of an unpromoted product: nothing to go on.
    worker.publish("OrderEvent", order("o2-created", 12, "o2", None, 7_000, ("p2",)))
    # k2 orders, then a touch from before the order arrives late: a correction.
    worker.publish("OrderEvent", order("o3-created", 20, "o3", "k2", 3_000))
    wait_for(lambda: len(worker.read(SCORES)) >= 4, timeout=90)
    worker.publish("Touchpoint", touchpoint("t2", 15, "k2"))
    wait_for(lambda: len(worker.read(SCORES)) >= 6, timeout=90)
    time.sleep(2)  # anything more would arrive now
    by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for score in worker.read(SCORES):  # one key per order: in order within it
        by_order[score["order_id"]].append(score)
    assert summary(by_order["o1"]) == [
        (
            "o1",
            10_000,
            5_000,
            [("t1", 5_000)],
            ["touchpoint_in_window", "acquired_via_campaign", "promoted_item:p1"],
            False,
        ),
        ("o1", 10_000, -1_000, [("t1", -1_000)], ["reversal:refund:r1"], True),
    ]
    assert summary(by_order["o2"]) == [("o2", 0, 0, [], [], False)]
    assert summary(by_order["o3"]) == [
        ("o3", 0, 0, [], [], False),
        ("o3", 0, 0, [], ["reversal:correction"], True),
        (
            "o3",
            10_000,
            3_000,
            [("t2", 3_000)],
            ["touchpoint_in_window", "acquired_via_campaign"],
            False,
        ),
    ]
    first, reversal = by_order["o1"]
    assert reversal["reverses"] == first["envelope"]["event_id"]
    assert first["envelope"]["caused_by"] == ["o1-created", "touch-t1"]
    assert first["envelope"]["occurred_at"] == T0 + timedelta(minutes=10)
    assert first["customer_key"] == "k1" and not first["holdout"]
    assert by_order["o3"][1]["envelope"]["caused_by"] == [
        by_order["o3"][0]["envelope"]["event_id"],
        "touch-t2",
    ]


def expected_standing(
    events: list[tuple[str, dict[str, Any]]], settings: Settings
) -> tuple[dict[str, int], dict[str, tuple[object, ...]]]:
    """What an uninterrupted run stands at, from the pure scoring, customer by customer."""
    rules = rules_from(settings)
    lateness = timedelta(hours=settings.attribution_lateness_hours)
    books: dict[str, CustomerBook] = {}
    out: list[Score] = []
    for record, value in events:
        if record == "CampaignSpend":
            continue  # the ledger's alone
        if record == "Touchpoint":
            customer, key = value["customer_key"], value["customer_key"]
            inputs = [
                {
                    "kind": "touch",
                    "touchpoint_id": value["touchpoint_id"],
                    "event_id": value["envelope"]["event_id"],
                    "touch_kind": value["kind"],
                    "at": value["envelope"]["occurred_at"].isoformat(),
                    "campaign_id": value["campaign_id"],
                    "channel": value["channel"],
                }
            ]
        else:
            customer, key = customer_of(value), value["customer_key"]
            inputs = order_records(value)
            # One campaign promotes "px" from the start: every line of it is promoted.
            inputs += [
                {
                    "kind": "promotion",
                    "order_id": value["order_id"],
                    "line_item_id": line["line_item_id"],
                    "promoted": line["product_id"] == "px",
                    "event_id": value["envelope"]["event_id"],
                    "at": value["envelope"]["occurred_at"].isoformat(),
                }
                for line in value["line_items"]
                if value["kind"] == "created"
            ]
        for record_json in inputs:
            book = books.get(customer, CustomerBook(customer_key=key))
            books[customer], scores = observe(
                book,
                scoring_input(record_json),
                rules,
                lateness,
                lambda what: deterministic_id(what),
            )
            out += scores
    return _standing(out)


def _standing(out: list[Any]) -> tuple[dict[str, int], dict[str, tuple[object, ...]]]:
    minor = {order: total for order, total in standing_minor(out).items() if total}
    reversed_ids = {s.reverses for s in out if s.reverses}
    content = {
        s.order_id: s.content()
        for s in out
        if s.reverses is None and s.event_id not in reversed_ids
    }
    return minor, content


def as_scores(values: list[dict[str, Any]]) -> list[Score]:
    return [
        Score(
            event_id=v["envelope"]["event_id"],
            order_id=v["order_id"],
            at=v["envelope"]["occurred_at"],
            confidence_bp=v["confidence_bp"],
            is_incremental=v["is_incremental"],
            model=v["model"],
            order_total_minor=v["order_total"]["amount_minor"],
            currency=v["order_total"]["currency"],
            incremental_minor=v["incremental_revenue"]["amount_minor"],
            credits=tuple(
                {
                    "touchpoint_id": c["touchpoint_id"],
                    "campaign_id": c["campaign_id"],
                    "channel": c["channel"],
                    "weight_bp": c["weight_bp"],
                    "amount_minor": c["amount"]["amount_minor"],
                }
                for c in v["credits"]
            ),
            signals=tuple(v["signals"]),
            holdout=v["holdout"],
            reverses=v["reverses"],
        )
        for v in values
    ]


@pytest.mark.slow
def test_a_worker_killed_mid_stream_ends_with_exactly_the_uninterrupted_scores_and_triggers(
    worker: Worker,
) -> None:
    rng = random.Random(11)
    customers = [f"k{n}" for n in range(60)]
    events: list[tuple[str, dict[str, Any]]] = []
    for step in range(20):  # 1,200 customer events: touches, orders, refunds, cancellations
        for n, customer in enumerate(customers):
            minute = step * 60 + n
            roll = rng.random()
            order_id = f"o-{customer}-{step}"
            if roll < 0.45:
                kind = rng.choice(["ad_click", "ad_view", "content_view"])
                cost = rng.choice([None, 0, rng.randrange(1, 300)])
                touch = touchpoint(f"t-{customer}-{step}", minute, customer, kind=kind, cost=cost)
                events.append(("Touchpoint", touch))
            elif roll < 0.85:
                total = rng.randrange(500, 20_000)
                events.append(
                    (
                        "OrderEvent",
                        order(
                            f"{order_id}-c",
                            minute,
                            order_id,
                            customer,
                            total,
                            rng.choice([("px",), ("px", "py"), ("py",)]),
                        ),
                    )
                )
            elif roll < 0.95 and step:
                earlier = f"o-{customer}-{rng.randrange(step)}"
                refund = (f"r-{customer}-{step}", rng.randrange(100, 3_000))
                events.append(
                    (
                        "OrderEvent",
                        order(
                            f"{earlier}-r{step}",
                            minute,
                            earlier,
                            customer,
                            0,
                            kind="refunded",
                            refund=refund,
                        ),
                    )
                )
            elif step:
                earlier = f"o-{customer}-{rng.randrange(step)}"
                events.append(
                    (
                        "OrderEvent",
                        order(f"{earlier}-x", minute, earlier, customer, 0, kind="cancelled"),
                    )
                )
        # Each step, a campaign's day of spend reported again: more, less, or late and older.
        reported = step * 60 + 30 - rng.choice([0, 0, 90])
        day = date(2026, 12, 1 + step % 2)
        report = spend_report(f"{step}", reported, f"c{step % 3}", day, rng.randrange(0, 50_000))
        events.append(("CampaignSpend", report))
    expected = expected_standing(events, worker.settings)
    assert len(expected[0]) > 100

    worker.publish("CampaignProductLink", link("link-px", -60, "c1", "px"))
    worker.start()
    fed = 0

    def feed(until: int) -> None:
        nonlocal fed
        for record, value in events[fed:until]:
            worker.publish_quietly(record, value)
        worker.producer.flush(30)
        fed = until

    for until in (300, 600, 900):
        feed(until)
        time.sleep(rng.uniform(1.0, 3.0))  # somewhere inside the batch
        assert worker.process is not None
        worker.process.kill()  # SIGKILL
        worker.process.wait()
        worker.start()
    feed(len(events))
    # The scores pass three stages after the inputs: wait until they stand where they should,
    # then a little longer, for anything extra (a duplicate) to show.
    with contextlib.suppress(AssertionError):  # the comparison below shows how they differ
        wait_for(lambda: _standing(as_scores(worker.read(SCORES))) == expected, timeout=180)
    time.sleep(3)
    values = worker.read(SCORES)
    assert _standing(as_scores(values)) == expected
    assert len({v["envelope"]["event_id"] for v in values}) == len(values)  # nothing twice
    # Each score's ledger entries, written in its transaction: exactly the postings of the
    # scores that stand, none twice, none missing.
    booked = [
        (e["entry_id"], e["debit_account"], e["amount"]["amount_minor"], e["reverses_entry_id"])
        for e in worker.read("billing.ledger-entries.v1")
    ]
    # Touch costs and spend reports book ad spend in the same transactions as they are read.
    spent: list[Entry] = [e for r, v in events if r == "Touchpoint" for e in touch_spend_entries(v)]
    days: dict[tuple[str, date], DaySpend | None] = defaultdict(lambda: None)
    for record, value in events:
        if record == "CampaignSpend":
            campaign_day = (value["campaign_id"], value["day"])
            booked_now, days[campaign_day] = spend_report_entries(days[campaign_day], value)
            spent += booked_now
    postings = [
        (e.entry_id, f"{e.store_id}/{e.currency}/{e.debit}", e.amount_minor, e.reverses_entry_id)
        for e in [*(e for v in values for e in score_entries(v)), *spent]
    ]
    assert sorted(booked) == sorted(postings)
    assert len(postings) > 0
    assert "acme/USD/ad_spend" in {debit for _, debit, _, _ in booked}
    # The lifecycle rode along: one post_purchase per customer who ordered, one repeat_customer
    # per customer who ordered twice (the time-driven flows are weeks away in this stream).
    orders_per_customer = Counter(
        value["customer_key"]
        for record, value in events
        if record == "OrderEvent" and value["kind"] == "created"
    )
    wanted = Counter(f"id-{c}" for c in orders_per_customer) + Counter(
        f"id-{c}" for c, n in orders_per_customer.items() if n >= 2
    )
    wait_for(lambda: len(worker.read(TRIGGERS)) >= sum(wanted.values()), timeout=60)
    time.sleep(2)
    triggers = worker.read(TRIGGERS)
    assert Counter(t["customer_id"] for t in triggers) == wanted
    assert {t["flow"] for t in triggers} == {"post_purchase", "repeat_customer"}
    assert len({t["trigger_id"] for t in triggers}) == len(triggers)
