"""The stateful steps the worker runs, as the pure functions they are: stored JSON and a record
in, stored JSON and outputs out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from streams.attribution.promotion import promotion_step
from streams.circuit_breaker.breaker import BreakerRules
from streams.circuit_breaker.topology import item_step, product_step, variant_records

LATENESS = timedelta(days=7)
RULES = BreakerRules(out_of_stock_at=0, restock_at=1, low_stock_below=None, dwell=timedelta(0))


def at(minute: int) -> str:
    return f"2026-12-01T09:{minute:02d}:00+00:00"


def level(n: int, minute: int, quantity: int, product: str | None = None) -> dict[str, Any]:
    return {
        "kind": "level",
        "store_id": "s",
        "platform": "shopify",
        "item_id": "i1",
        "event_id": f"lv-{n}",
        "location_id": "loc",
        "method": "absolute",
        "quantity": quantity,
        "at": at(minute),
        "product_id": product,
        "variant_id": None,
    }


def run(step: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stored: dict[str, Any] = {}
    out = []
    for record in records:
        stored, emitted = step(record, stored)
        out += emitted
    return out


def test_totals_from_before_the_item_had_a_product_are_sent_in_order_once_it_has() -> None:
    variant = {
        "kind": "variant",
        "store_id": "s",
        "item_id": "i1",
        "product_id": "p1",
        "variant_id": "v1",
    }
    out = run(
        lambda r, s: item_step(r, s, LATENESS),
        [level(1, 1, 3), level(2, 2, 0), level(3, 3, 4), variant],
    )
    assert [(o["available"], o["at"], o["cause"]) for o in out] == [
        (3, at(1), "lv-1"),
        (0, at(2), "lv-2"),
        (4, at(3), "lv-3"),
    ]
    assert {(o["product_id"], o["variant_id"]) for o in out} == {("p1", "v1")}


def test_a_simple_product_has_no_variant_breaker() -> None:
    product = {
        "record": "ProductUpsert",
        "envelope": {"store_id": "s"},
        "product_id": "p1",
        "variants": [{"variant_id": "p1", "inventory_item_id": "i1"}],
    }
    assert [r["variant_id"] for r in variant_records(product)] == [None]
    (total,) = run(lambda r, s: item_step(r, s, LATENESS), [level(1, 1, 0, product="p1")])
    assert total["variant_id"] is None


def total(item: str, minute: int, available: int, variant: str) -> dict[str, Any]:
    return {
        "kind": "item_total",
        "store_id": "s",
        "platform": "shopify",
        "item_id": item,
        "product_id": "p1",
        "variant_id": variant,
        "available": available,
        "at": at(minute),
        "cause": f"{item}-{minute}",
    }


def test_the_product_breaker_waits_for_every_item_of_the_product() -> None:
    structure = {
        "kind": "structure",
        "store_id": "s",
        "product_id": "p1",
        "items": ["a", "b"],
        "at": at(0),
    }
    out = run(
        lambda r, s: product_step(r, s, RULES),
        [structure, total("a", 1, 0, "va"), total("b", 2, 0, "vb")],
    )
    # a's sell-out pauses variant va only: b had not reported, so p1's total was not known.
    assert [(o["variant_id"], o["action"], o["envelope"]["occurred_at"].minute) for o in out] == [
        ("va", "pause", 1),
        (None, "pause", 2),
        ("vb", "pause", 2),
    ]


def line(minute: int) -> dict[str, Any]:
    return {
        "kind": "line",
        "store_id": "s",
        "product_id": "p1",
        "customer": "k",
        "order_id": "o1",
        "line_item_id": "l1",
        "at": at(minute),
        "event_id": "order-1",
    }


def link(minute: int, active: bool) -> dict[str, Any]:
    return {
        "kind": "link",
        "store_id": "s",
        "product_id": "p1",
        "campaign_id": "c1",
        "active": active,
        "at": at(minute),
        "event_id": f"link-{minute}",
    }


def test_a_late_campaign_link_promotes_the_lines_it_covers_again() -> None:
    out = run(lambda r, s: promotion_step(r, s, LATENESS), [line(5), link(1, True), link(3, False)])
    assert [(o["promoted"], o["event_id"]) for o in out] == [
        (False, "order-1"),
        (True, "link-1"),
        (False, "link-3"),
    ]
    # A link that changes after the order changes nothing for it.
    out = run(lambda r, s: promotion_step(r, s, LATENESS), [link(1, True), line(5), link(9, False)])
    assert [o["promoted"] for o in out] == [True]
