"""`revloop sink postgres` against a real broker and a real Postgres: what lands in each table,
newest wins, bad rows to dead letters, redaction."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from confluent_kafka import Consumer

from revloop.kafka import consumer_config, high_watermarks, read_ranges
from tests.normalizer_support import SERDE
from tests.sink_events import (
    action,
    customer,
    level,
    link,
    order,
    product,
    raw,
    redact,
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


def test_a_row_postgres_refuses_goes_to_dead_letters_and_its_batch_is_written(
    sink: Sink,
) -> None:
    sink.publish("ProductUpsert", product("prod-ok-1", 1, "p1", "Beanie", ["v1"]), flush=False)
    # Avro carries a NUL character; Postgres text cannot.
    sink.publish("ProductUpsert", product("prod-bad", 2, "p2", "Scarf\x00x", ["v2"]), flush=False)
    # ...in an id too, which the follow-ups would meet (a customer's redaction check).
    sink.publish("CustomerUpsert", customer("cust-bad", 1, "cu\x00", "k9", None), flush=False)
    sink.publish("ProductUpsert", product("prod-ok-2", 3, "p3", "Mittens", ["v3"]))
    sink.start()
    sink.wait_caught_up()
    assert sink.query("SELECT product_id FROM products ORDER BY 1") == [("p1",), ("p3",)]
    # The bad product's variant row is fine, and written.
    assert sink.query("SELECT variant_id FROM variants ORDER BY 1") == [("v1",), ("v2",), ("v3",)]
    assert sink.query("SELECT count(*) FROM customers") == [(0,)]
    letters = read_all(sink, "ops.dead-letters.v1")
    assert sorted(x["envelope"]["caused_by"][0] for x in letters) == ["cust-bad", "prod-bad"]
    (letter,) = [x for x in letters if x["envelope"]["caused_by"] == ["prod-bad"]]
    assert letter["stage"] == "sink.postgres"
    assert "table products" in letter["error_type"]
    assert "NUL" in letter["error_type"]
    assert letter["envelope"]["caused_by"] == ["prod-bad"]
    assert letter["original_topic"] == sink.prefix + "commerce.products.v1"
    assert letter["original_value"] is None  # a reference: no copy of what may be personal
    assert "Scarf" not in repr(letter)


def test_a_redacted_customer_is_gone_from_every_table_and_stays_gone(sink: Sink) -> None:
    sink.publish("CustomerUpsert", customer("cust-1", 1, "cu1", "k1", "ada@example.com"))
    sink.publish("CustomerUpsert", customer("cust-2", 1, "cu2", "k2", "bob@example.com"))
    sink.publish("OrderEvent", order("ord-1", 3, "o1", "created", "cu1", "k1"))
    sink.publish("OrderEvent", order("ord-2", 3, "o2", "created", "cu2", "k2"))
    sink.publish("Touchpoint", touchpoint("tp-1", 1, "t1", "k1", "c1"))
    sink.publish("AttributionScore", score("sc-1", 3, "o1", "k1", 5000))
    sink.publish("LifecycleTrigger", trigger("tr-1", 3, "cu1", "k1"))
    sink.start()
    sink.wait_caught_up()
    assert sink.query("SELECT count(*) FROM customers WHERE email IS NOT NULL") == [(2,)]

    sink.publish("CustomerRedact", redact("red-1", 10, "cu1", "k1", ["o1"]))
    sink.wait_caught_up()
    # Events of the customer from before the redaction, delivered after it (a replay, a late
    # delivery), do not bring the data back.
    sink.publish("CustomerUpsert", customer("cust-0", 0, "cu1", "k1", "ada@example.com"))
    sink.publish("Touchpoint", touchpoint("tp-2", 2, "t2", "k1", "c1"))
    sink.publish("OrderEvent", order("ord-0", 2, "o3", "created", "cu1", "k1"))
    sink.wait_caught_up()

    for table, columns in [
        ("customers", "email, customer_key"),
        ("orders", "customer_id, customer_key"),
        ("touchpoints", "customer_key, click_id, landing_url"),
        ("attribution_scores", "customer_key"),
        ("lifecycle_triggers", "customer_id, customer_key"),
    ]:
        text = repr(sink.query(f"SELECT {columns} FROM {table}"))  # noqa: S608
        assert "ada@" not in text and "'k1'" not in text and "'cu1'" not in text, table
    assert "fbclid" not in repr(sink.query("SELECT click_id FROM touchpoints"))
    # The other customer is untouched; the amounts stay for billing.
    assert sink.query("SELECT email FROM customers WHERE customer_id = 'cu2'") == [
        ("bob@example.com",)
    ]
    assert sink.query("SELECT incremental_minor FROM attribution_scores") == [(5000,)]
    assert sink.query("SELECT event_id, customer_id, orders FROM redactions") == [
        ("red-1", "cu1", ["o1"])
    ]
    assert sink.query("SELECT redacted_at FROM customers WHERE customer_id = 'cu1'") == [
        (T0 + timedelta(minutes=10),)
    ]


def read_all(sink: Sink, catalogue_name: str) -> list[dict[str, Any]]:
    name = sink.prefix + catalogue_name
    reader = Consumer(consumer_config(sink.settings, f"reader-{uuid.uuid4().hex[:6]}"))
    try:
        ranges = {(name, p): (0, end) for p, end in high_watermarks(reader, name).items()}
        return [SERDE.decode(m.value() or b"").value for m in read_ranges(reader, ranges)]
    finally:
        reader.close()


def test_the_analyst_views_answer_the_common_questions(sink: Sink) -> None:
    # November: o1 placed and scored (incremental 5000 via c1); December: o2 placed and
    # scored, o1 partly refunded (its score reversed by 1000).
    nov, dec = -60 * 24 * 3, 60 * 24 * 3  # minutes from T0 (1 Dec 09:00)
    sink.publish("OrderEvent", order("ord-1", nov, "o1", "created", "cu1", "k1", total=5000))
    sink.publish("AttributionScore", score("sc-1", nov, "o1", "k1", 5000))
    sink.publish("OrderEvent", order("ord-2", dec, "o2", "created", "cu2", "k2", total=8000))
    sink.publish("AttributionScore", score("sc-2", dec, "o2", "k2", 0, signals=[]))
    sink.publish("OrderEvent", refund("ref-1", dec, "o1", "r1", 1000))
    sink.publish("AttributionScore", score("sc-3", dec, "o1", "k1", -1000, reverses="sc-1"))
    sink.publish("CircuitBreakerAction", action("act-1", 1, "p1", "pause", 0))
    sink.publish("CircuitBreakerAction", action("act-2", 9, "p1", "resume", 5))
    sink.publish("CircuitBreakerAction", action("act-3", 20, "p2", "pause", 0))
    sink.start()
    sink.wait_caught_up()
    months = sink.query(
        "SELECT to_char(month, 'YYYY-MM'), orders, revenue_minor, refunded_minor,"
        " net_revenue_minor, incremental_minor FROM revenue_by_month ORDER BY month"
    )
    assert months == [("2026-11", 1, 5000, 0, 5000, 5000), ("2026-12", 1, 8000, 1000, 7000, -1000)]
    by_campaign = sink.query(
        "SELECT campaign_id, to_char(month, 'YYYY-MM'), incremental_minor"
        " FROM incremental_revenue_by_campaign ORDER BY month"
    )
    assert by_campaign == [("c1", "2026-11", 5000), ("c1", "2026-12", -1000)]
    assert sink.query("SELECT product_id, campaign_ids FROM open_circuit_breakers") == [
        ("p2", ["c1"])
    ]
    seconds = sink.query("SELECT product_id, seconds FROM sellout_to_pause ORDER BY 1")
    assert [p for p, _ in seconds] == ["p1", "p2"]
    assert all(s > 0 for _, s in seconds)  # published now, sold out in the past


def test_a_lost_database_connection_mid_stream_loses_and_doubles_nothing(sink: Sink) -> None:
    for n in range(3000):
        sink.publish(
            "CircuitBreakerAction", action(f"act-{n}", n / 10, f"p{n % 50}", "pause", 0), False
        )
        sink.publish("OrderEvent", refund(f"ref-{n}", n / 10, f"o{n % 70}", f"r{n}", 10), False)
    sink.producer.flush(30)
    sink.start(REVLOOP_SINK_BATCH_SIZE="100")
    for n in range(8):
        # Postgres ends the sink's session (a restart, a failover, a network cut would too),
        # sometimes right after the last time: while the sink reads its offsets back to read a
        # failed batch again (2026-12-02 CI lost a batch there: it consumed on past it).
        time.sleep(1.0 if n % 2 == 0 else 0.3)
        sink.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'revloop-sink' AND datname = current_database()"
        )
    sink.wait_caught_up(timeout=120)
    assert sink.query("SELECT count(*), count(DISTINCT event_id) FROM circuit_breaker_actions") == [
        (3000, 3000)
    ]
    assert sink.query("SELECT count(*), sum(amount_minor) FROM refunds") == [(3000, 30000)]
    assert "batch failed, reading it again" in sink.log.read_text()
