"""The BigCommerce client against its emulator on loopback: every record read once across V3 and
V2 pages, the store's rate limit kept, errors retried or named; and what it reads, turned into
canonical events by ``platforms.bigcommerce.resource_events``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from connectors.http import ApiError, RetryPolicy
from connectors.store_apis.base import Resource, ShopInfo, StockLevel, StoreApi, every_page
from connectors.store_apis.bigcommerce import BigCommerceApi, parse_cursor
from emulators.bigcommerce import BigCommerceEmulator
from emulators.server import serve
from platforms.bigcommerce import bc_instant, resource_events
from platforms.events import Emit, NormalizeContext, RawDelivery, shopper_key
from platforms.payloads import NotNormalizable
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, timeout_seconds=5)
HASH, TOKEN = "k2x9q7ab3c", "bc-secret-token-1234"
SERDE = AvroSerde(CommittedCatalogue.load())
CONTEXT = NormalizeContext(customer_salt=b"test-salt", store_currency={"acme": "USD"})
T0 = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)

Served = tuple[BigCommerceEmulator, str]


@pytest.fixture
def store() -> Iterator[Served]:
    emulator = BigCommerceEmulator(HASH, TOKEN, requests_per_window=60, window_ms=200)
    with serve(emulator.app) as running:
        yield emulator, running.base_url


def client(url: str, token: str = TOKEN, policy: RetryPolicy = FAST) -> BigCommerceApi:
    return BigCommerceApi("acme", HASH, token, api_url=url, policy=policy)


def raw(topic: str, event_id: str = "raw-1") -> RawDelivery:
    return RawDelivery(event_id, "acme", "bigcommerce", topic, T0, T0, {}, b"{}")


def read_all(api: StoreApi, resource: Resource, **how: Any) -> list[dict[str, Any]]:
    return [dict(r) for page, _ in every_page(api, resource, **how) for r in page.records]


def valid(events: list[Emit]) -> list[Emit]:
    for event in events:
        SERDE.encode(event.record, event.value)  # strict: a misspelt or missing field fails
    return events


def seed_order(emulator: BigCommerceEmulator, **fields: Any) -> dict[str, Any]:
    """30.00 + 20.00 of goods, 5.00 off the first line, 5.00 shipping, 4.00 tax: 54.00."""
    order = {
        "customer_id": 42,
        "status_id": 11,
        "subtotal_ex_tax": "50.0000",
        "subtotal_inc_tax": "54.0000",
        "shipping_cost_ex_tax": "5.0000",
        "total_ex_tax": "50.0000",
        "total_inc_tax": "54.0000",
        "total_tax": "4.0000",
        "discount_amount": "5.0000",
        "coupon_discount": "0.0000",
        "currency_code": "USD",
        "default_currency_code": "USD",
        "billing_address": {"first_name": "Maya", "email": "Maya.Lindqvist@example.com"},
        "order_source": "www",
        **fields,
    }
    lines = [
        {
            "product_id": 212,
            "variant_id": 509,
            "name": "Rain Jacket",
            "sku": "RJ-M",
            "quantity": 2,
            "price_ex_tax": "15.0000",
            "price_inc_tax": "16.2000",
            "total_ex_tax": "30.0000",
            "applied_discounts": [{"id": "coupon", "amount": "5.0000", "target": "product"}],
        },
        {
            "product_id": 0,  # a custom product
            "variant_id": 0,
            "name": "Gift note",
            "sku": "",
            "quantity": 1,
            "price_ex_tax": "20.0000",
            "price_inc_tax": "21.6000",
            "total_ex_tax": "20.0000",
            "applied_discounts": [],
        },
    ]
    return emulator.add_order(order, products=lines)


# -- pages ----------------------------------------------------------------------------------------


def test_v3_pages_reach_every_record_once_and_resume_from_a_stored_cursor(store: Served) -> None:
    emulator, url = store
    for n in range(23):
        emulator.add_product(
            {"name": f"P{n}", "price": 10 + n, "variants": [{"sku": f"S{n}a"}, {"sku": f"S{n}b"}]}
        )
    api = client(url)
    pages = list(every_page(api, Resource.PRODUCTS, page_size=7))
    assert [len(page.records) for page, _ in pages] == [7, 7, 7, 2]
    ids = [record["id"] for page, _ in pages for record in page.records]
    assert sorted(ids) == sorted(emulator.products) and len(set(ids)) == 23
    assert all(len(record["variants"]) == 2 for page, _ in pages for record in page.records)

    # A crash after the second page: a new client resumes from the cursor stored with it.
    stored = pages[1][0].next_cursor
    assert stored is not None and parse_cursor(stored) == (3, 7)
    resumed = [r["id"] for r in read_all(client(url), Resource.PRODUCTS, cursor=stored)]
    read_before = [r["id"] for page, _ in pages[:2] for r in page.records]
    assert sorted(read_before + resumed) == sorted(emulator.products)
    assert not set(read_before) & set(resumed)

    variants = [r["id"] for r in read_all(api, Resource.VARIANTS, page_size=9)]
    assert len(variants) == len(set(variants)) == 46
    levels = read_all(api, Resource.INVENTORY_LEVELS, page_size=250)
    assert len(levels) == 46 and levels[0]["locations"][0]["location_id"] == 1

    for n in range(11):
        emulator.add_customer({"email": f"c{n}@example.com", "first_name": f"C{n}"})
    customers = [r["id"] for r in read_all(api, Resource.CUSTOMERS, page_size=4)]
    assert sorted(customers) == sorted(emulator.customers) and len(customers) == 11


def test_v2_order_pages_end_on_a_short_page_or_a_204_and_embed_each_orders_products(
    store: Served,
) -> None:
    emulator, url = store
    for _ in range(13):
        seed_order(emulator)
    api = client(url)
    pages = list(every_page(api, Resource.ORDERS, page_size=5))
    assert [len(page.records) for page, _ in pages] == [5, 5, 3]
    ids = [r["id"] for page, _ in pages for r in page.records]
    assert sorted(ids) == sorted(emulator.orders) and len(set(ids)) == 13
    for page, _ in pages:
        for record in page.records:
            lines = emulator.order_products[record["id"]]
            assert [line["id"] for line in record["products"]] == [line["id"] for line in lines]
            assert len(lines) == 2 and record["refunds"] == []
    # 3 order pages and one products call per order; none has refunds to fetch.
    assert emulator.calls.total == 3 + 13

    for _ in range(2):
        seed_order(emulator)  # 15 in all: three full pages, then a 204
    emulator.calls.total = 0
    pages = list(every_page(api, Resource.ORDERS, page_size=5))
    assert [len(page.records) for page, _ in pages] == [5, 5, 5, 0]
    assert pages[-1][0].next_cursor is None
    assert emulator.calls.total == 4 + 15

    with pytest.raises(ValueError, match="250"):
        api.page(Resource.ORDERS, page_size=251)
    with pytest.raises(ValueError, match="250"):
        api.page(Resource.PRODUCTS, page_size=500)
    with pytest.raises(ValueError, match="cursor"):
        api.page(Resource.PRODUCTS, cursor="after=abc")


def test_since_reads_only_what_changed_at_or_after_it(store: Served) -> None:
    emulator, url = store
    old, new = "2026-01-05T10:00:00+00:00", "2026-03-01T09:30:00+00:00"
    emulator.add_product({"name": "old", "date_modified": old})
    fresh = emulator.add_product({"name": "new", "date_modified": new})
    emulator.add_customer({"email": "a@example.com", "date_modified": old})
    recent = emulator.add_customer({"email": "b@example.com", "date_modified": new})
    seed_order(emulator, date_modified="Mon, 05 Jan 2026 10:00:00 +0000")
    changed = seed_order(emulator, date_modified="Sun, 01 Mar 2026 09:30:00 +0000")
    api = client(url)
    since = datetime(2026, 3, 1, 9, 30, 0, 500_000, tzinfo=UTC)  # rounded down: inclusive

    def ids(resource: Resource) -> list[int]:
        return [r["id"] for r in read_all(api, resource, since=since)]

    assert ids(Resource.PRODUCTS) == [fresh["id"]]
    assert ids(Resource.CUSTOMERS) == [recent["id"]]
    assert ids(Resource.ORDERS) == [changed["id"]]
    assert len(ids(Resource.VARIANTS)) == 2  # no modification filter: all, a superset


# -- rate limits and errors -----------------------------------------------------------------------


def test_a_burst_through_the_client_keeps_under_the_quota_a_raw_one_does_not() -> None:
    emulator = BigCommerceEmulator(HASH, TOKEN, requests_per_window=8, window_ms=250)
    product = emulator.add_product({"name": "P"})
    with serve(emulator.app) as running:
        api = client(running.base_url)
        for _ in range(20):
            assert api.get(Resource.PRODUCTS, str(product["id"])) is not None
        assert emulator.calls.violations == 0
        assert api.client.calls == 20  # paced, never refused
        with httpx.Client(base_url=f"{running.base_url}/stores/{HASH}") as raw_http:
            answers = [
                raw_http.get("/v3/catalog/products", headers={"X-Auth-Token": TOKEN})
                for _ in range(30)
            ]
        refused = [a for a in answers if a.status_code == 429]
        assert refused and emulator.calls.violations == len(refused)
        assert int(refused[0].headers["X-Rate-Limit-Time-Reset-Ms"]) <= 250
        assert refused[0].headers["X-Rate-Limit-Requests-Left"] == "0"
        assert answers[0].headers["X-Rate-Limit-Requests-Quota"] == "8"


def test_a_429_waits_for_the_window_and_a_5xx_is_retried() -> None:
    # A window long enough that it cannot roll over between the raw burst and the client's call.
    emulator = BigCommerceEmulator(HASH, TOKEN, requests_per_window=20, window_ms=800)
    with serve(emulator.app) as running:
        check_429_and_5xx(emulator, running.base_url)


def check_429_and_5xx(emulator: BigCommerceEmulator, url: str) -> None:
    api = client(url)
    with httpx.Client(base_url=f"{url}/stores/{HASH}") as raw_http:
        while raw_http.get("/v2/store", headers={"X-Auth-Token": TOKEN}).status_code != 429:
            pass  # spend the window's quota behind the client's back
    assert emulator.calls.violations == 1
    assert api.shop().name == "Emulated Store"  # refused once, waited the reset, answered
    assert api.client.calls == 2 and emulator.calls.violations == 2

    emulator.fail_next(2, 503)
    assert api.shop().currency == "USD"
    assert api.client.calls == 5
    emulator.fail_next(4, 500)
    with pytest.raises(ApiError) as exhausted:
        api.shop()
    assert exhausted.value.retryable and "4 tries" in str(exhausted.value)


def test_a_refusal_names_the_store_and_the_call_never_the_token(store: Served) -> None:
    emulator, url = store
    emulator.add_product({"name": "P"})
    wrong = client(url, token="bc-wrong-token-9876")
    with pytest.raises(ApiError) as refused:
        wrong.page(Resource.PRODUCTS, page_size=10)
    message = str(refused.value)
    assert message == "store acme: bigcommerce GET /v3/catalog/products page 1 failed: HTTP 401"
    assert not refused.value.retryable and refused.value.status == 401
    assert wrong.client.calls == 1  # not retried
    for text in (message, repr(wrong), repr(wrong.client), str(wrong)):
        assert "bc-wrong-token" not in text and TOKEN not in text
    assert "bc-secret" not in repr(client(url))
    with pytest.raises(ValueError, match="store hash"):
        BigCommerceApi("acme", "../other", TOKEN)


def test_get_reads_one_complete_record_and_none_when_it_is_absent(store: Served) -> None:
    emulator, url = store
    product = emulator.add_product({"name": "P", "variants": [{"sku": "A", "inventory_level": 4}]})
    customer = emulator.add_customer({"email": "c@example.com"})
    order = seed_order(emulator)
    emulator.add_refund(order["id"], {"total_amount": Decimal("21.60"), "items": []})
    api = client(url)
    emulator.calls.total = 0
    got = api.get(Resource.ORDERS, str(order["id"]))
    assert got is not None and emulator.calls.total == 3  # order, products, refunds
    assert [line["name"] for line in got["products"]] == ["Rain Jacket", "Gift note"]
    assert got["refunds"][0]["total_amount"] == Decimal("21.6")  # exact, not a float
    assert got["refunded_amount"] == "21.6000"
    found_product = api.get(Resource.PRODUCTS, str(product["id"]))
    assert found_product is not None and found_product["variants"][0]["inventory_level"] == 4
    found_customer = api.get(Resource.CUSTOMERS, str(customer["id"]))
    assert found_customer is not None and found_customer["email"] == "c@example.com"
    variant_id = str(product["variants"][0]["id"])
    found_variant = api.get(Resource.VARIANTS, variant_id)
    assert found_variant is not None and found_variant["sku"] == "A"
    item = api.get(Resource.INVENTORY_LEVELS, variant_id)
    assert item is not None and item["locations"][0]["available_to_sell"] == 4
    for resource in Resource:
        assert api.get(resource, "999999") is None
    with pytest.raises(ValueError, match="integers"):
        api.get(Resource.ORDERS, "1/../../v3/hooks")


def test_webhooks_register_list_and_delete(store: Served) -> None:
    emulator, url = store
    api: StoreApi = client(url)
    created = api.register_webhook("store/order/created", "https://hooks.example/bc")
    client(url).register_webhook(
        "store/product/updated", "https://hooks.example/bc", headers={"x-secret": "s3"}
    )
    assert created.topic == "store/order/created"
    assert {(h.topic, h.address) for h in api.webhooks()} == {
        ("store/order/created", "https://hooks.example/bc"),
        ("store/product/updated", "https://hooks.example/bc"),
    }
    stored = emulator.hooks[int(created.webhook_id)]
    assert stored["is_active"] is True and stored["store_hash"] == HASH
    assert [h["headers"] for h in emulator.hooks.values()] == [None, {"x-secret": "s3"}]
    api.delete_webhook(created.webhook_id)
    assert [h.topic for h in api.webhooks()] == ["store/product/updated"]
    api.delete_webhook(created.webhook_id)  # already gone: nothing to do
    with pytest.raises(ApiError, match="HTTP 422"):
        api.register_webhook("orders/create", "https://hooks.example/bc")


def test_set_inventory_writes_the_level_at_a_location(store: Served) -> None:
    emulator, url = store
    product = emulator.add_product({"name": "P", "variants": [{"sku": "A", "inventory_level": 9}]})
    emulator.add_location(2, "Warehouse")
    variant = product["variants"][0]["id"]
    api = client(url)
    api.set_inventory(str(variant), None, 3)  # location 1, the default
    api.set_inventory(str(variant), "2", 5)
    assert (emulator.level(variant, 1), emulator.level(variant, 2)) == (3, 5)
    assert emulator.calls.writes == [(str(variant), "3"), (str(variant), "5")]
    item = api.get(Resource.INVENTORY_LEVELS, str(variant))
    assert item is not None
    assert [(loc["location_id"], loc["available_to_sell"]) for loc in item["locations"]] == [
        (1, 3),
        (2, 5),
    ]
    after = api.get(Resource.PRODUCTS, str(product["id"]))
    assert after is not None and after["inventory_level"] == 8
    assert after["date_modified"] > product["date_modified"]  # a write is a new version
    with pytest.raises(ApiError, match="HTTP 422"):
        api.set_inventory(str(variant), "7", 1)  # no such location
    with pytest.raises(ValueError, match="whole number"):
        api.set_inventory(str(variant), None, -1)


def test_stock_of_sku_reads_each_location_and_round_trips_set_inventory(store: Served) -> None:
    emulator, url = store
    weird = 'Tent "Ultra": 2P & co/1?'  # quotes, a colon, spaces and URL characters
    emulator.add_location(2, "Warehouse")
    tent = emulator.add_product(
        {
            "name": "Tent",
            "variants": [
                {"sku": "TENT-2P", "inventory_level": 7},
                {"sku": "TENT-3P", "inventory_level": 5},
                {"sku": weird, "inventory_level": 2},
                {"sku": 'Tent "Ultra"', "inventory_level": 1},
            ],
        }
    )
    gift = emulator.add_product({"name": "Gift card", "sku": "GIFT", "inventory_tracking": "none"})
    two, three, odd, _ = (str(v["id"]) for v in tent["variants"])
    emulator.stock[(int(two), 2)] = 4
    api = client(url)
    wanted = [StockLevel(two, "1", 7), StockLevel(two, "2", 4)]
    assert api.stock_of_sku("TENT-2P") == wanted
    for level in wanted:
        api.set_inventory(level.item_id, level.location_id, 0)
    assert api.stock_of_sku("TENT-2P") == [StockLevel(two, "1", 0), StockLevel(two, "2", 0)]
    for level in wanted:
        assert level.available is not None
        api.set_inventory(level.item_id, level.location_id, level.available)
    assert api.stock_of_sku("TENT-2P") == wanted
    assert emulator.level(int(three), 1) == 5  # untouched
    assert api.stock_of_sku(weird) == [StockLevel(odd, "1", 2), StockLevel(odd, "2", 0)]
    assert api.stock_of_sku("NO-SUCH-SKU") == [] and api.stock_of_sku("") == []
    base = str(gift["variants"][0]["id"])
    assert api.stock_of_sku("GIFT") == [StockLevel(base, "1", None), StockLevel(base, "2", None)]
    assert emulator.calls.violations == 0


def test_shop_names_the_store_as_its_webhooks_do(store: Served) -> None:
    _, url = store
    assert client(url).shop() == ShopInfo(
        reference=f"stores/{HASH}",
        name="Emulated Store",
        currency="USD",
        timezone="America/Chicago",
    )


# -- canonical events from what was read ----------------------------------------------------------


def test_a_hydrated_order_becomes_an_order_event_with_its_lines_and_refunds(store: Served) -> None:
    emulator, url = store
    order = seed_order(emulator)
    jacket, note = (line["id"] for line in emulator.order_products[order["id"]])
    emulator.add_refund(
        order["id"],
        {
            "total_amount": Decimal("21.60"),
            "created": "2026-03-21T10:00:00+00:00",
            "items": [{"item_type": "PRODUCT", "item_id": note, "quantity": 1}],
            "payments": [{"provider_id": "storecredit", "amount": Decimal("21.60")}],
        },
    )
    emulator.add_refund(
        order["id"],
        {
            "total_amount": 10,
            "items": [{"item_type": "SHIPPING", "item_id": 1, "requested_amount": 10}],
            "payments": [{"amount": 4, "is_declined": True}, {"amount": 6}],
        },
    )
    api = client(url)
    record = api.get(Resource.ORDERS, str(order["id"]))
    assert record is not None
    scope = "store/order/created"
    order_event, refund, shipping = valid(
        resource_events(raw(scope), CONTEXT, "order", record, scope=scope)
    )
    value = order_event.value
    assert (order_event.record, value["kind"]) == ("dev.revloop.events.OrderEvent", "created")
    assert value["order_id"] == value["order_number"] == str(order["id"])
    assert value["customer_id"] == "42"
    assert value["customer_key"] == shopper_key(CONTEXT, "acme", "maya.lindqvist@example.com", None)
    assert value["total"] == {"amount_minor": 5400, "currency": "USD"}
    assert [value[k]["amount_minor"] for k in ("subtotal", "total_tax", "total_discounts")] == [
        5000,
        400,
        500,
    ]
    assert value["total_shipping"]["amount_minor"] == 500
    assert value["financial_status"] == "paid"
    assert value["fulfillment_status"] == "Awaiting Fulfillment"
    first, second = value["line_items"]
    assert (first["line_item_id"], first["variant_id"], first["quantity"]) == (
        str(jacket),
        "509",
        2,
    )
    assert (first["unit_price"]["amount_minor"], first["total"]["amount_minor"]) == (1500, 2500)
    assert (second["product_id"], second["variant_id"], second["sku"]) == (None, None, None)
    assert value["envelope"]["occurred_at"] == bc_instant(record["date_modified"])
    assert value["attribution_hints"] == {"source_name": "www"}
    assert refund.value["kind"] == "refunded"
    assert refund.value["refund"]["amount"] == {"amount_minor": 2160, "currency": "USD"}
    # No requested amount: the line's unit price with tax, times the quantity refunded.
    assert refund.value["refund"]["line_items"] == [
        {
            "line_item_id": str(note),
            "quantity": 1,
            "amount": {"amount_minor": 2160, "currency": "USD"},
        }
    ]
    assert refund.value["customer_key"] == value["customer_key"]
    # Only money that went back counts (a declined payment did not); no product lines.
    assert shipping.value["refund"]["amount"]["amount_minor"] == 600
    assert shipping.value["refund"]["line_items"] == []
    assert b"@example.com" not in SERDE.encode(order_event.record, order_event.value)

    # The refund's own webhook asks for the refunds alone: the same fact, the same event.
    scope = "store/order/refund/created"
    alone = resource_events(raw(scope, "raw-2"), CONTEXT, "order", record, scope=scope)
    assert [e.event_id for e in alone] == [refund.event_id, shipping.event_id]


def test_one_version_is_one_event_and_a_later_version_another(store: Served) -> None:
    emulator, url = store
    order = seed_order(emulator)
    api = client(url)
    scope = "store/order/statusUpdated"

    def read() -> list[Emit]:
        record = api.get(Resource.ORDERS, str(order["id"]))
        assert record is not None
        return valid(resource_events(raw(scope, "raw-a"), CONTEXT, "orders", record, scope=scope))

    first, again = read(), read()
    assert [e.event_id for e in first] == [e.event_id for e in again]
    # Another delivery (a backfill, a reconciliation) reading the same version: still one event.
    record = api.get(Resource.ORDERS, str(order["id"]))
    assert record is not None
    (other,) = resource_events(raw(scope, "raw-b"), CONTEXT, "order", record, scope=scope)
    assert other.event_id == first[0].event_id

    emulator.update_order(order["id"], status_id=5)
    (cancelled,) = read()
    assert cancelled.event_id != first[0].event_id
    assert cancelled.value["kind"] == "cancelled"
    assert cancelled.value["cancelled_at"] == cancelled.value["envelope"]["occurred_at"]
    assert cancelled.value["financial_status"] == "unpaid"
    emulator.update_order(order["id"], status_id=4)
    (refunded,) = read()
    assert (refunded.value["kind"], refunded.value["financial_status"]) == ("updated", "refunded")
    assert refunded.event_id not in {cancelled.event_id, first[0].event_id}


def test_products_customers_and_stock_become_their_canonical_events(store: Served) -> None:
    emulator, url = store
    product = emulator.add_product(
        {
            "name": "Rain Jacket",
            "price": Decimal("89.50"),
            "custom_url": {"url": "/rain-jacket/"},
            "variants": [
                {"sku": "RJ-S", "inventory_level": 3, "option_values": [{"label": "S"}]},
                {"sku": "RJ-M", "price": Decimal("94.00"), "option_values": [{"label": "M"}]},
            ],
        }
    )
    customer = emulator.add_customer(
        {"email": "Maya@Example.com", "accepts_product_review_abandoned_cart_emails": True}
    )
    emulator.add_location(2, "Warehouse")
    api = client(url)
    scope = "store/product/updated"
    fetched = api.get(Resource.PRODUCTS, str(product["id"]))
    assert fetched is not None
    (upsert,) = valid(resource_events(raw(scope), CONTEXT, "product", fetched, scope=scope))
    variants = upsert.value["variants"]
    assert [v["price"]["amount_minor"] for v in variants] == [8950, 9400]  # null price inherits
    assert [(v["title"], v["inventory_quantity"]) for v in variants] == [("S", 3), ("M", 0)]
    assert variants[0]["inventory_item_id"] == variants[0]["variant_id"]
    assert upsert.value["handle"] == "/rain-jacket/"

    fetched_customer = api.get(Resource.CUSTOMERS, str(customer["id"]))
    assert fetched_customer is not None
    scope = "store/customer/created"
    (person,) = valid(
        resource_events(raw(scope), CONTEXT, "customer", fetched_customer, scope=scope)
    )
    assert person.value["customer_key"] == shopper_key(CONTEXT, "acme", "maya@example.com", None)
    assert person.value["accepts_marketing"] is True

    variant = str(product["variants"][0]["id"])
    item = api.get(Resource.INVENTORY_LEVELS, variant)
    assert item is not None
    scope = "store/sku/inventory/updated"
    levels = valid(resource_events(raw(scope), CONTEXT, "inventory", item, scope=scope))
    assert [(e.value["location_id"], e.value["quantity"]) for e in levels] == [("1", 3), ("2", 0)]
    assert {e.value["inventory_item_id"] for e in levels} == {variant}
    assert len({e.event_id for e in levels}) == 2

    with pytest.raises(NotNormalizable):
        resource_events(raw(scope), CONTEXT, "cart", fetched, scope=scope)
    unhydrated = api.get(Resource.ORDERS, str(seed_order(emulator)["id"]))
    assert unhydrated is not None
    with pytest.raises(NotNormalizable):  # an order whose products were never fetched
        resource_events(
            raw(scope),
            CONTEXT,
            "order",
            {**unhydrated, "products": {"url": "x"}},
            scope="store/order/updated",
        )


def test_bigcommerce_dates_are_read_in_either_spelling() -> None:
    rfc = bc_instant("Tue, 20 Nov 2012 00:00:00 +0000")
    iso = bc_instant("2012-11-20T01:00:00+01:00")
    assert rfc == iso == datetime(2012, 11, 20, tzinfo=UTC)
    assert bc_instant("") is None
    with pytest.raises(NotNormalizable):
        bc_instant("yesterday")
