"""`revloop sink postgres` against a real broker and a real Postgres: what lands in each table,
newest wins, bad rows to dead letters, redaction."""

from __future__ import annotations

from datetime import timedelta

from tests.sink_events import (
    action,
    customer,
    level,
    link,
    order,
    product,
    raw,
    refund,
    score,
    touchpoint,
    trigger,
)
from tests.sink_support import T0, Sink


def test_events_land_in_their_tables_and_an_older_event_changes_nothing(sink: Sink) -> None:
    sink.publish("ProductUpsert", product("prod-2", 10, "p1", "Merino Beanie", ["v1", "v2"]))
    # Older, and arriving later: the newer title and both variants stay.
    sink.publish("ProductUpsert", product("prod-1", 5, "p1", "Beanie", ["v1"]))
    sink.publish("ProductUpsert", product("prod-3", 20, "p2", "Scarf", ["v9"]))
    sink.publish("ProductUpsert", product("prod-4", 30, "p2", "Scarf", ["v8"]))  # v9 is gone
    sink.publish("InventoryLevel", level("lv-1", 1, "item-v1", 10))
    sink.publish("InventoryLevel", level("lv-2", 2, "item-v1", -3, "relative"))
    sink.publish("InventoryLevel", level("lv-0", 0, "item-v1", -100, "relative"))  # in the snapshot
    sink.publish("CustomerUpsert", customer("cust-1", 1, "cu1", "k1", "ada@example.com"))
    sink.publish("OrderEvent", order("ord-1", 3, "o1", "created", "cu1", "k1"))
    sink.publish("OrderEvent", order("ord-2", 4, "o1", "paid", "cu1", "k1", financial="paid"))
    sink.publish("OrderEvent", refund("ref-1", 6, "o1", "r1", 1000))
    sink.publish("Touchpoint", touchpoint("tp-1", 1, "t1", "k1", "c1"))
    sink.publish("CampaignProductLink", link("link-1", 0, "c1", "p1", True))
    sink.publish("CircuitBreakerAction", action("act-1", 7, "p1", "pause", 0))
    sink.publish("AttributionScore", score("sc-1", 3, "o1", "k1", 5000))
    sink.publish("AttributionScore", score("sc-2", 6, "o1", "k1", -1000, reverses="sc-1"))
    sink.publish("LifecycleTrigger", trigger("tr-1", 3, "cu1", "k1"))
    sink.publish("RawWebhook", raw("raw-1", 3, b'{"id": 1}'))
    sink.start()
    sink.wait_caught_up()

    assert sink.query("SELECT product_id, title, source_event_id FROM products ORDER BY 1") == [
        ("p1", "Merino Beanie", "prod-2"),
        ("p2", "Scarf", "prod-4"),
    ]
    variants = sink.query("SELECT variant_id, price_minor, removed_at FROM variants ORDER BY 1")
    assert variants == [
        ("v1", 2500, None),
        ("v2", 2500, None),
        ("v8", 2500, None),
        ("v9", 2500, T0 + timedelta(minutes=30)),
    ]
    assert sink.query("SELECT inventory_item_id, available FROM inventory_levels") == [
        ("item-v1", 7)
    ]
    ((placed, total, incremental, confidence),) = sink.query(
        "SELECT placed_at, total_minor, incremental_minor, confidence_bp FROM orders"
    )
    assert (placed, total, incremental, confidence) == (
        T0 + timedelta(minutes=3),
        5000,
        4000,
        10_000,
    )
    assert sink.query("SELECT line_item_id, quantity, unit_price_minor FROM order_items") == [
        ("o1-l1", 2, 2250)
    ]
    assert sink.query("SELECT refund_id, amount_minor FROM refunds") == [("r1", 1000)]
    assert sink.query("SELECT email, acquisition_source FROM customers") == [
        ("ada@example.com", "c1")
    ]
    assert sink.query("SELECT touchpoint_id, cost_minor FROM touchpoints") == [("t1", 120)]
    assert sink.query("SELECT campaign_id, active FROM campaign_products") == [("c1", True)]
    assert sink.query("SELECT action, caused_by FROM circuit_breaker_actions") == [
        ("pause", ["lv-x"])
    ]
    assert sink.query(
        "SELECT event_id, incremental_minor, reverses FROM attribution_scores ORDER BY 1"
    ) == [("sc-1", 5000, None), ("sc-2", -1000, "sc-1")]
    assert sink.query("SELECT flow FROM lifecycle_triggers") == [("post_purchase",)]
    assert sink.query("SELECT topic, body_bytes FROM webhook_log") == [("orders/create", 9)]
