"""The stateful steps the worker runs, as the pure functions they are: stored JSON and a record
in, stored JSON and outputs out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from revloop.settings import Settings
from revloop.stores import SettingsVersion, StoreSettings
from streams.attribution.promotion import promotion_step
from streams.attribution.rules import AttributionRules
from streams.attribution.topology import customer_step
from streams.attribution.topology import rules_from as attribution_rules_from
from streams.circuit_breaker.breaker import BreakerRules
from streams.circuit_breaker.topology import item_step, product_step, variant_records
from streams.circuit_breaker.topology import rules_from as breaker_rules_from

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


def test_a_level_naming_a_variant_waits_for_its_products_variants() -> None:
    """BigCommerce and WooCommerce levels name their product and variant. Owned at once, the
    product would look sold out when one of its variants is (its other variants not known
    yet), so the level waits for the product's variants, however late they come."""
    named = [{**level(n, n, q, product="p1"), "variant_id": "v1"} for n, q in ((1, 2), (2, 0))]
    assert run(lambda r, s: item_step(r, s, LATENESS), named) == []
    variant = {"kind": "variant", "store_id": "s", "item_id": "i1", "product_id": "p1"}
    out = run(lambda r, s: item_step(r, s, LATENESS), [*named, {**variant, "variant_id": "v1"}])
    assert [(o["available"], o["variant_id"]) for o in out] == [(2, "v1"), (0, "v1")]
    # The only variant of its product: the product's own breaker, not a variant's.
    out = run(lambda r, s: item_step(r, s, LATENESS), [*named, {**variant, "variant_id": None}])
    assert {o["variant_id"] for o in out} == {None}


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
        lambda r, s: product_step(r, s, lambda *_: RULES),
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


# -- a store's own settings, resolved per event time ----------------------------------------------

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
T_CHANGE = datetime.fromisoformat(at(30))


def test_each_observation_uses_its_stores_thresholds_in_effect_at_its_time() -> None:
    """Store s pauses at 3 or below from minute 30; store t keeps the default (0)."""
    stores = StoreSettings(
        SETTINGS,
        {
            "s": (
                SettingsVersion(T_CHANGE, {"breaker_out_of_stock_at": 3, "breaker_restock_at": 6}),
            )
        },
    )

    def rules(store_id: str, when: datetime) -> BreakerRules:
        return stores.build(store_id, when, breaker_rules_from)

    def of(store: str, minute: int, available: int) -> dict[str, Any]:
        return {**total("a", minute, available, "va"), "store_id": store}

    for store, expected in [("s", [("pause", 31)]), ("t", [])]:
        out = run(
            lambda r, s: product_step(r, s, rules),
            [of(store, 10, 3), of(store, 20, 9), of(store, 31, 3)],
        )
        actions = [
            (o["action"], o["envelope"]["occurred_at"].minute) for o in out if o["variant_id"]
        ]
        assert actions == expected, store  # 3 at minute 10 was before s's change: no pause


def test_an_order_keeps_the_rules_of_its_time_when_later_events_settle_it_again() -> None:
    """From minute 30 the store counts an order as incremental from 5000 bp (was 7000). A
    repeat order (5000 bp) placed before stays not incremental, even when an event after the
    change settles the customer's orders again; one placed after is incremental."""
    stores = StoreSettings(
        SETTINGS, {"s": (SettingsVersion(T_CHANGE, {"attribution_incremental_at_bp": 5000}),)}
    )

    def rules(store_id: str, when: datetime) -> AttributionRules:
        return stores.build(store_id, when, attribution_rules_from)

    def touch(minute: int) -> dict[str, Any]:
        return {
            "kind": "touch",
            "store_id": "s",
            "platform": "shopify",
            "customer": "k",
            "touchpoint_id": f"t{minute}",
            "event_id": f"touch-{minute}",
            "touch_kind": "ad_click",
            "at": at(minute),
            "campaign_id": "c1",
            "channel": "meta",
        }

    def placed(order: str, minute: int) -> dict[str, Any]:
        return {
            "kind": "placed",
            "store_id": "s",
            "platform": "shopify",
            "customer": "k",
            "customer_key": "k",
            "order_id": order,
            "event_id": f"{order}-created",
            "at": at(minute),
            "total_minor": 5000,
            "currency": "USD",
            "lines": [],
        }

    # o1 is the first order after a campaign touch: 10000 bp; o2 and o3 are repeats: 5000 bp.
    out = run(
        lambda r, s: customer_step(r, s, rules, LATENESS),
        [touch(1), placed("o1", 5), placed("o2", 10), placed("o3", 40), touch(45)],
    )
    assert [(o["order_id"], o["confidence_bp"], o["is_incremental"]) for o in out] == [
        ("o1", 10_000, True),
        ("o2", 5000, False),
        ("o3", 5000, True),
    ]  # and no correction of o2 when touch t45 settled it again
