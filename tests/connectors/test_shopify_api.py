"""The Shopify GraphQL Admin client against its emulator on loopback: reads come back in the
webhook shape (the normalizer makes the same events from them), pages reach every record once,
the cost bucket is kept, errors are retried or named."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from graphql import parse

from connectors.http import ApiError, RetryPolicy
from connectors.store_apis.base import Resource, ShopInfo, StockLevel, every_page
from connectors.store_apis.shopify import (
    LINES,
    SKU_LEVELS,
    SKU_QUERY,
    SKU_VARIANTS,
    ShopifyApi,
    order_from_node,
    requested_cost,
    sku_search,
    topic_enum,
    topic_name,
)
from emulators.server import serve
from emulators.shopify import SCHEMA, ShopifyEmulator, search_terms
from emulators.shopify import requested_cost as server_cost
from platforms import shopify
from platforms.events import Emit, NormalizeContext, RawDelivery
from tests import FIXTURES

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, timeout_seconds=5)
TOKEN = "shpat_secret_token_123"
DOMAIN = "acme.myshopify.com"
CONTEXT = NormalizeContext(customer_salt=b"test-salt", store_currency={"acme": "USD"})
T0 = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
GRAPHQL = "/admin/api/2026-07/graphql.json"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "shopify" / f"{name}.json").read_bytes()))


def normalized(topic: str, record: Any, event_id: str = "raw-1") -> list[Emit]:
    raw = RawDelivery(event_id, "acme", "shopify", topic, T0, T0, {}, json.dumps(record).encode())
    outcome = shopify.normalize(raw, CONTEXT)
    assert isinstance(outcome, list), outcome
    return outcome


def order(n: int, updated_at: str, lines: int = 1) -> dict[str, Any]:
    return {
        "id": 1000 + n,
        "name": f"#{1000 + n}",
        "email": f"shopper{n}@example.com",
        "currency": "USD",
        "created_at": updated_at,
        "updated_at": updated_at,
        "financial_status": "paid",
        "fulfillment_status": None,
        "total_price": f"{10 * lines + 5}.00",
        "subtotal_price": f"{10 * lines}.00",
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "shipping_lines": [{"price": "5.00"}],
        "line_items": [
            {"id": 50_000 + 100 * n + i, "title": f"Item {i}", "price": "10.00", "quantity": 1}
            for i in range(lines)
        ],
    }


@pytest.fixture
def store() -> Iterator[tuple[ShopifyEmulator, str]]:
    # A fast refill keeps the tests quick; the burst tests use a small bucket.
    emulator = ShopifyEmulator(DOMAIN, TOKEN, shop_name="Acme", restore_rate=1000.0)
    with serve(emulator.app) as running:
        yield emulator, running.base_url


def client(url: str, token: str = TOKEN, **kwargs: Any) -> ShopifyApi:
    return ShopifyApi("acme", DOMAIN, token, base_url=url, policy=FAST, **kwargs)


# -- conversion, checked against the normalizer ----------------------------------------------


def test_an_order_read_through_the_api_normalizes_exactly_like_its_webhook(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    webhook = fixture("orders__updated")
    emulator.add_order(webhook)
    (record,) = client(url).page(Resource.ORDERS).records
    assert record["id"] == "5987654321098765432"  # digits from the gid, every one kept
    from_webhook = normalized("orders/updated", webhook)
    from_api = normalized("orders/updated", record)
    assert [e.value["kind"] for e in from_api] == ["updated", "refunded"]
    assert [e.value for e in from_api] == [e.value for e in from_webhook]
    value = from_api[0].value
    assert value["total"] == {"amount_minor": 18981, "currency": "USD"}
    assert value["total_shipping"]["amount_minor"] == 800
    assert from_api[1].value["refund"]["amount"]["amount_minor"] == 2014


def test_pure_conversion_of_a_graphql_order_node() -> None:
    money = {"shopMoney": {"amount": "1360", "currencyCode": "JPY"}}
    node = {
        "id": "gid://shopify/Order/9007199254740993123",
        "name": "#7",
        "currencyCode": "JPY",
        "updatedAt": "2026-03-01T00:00:00Z",
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "PARTIALLY_FULFILLED",
        "totalPriceSet": {"shopMoney": {"amount": "13600", "currencyCode": "JPY"}},
        "subtotalPriceSet": {"shopMoney": {"amount": "12800", "currencyCode": "JPY"}},
        "totalShippingPriceSet": {"shopMoney": {"amount": "800", "currencyCode": "JPY"}},
        "customer": {"id": "gid://shopify/Customer/42"},
        "lineItems": {
            "nodes": [
                {
                    "id": "gid://shopify/LineItem/1",
                    "name": "Tea",
                    "quantity": 10,
                    "variant": {"id": "gid://shopify/ProductVariant/5"},
                    "originalUnitPriceSet": money,
                    "totalDiscountSet": {"shopMoney": {"amount": "800", "currencyCode": "JPY"}},
                }
            ]
        },
        "refunds": [],
    }
    record = order_from_node(node)
    assert record["id"] == "9007199254740993123" and record["customer"] == {"id": "42"}
    assert record["financial_status"] == "paid" and record["fulfillment_status"] == "partial"
    (event,) = normalized("orders/paid", record)
    assert event.value["total"] == {"amount_minor": 13600, "currency": "JPY"}
    assert event.value["total_shipping"]["amount_minor"] == 800
    (line,) = event.value["line_items"]
    assert line["variant_id"] == "5" and line["total"]["amount_minor"] == 13600 - 800


def test_products_customers_and_levels_read_back_into_their_events(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    emulator.add_product(fixture("products__update"))
    emulator.add_customer({**fixture("customers__create"), "orders_count": 3})
    emulator.set_level(fixture("inventory_levels__update"))
    api = client(url)
    (product,) = api.page(Resource.PRODUCTS).records
    (upsert,) = normalized("products/update", product)
    webhook_variants = fixture("products__update")["variants"]
    assert [v["variant_id"] for v in upsert.value["variants"]] == [
        str(v["id"]) for v in webhook_variants
    ]
    assert [v["inventory_item_id"] for v in upsert.value["variants"]] == [
        str(v["inventory_item_id"]) for v in webhook_variants
    ]
    (customer,) = api.page(Resource.CUSTOMERS).records
    (customer_event,) = normalized("customers/update", customer)
    assert customer_event.value["customer_id"] == "7654321098765"
    assert customer_event.value["orders_count"] == 3
    (level,) = api.page(Resource.INVENTORY_LEVELS).records
    assert level == {
        "inventory_item_id": "9007199254740995",
        "location_id": "71234567890",
        "available": 6,
        "updated_at": "2026-03-19T13:12:44Z",
    }
    (stock,) = normalized("inventory_levels/update", level)
    assert stock.value["quantity"] == 6
    variants = api.page(Resource.VARIANTS).records
    assert {v["product_id"] for v in variants} == {"8841230412345"}
    assert len(variants) == len(webhook_variants)


def test_the_client_prices_a_query_as_the_emulator_does() -> None:
    query = (
        "{ products(first: 10) { edges { node { title "
        "variants(first: 5) { edges { node { price } } } } } } }"
    )
    assert requested_cost(query) == 82  # 2 + 10 * (1 + 2 + 5 * 1), as Shopify documents
    assert server_cost(parse(query), {}) == 82
    assert SCHEMA.mutation_type is not None
    assert topic_enum("inventory_levels/update") == "INVENTORY_LEVELS_UPDATE"
    assert topic_name("INVENTORY_LEVELS_UPDATE") == "inventory_levels/update"


# -- pages, cursors, since --------------------------------------------------------------------


def test_pages_reach_every_order_once_and_resume_from_a_stored_cursor(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    for n in range(23):
        emulator.add_order(order(n, f"2026-02-01T10:{n:02d}:00Z", lines=LINES + 3 if n == 7 else 1))
    api = client(url)
    pages = list(every_page(api, Resource.ORDERS, page_size=3))
    seen = [r["id"] for page, _ in pages for r in page.records]
    assert len(pages) == 8 and sorted(seen) == sorted(str(1000 + n) for n in range(23))
    assert len(set(seen)) == 23
    # Oldest change first (sortKey UPDATED_AT), and a long order is read whole.
    assert seen == [str(1000 + n) for n in range(23)]
    long_order = next(r for page, _ in pages for r in page.records if r["id"] == "1007")
    assert len(long_order["line_items"]) == LINES + 3
    # A reader that stopped after two pages resumes from the stored cursor, a new client.
    stored = pages[2][1]
    assert stored is not None
    resumed = every_page(client(url), Resource.ORDERS, cursor=stored, page_size=5)
    rest = [r["id"] for page, _ in resumed for r in page.records]
    assert seen[:6] + rest == seen


def test_since_reads_only_what_changed_at_or_after_the_instant(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    for n in range(10):
        emulator.add_order(order(n, f"2026-02-0{n % 9 + 1}T12:00:00Z"))
    api = client(url)
    since = datetime(2026, 2, 5, 12, 0, tzinfo=UTC)
    changed = [
        r["id"]
        for page, _ in every_page(api, Resource.ORDERS, since=since, page_size=2)
        for r in page.records
    ]
    expected = {str(1000 + n) for n in range(10) if n % 9 + 1 >= 5}
    assert sorted(changed) == sorted(expected) and len(changed) == len(expected)
    # Inventory levels: per location, with the filter on each level.
    for item in range(5):
        for location in ("11", "22"):
            emulator.set_level(
                {
                    "inventory_item_id": str(700 + item),
                    "location_id": location,
                    "available": item,
                    "updated_at": f"2026-02-0{item + 1}T00:00:00Z",
                }
            )
    levels = [
        (r["inventory_item_id"], r["location_id"])
        for page, _ in every_page(api, Resource.INVENTORY_LEVELS, page_size=3)
        for r in page.records
    ]
    assert sorted(levels) == sorted((str(700 + i), loc) for i in range(5) for loc in ("11", "22"))
    recent = {
        (r["inventory_item_id"], r["location_id"])
        for page, _ in every_page(
            api, Resource.INVENTORY_LEVELS, since=datetime(2026, 2, 4, tzinfo=UTC), page_size=1
        )
        for r in page.records
    }
    assert recent == {(i, loc) for i in ("703", "704") for loc in ("11", "22")}


# -- the cost bucket --------------------------------------------------------------------------


def test_a_burst_through_the_client_is_never_throttled_but_the_limit_is_real() -> None:
    emulator = ShopifyEmulator(DOMAIN, TOKEN, maximum_available=200, restore_rate=1000.0)
    for n in range(60):
        emulator.add_customer({"id": 100 + n, "email": f"c{n}@example.com"})
    with serve(emulator.app) as running:
        api = client(running.base_url)
        for _ in range(10):
            assert len(api.page(Resource.CUSTOMERS, page_size=50).records) == 50
        assert emulator.calls.violations == 0
        assert emulator.calls.total == 10  # paced by the bucket, never refused
        requested, actual = emulator.costs[-1]
        assert requested == 2 + 50 * 3 and actual == requested
        # The same burst without pacing is throttled: HTTP 200 with THROTTLED and no data.
        query = "{ customers(first: 50) { nodes { id createdAt numberOfOrders tags "
        query += "amountSpent { amount } defaultEmailAddress { emailAddress } } } }"
        with httpx.Client(base_url=running.base_url) as raw:
            answers = [
                raw.post(GRAPHQL, json={"query": query}, headers={"X-Shopify-Access-Token": TOKEN})
                for _ in range(10)
            ]
        throttled = [a.json() for a in answers if "errors" in a.json()]
        assert throttled and all(a.status_code == 200 for a in answers)
        assert throttled[0]["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert "data" not in throttled[0]
        assert throttled[0]["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 200
        assert emulator.calls.violations == len(throttled)


def test_a_throttled_answer_is_retried_once_the_bucket_refills() -> None:
    emulator = ShopifyEmulator(DOMAIN, TOKEN, maximum_available=200, restore_rate=200.0)
    for n in range(60):
        emulator.add_customer({"id": 100 + n})
    with serve(emulator.app) as running:
        api = client(running.base_url)
        api.shop()  # the client now believes the bucket is full
        emulator.bucket.take(emulator.bucket.available(time.monotonic()), time.monotonic())
        calls = api.client.calls
        assert len(api.page(Resource.CUSTOMERS, page_size=50).records) == 50
        assert emulator.calls.violations == 1 and api.client.calls == calls + 2
        # One query may not cost more than 1000, whatever the bucket holds.
        big = "{ products(first: 250) { nodes { variants(first: 250) { nodes { id } } } } }"
        answer = httpx.post(
            running.base_url + GRAPHQL,
            json={"query": big},
            headers={"X-Shopify-Access-Token": TOKEN},
        ).json()
        assert answer["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
        assert emulator.calls.violations == 2


# -- failures ---------------------------------------------------------------------------------


def test_retry_after_and_injected_5xx_are_retried(store: tuple[ShopifyEmulator, str]) -> None:
    emulator, url = store
    api = client(url)
    emulator.fail_next(1, 429)
    started = time.monotonic()
    assert api.shop().reference == DOMAIN
    assert time.monotonic() - started >= emulator.retry_after_seconds
    assert api.client.calls == 2
    emulator.fail_next(2, 503)
    assert api.shop().name == "Acme" and api.client.calls == 5
    emulator.fail_next(4, 500)
    with pytest.raises(ApiError) as exhausted:
        api.shop()
    assert exhausted.value.retryable and "4 tries" in str(exhausted.value)


def test_refusals_name_the_store_and_the_call_without_the_token_or_inputs(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    wrong = client(url, token="shpat_wrong_token_999")
    with pytest.raises(ApiError) as refused:
        wrong.shop()
    assert str(refused.value) == "store acme: shopify shop failed: HTTP 401"
    assert not refused.value.retryable and emulator.calls.total == 0  # nothing served
    api = client(url)
    for text in (repr(api), repr(wrong), str(refused.value)):
        assert "shpat" not in text
    # A GraphQL error (unknown field) fails, by code, without the query text.
    with pytest.raises(ApiError) as unknown:
        api._graphql("probe", "query Probe { shop { secretField } }", {})
    assert str(unknown.value) == "store acme: shopify probe failed: GraphQL errors: undefinedField"
    raw = httpx.post(
        url + GRAPHQL,
        json={"query": "{ shop { secretField } }"},
        headers={"X-Shopify-Access-Token": TOKEN},
    ).json()
    assert raw["errors"][0]["message"] == "Field 'secretField' doesn't exist on type 'Shop'"
    # userErrors on a mutation fail too, naming the field but not the address.
    api.register_webhook("orders/create", "https://hooks.example.com/private-path")
    with pytest.raises(ApiError) as taken:
        api.register_webhook("orders/create", "https://hooks.example.com/private-path")
    assert "webhookSubscriptionCreate orders/create" in str(taken.value)
    assert "webhookSubscription.uri" in str(taken.value) and "private" not in str(taken.value)
    old_version = client(url, api_version="2026-02")
    with pytest.raises(ApiError, match="HTTP 404"):
        old_version.shop()


# -- reads by id, webhooks, inventory, shop ---------------------------------------------------


def test_get_reads_one_record_or_none(store: tuple[ShopifyEmulator, str]) -> None:
    emulator, url = store
    emulator.add_order(fixture("orders__updated"))
    emulator.add_product(fixture("products__update"))
    api = client(url)
    found = api.get(Resource.ORDERS, "5987654321098765432")
    assert found is not None and len(found["line_items"]) == 2 and len(found["refunds"]) == 1
    product = api.get(Resource.PRODUCTS, "8841230412345")
    assert product is not None and product["title"] == "Ridgeline Rain Jacket"
    assert api.get(Resource.ORDERS, "1") is None
    assert api.get(Resource.CUSTOMERS, "7654321098765") is None


def test_webhooks_register_list_and_delete(store: tuple[ShopifyEmulator, str]) -> None:
    emulator, url = store
    api = client(url)
    assert api.webhooks() == []
    orders = api.register_webhook("orders/create", "https://revloop.example/hooks/shopify")
    levels = api.register_webhook("inventory_levels/update", "https://revloop.example/hooks/inv")
    assert orders.webhook_id.isdigit() and orders.topic == "orders/create"
    assert {(w.topic, w.address) for w in api.webhooks()} == {
        ("orders/create", "https://revloop.example/hooks/shopify"),
        ("inventory_levels/update", "https://revloop.example/hooks/inv"),
    }
    assert {h["topic"] for h in emulator.webhooks.values()} == {
        "ORDERS_CREATE",
        "INVENTORY_LEVELS_UPDATE",
    }
    api.delete_webhook(orders.webhook_id)
    assert api.webhooks() == [levels]
    with pytest.raises(ApiError):
        api.delete_webhook(orders.webhook_id)  # already gone: a userError


def test_set_inventory_changes_the_stock_and_its_updated_at(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    emulator.add_product(fixture("products__update"))
    emulator.set_level(fixture("inventory_levels__update"))
    api = client(url)
    api.set_inventory("9007199254740995", "71234567890", 2)
    assert emulator.level("9007199254740995", "71234567890") == 2
    assert emulator.calls.writes == [("9007199254740995@71234567890", "2")]
    (level,) = api.page(Resource.INVENTORY_LEVELS).records
    assert level["available"] == 2 and level["updated_at"] > "2026-03-19T13:12:44Z"
    with pytest.raises(ApiError, match="ITEM_NOT_STOCKED_AT_LOCATION"):
        api.set_inventory("9007199254740995", "1", 5)
    with pytest.raises(ValueError, match="location"):
        api.set_inventory("9007199254740995", None, 5)


WEIRD_SKU = 'RRJ "Navy": L (tall) \\ 2\''


def test_a_sku_search_value_is_one_literal_term_whatever_it_holds() -> None:
    assert sku_search("RRJ-NVY-S") == 'sku:"RRJ-NVY-S"'
    assert sku_search('a"b\\c') == 'sku:"a\\"b\\\\c"'
    for sku in ("RRJ-NVY-S", WEIRD_SKU, "a b", "x:y", "(z)", "OR", "-neg", "\\", '"', "'"):
        assert search_terms(sku_search(sku)) == [("sku", "", sku)]


def test_stock_of_sku_reads_each_location_and_round_trips_set_inventory(
    store: tuple[ShopifyEmulator, str],
) -> None:
    emulator, url = store
    emulator.add_product(
        {
            "id": 1,
            "title": "Jacket",
            "variants": [
                {"id": 11, "sku": "RRJ-NVY-S", "inventory_item_id": 111},
                {"id": 12, "sku": "RRJ-NVY-M", "inventory_item_id": 112},
                {"id": 13, "sku": WEIRD_SKU, "inventory_item_id": 113},
            ],
        }
    )
    emulator.add_product(
        {
            "id": 2,
            "title": "Decoys",
            "variants": [
                {"id": 21, "sku": 'RRJ "Navy"', "inventory_item_id": 121},
                {"id": 22, "sku": "rrj-nvy-s", "inventory_item_id": 122},  # Shopify finds it
                {"id": 23, "sku": "CAP", "inventory_item_id": 123, "inventory_management": None},
                {"id": 24, "sku": "MANY", "inventory_item_id": 124},
            ],
        }
    )
    for item, location, available in [
        (111, 71, 6), (111, 72, 2), (112, 71, 9), (113, 72, 4), (121, 72, 1), (122, 71, 5),
        (123, 71, 3),
    ]:  # fmt: skip
        emulator.set_level(
            {"inventory_item_id": item, "location_id": location, "available": available}
        )
    for location in range(80, 80 + SKU_LEVELS + 2):
        emulator.set_level({"inventory_item_id": 124, "location_id": location, "available": 1})
    api = client(url)
    wanted = [StockLevel("111", "71", 6), StockLevel("111", "72", 2)]
    assert api.stock_of_sku("RRJ-NVY-S") == wanted
    requested, _ = emulator.costs[-1]
    assert requested == requested_cost(SKU_QUERY, {"first": SKU_VARIANTS, "levels": SKU_LEVELS})
    for level in wanted:
        api.set_inventory(level.item_id, level.location_id, 0)
    assert api.stock_of_sku("RRJ-NVY-S") == [StockLevel("111", "71", 0), StockLevel("111", "72", 0)]
    for level in wanted:
        assert level.available is not None
        api.set_inventory(level.item_id, level.location_id, level.available)
    assert api.stock_of_sku("RRJ-NVY-S") == wanted
    assert emulator.level("112", "71") == 9 and emulator.level("122", "71") == 5  # untouched
    # Quotes, a colon, parentheses, spaces and a backslash: one value, only its own item.
    assert api.stock_of_sku(WEIRD_SKU) == [StockLevel("113", "72", 4)]
    assert api.stock_of_sku('RRJ "Navy"') == [StockLevel("121", "72", 1)]
    assert api.stock_of_sku("NO-SUCH-SKU") == [] and api.stock_of_sku("") == []
    assert api.stock_of_sku("CAP") == [StockLevel("123", "71", None)]  # not tracked
    many = api.stock_of_sku("MANY")  # more locations than the first query reads
    assert len(many) == SKU_LEVELS + 2 and {lv.available for lv in many} == {1}
    assert emulator.calls.violations == 0


def test_shop_answers_the_store_reference(store: tuple[ShopifyEmulator, str]) -> None:
    _, url = store
    assert client(url).shop() == ShopInfo(
        reference=DOMAIN, name="Acme", currency="USD", timezone="America/New_York"
    )
