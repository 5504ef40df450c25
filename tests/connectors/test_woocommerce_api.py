"""The WooCommerce REST v3 client against its emulator on loopback: every record read once, in
resumable pages, whatever changes meanwhile; the host's rate limit kept; errors retried or named;
webhooks, stock and the shop's identity read and written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.http import ApiError, RetryPolicy
from connectors.store_apis.base import Resource, ShopInfo, StockLevel, StoreApi, every_page
from connectors.store_apis.woocommerce import WooCommerceApi
from emulators.server import serve
from emulators.woocommerce import WooCommerceEmulator

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, timeout_seconds=5)
KEY, SECRET = "ck_live_key", "cs_live-secret-value"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

Client = Callable[..., WooCommerceApi]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def woo() -> Iterator[tuple[WooCommerceEmulator, str, Client]]:
    emulator = WooCommerceEmulator(KEY, SECRET, requests_per_window=10_000, window_seconds=1.0)
    with serve(emulator.app) as running:
        made: list[WooCommerceApi] = []

        def client(**kwargs: Any) -> WooCommerceApi:
            options: dict[str, Any] = {"requests_per_second": 1000.0, "policy": FAST} | kwargs
            key, secret = options.pop("key", KEY), options.pop("secret", SECRET)
            api = WooCommerceApi("acme", running.base_url, key, secret, **options)
            made.append(api)
            return api

        yield emulator, running.base_url, client
        for api in made:
            api.close()


def ids(records: Any) -> list[int]:
    return [int(r["id"]) for r in records]


def read_all(
    api: StoreApi, resource: Resource, **kwargs: Any
) -> tuple[list[int], list[str | None]]:
    seen: list[int] = []
    cursors: list[str | None] = []
    for page, cursor in every_page(api, resource, **kwargs):
        seen.extend(ids(page.records))
        cursors.append(cursor)
    return seen, cursors


def test_orders_pages_reach_every_order_once_and_resume(woo: Any) -> None:
    emulator, _, client = woo
    orders = [emulator.add_order({"status": "processing", "total": f"{n}.50"}) for n in range(23)]
    api = client()
    assert isinstance(api, WooCommerceApi) and api.platform == "woocommerce"
    protocol: StoreApi = api  # the client implements the interface
    seen, cursors = read_all(protocol, Resource.ORDERS, page_size=7)
    assert seen == sorted(ids(orders)) and len(set(seen)) == 23
    assert len(cursors) == 4 and emulator.calls.total == 4  # 7 + 7 + 7 + 2
    first = api.page(Resource.ORDERS, page_size=7)
    assert first.records[0]["total"] == "0.50"  # money stays the platform's decimal string

    # A checkpointed cursor, used by a new client (after a crash), reads on from there.
    stored = cursors[2]
    assert stored is not None and isinstance(stored, str)
    again = client()
    rest, _ = read_all(again, Resource.ORDERS, page_size=7, cursor=stored)
    assert rest == seen[14:]

    # A cursor of another resource is refused rather than misread.
    with pytest.raises(ValueError, match="cursor"):
        api.page(Resource.CUSTOMERS, cursor=stored)


def test_page_size_is_checked_before_any_call(woo: Any) -> None:
    emulator, url, client = woo
    api = client()
    with pytest.raises(ValueError, match="1 to 100"):
        api.page(Resource.ORDERS, page_size=101)
    assert emulator.calls.total == 0
    # The emulator refuses it as WordPress does.
    raw = httpx.get(f"{url}/wp-json/wc/v3/orders?per_page=101", auth=(KEY, SECRET))
    assert raw.status_code == 400
    assert raw.json()["code"] == "rest_invalid_param" and raw.json()["data"]["status"] == 400


def test_listing_headers_are_wordpress_ones(woo: Any) -> None:
    emulator, url, _ = woo
    for _ in range(5):
        emulator.add_customer({"email": "a@example.com"})
    raw = httpx.get(
        f"{url}/wp-json/wc/v3/customers", params={"per_page": 2, "page": 2}, auth=(KEY, SECRET)
    )
    assert raw.headers["x-wp-total"] == "5" and raw.headers["x-wp-totalpages"] == "3"
    assert raw.links["next"]["url"].startswith(f"{url}/wp-json/wc/v3/customers?")
    assert "page=3" in raw.links["next"]["url"] and "page=1" in raw.links["prev"]["url"]


def test_changes_during_a_backfill_neither_skip_nor_repeat(woo: Any) -> None:
    emulator, _, client = woo
    first_ids = ids(emulator.add_order({"status": "pending"}) for _ in range(20))
    api = client()
    page = api.page(Resource.ORDERS, page_size=6)
    assert ids(page.records) == first_ids[:6]
    # Meanwhile an order already read is trashed (those after it move up a place) and one not
    # yet read is edited (ordering by modified would move it behind the cursor).
    emulator.remove_order(first_ids[1])
    emulator.update_order(first_ids[8], status="completed")
    second = api.page(Resource.ORDERS, page_size=6, cursor=page.next_cursor)
    assert ids(second.records)[0] == first_ids[6]  # moved onto page 1, yet not skipped
    created = emulator.add_order({"status": "pending"})  # lands after the cursor
    rest, _ = read_all(api, Resource.ORDERS, page_size=6, cursor=second.next_cursor)
    assert [*ids(second.records), *rest] == [*first_ids[6:], created["id"]]


def test_since_reads_what_changed_at_or_after(woo: Any) -> None:
    emulator, _, client = woo
    times = [T0 - timedelta(hours=2), T0 - timedelta(seconds=1), T0, T0 + timedelta(minutes=5)]
    orders = [emulator.add_order({"date_modified_gmt": stamp(t)}) for t in times]
    customers = [emulator.add_customer({"date_modified_gmt": stamp(t)}) for t in times]
    api = client()
    since = T0 + timedelta(microseconds=400)  # within T0's second: at whole seconds, at or after
    assert read_all(api, Resource.ORDERS, since=since, page_size=1)[0] == ids(orders[2:])
    # Customers have no date filter in WooCommerce: filtered by the client.
    assert read_all(api, Resource.CUSTOMERS, since=since)[0] == ids(customers[2:])
    assert read_all(api, Resource.ORDERS)[0] == ids(orders)


def test_variants_are_read_across_products_and_resume(woo: Any) -> None:
    emulator, _, client = woo
    emulator.add_product({"name": "Simple", "price": "3.00"})
    shirts = emulator.add_product(
        {"name": "Shirt"}, variations=[{"sku": f"S-{n}", "price": "9.00"} for n in range(5)]
    )
    emulator.add_product({"name": "Empty", "type": "variable"})
    mugs = emulator.add_product({"name": "Mug"}, variations=[{"sku": "M-1"}, {"sku": "M-2"}])
    wanted = [*shirts["variations"], *mugs["variations"]]
    api = client()
    pages = list(every_page(api, Resource.VARIANTS, page_size=2))
    seen = [r["id"] for p, _ in pages for r in p.records]
    assert seen == wanted
    parents = {r["id"]: r["parent_id"] for p, _ in pages for r in p.records}
    assert {parents[v] for v in shirts["variations"]} == {shirts["id"]}
    assert all(r["type"] == "variation" for p, _ in pages for r in p.records)
    # From each stored cursor a new client reads exactly the rest.
    for index, (_, cursor) in enumerate(pages):
        before = sum(len(p.records) for p, _ in pages[:index])
        rest = [
            r["id"]
            for p, _ in every_page(client(), Resource.VARIANTS, cursor=cursor, page_size=2)
            for r in p.records
        ]
        assert rest == wanted[before:]


def test_inventory_levels_are_the_stock_managed_products_and_variations(woo: Any) -> None:
    emulator, _, client = woo
    stocked = emulator.add_product({"name": "Tracked", "manage_stock": True, "stock_quantity": 4})
    emulator.add_product({"name": "Untracked", "manage_stock": False})
    shirt = emulator.add_product(
        {"name": "Shirt"},
        variations=[
            {"sku": "own", "manage_stock": True, "stock_quantity": 7},
            {"sku": "none", "manage_stock": False},
        ],
    )
    pool = emulator.add_product(
        {"name": "Pooled", "manage_stock": True, "stock_quantity": 30},
        variations=[{"sku": "shared", "manage_stock": "parent", "stock_quantity": 30}],
    )
    records = [
        r
        for p, _ in every_page(client(), Resource.INVENTORY_LEVELS, page_size=1)
        for r in p.records
    ]
    assert [(r["id"], r["stock_quantity"]) for r in records] == [
        (stocked["id"], 4),
        (pool["id"], 30),
        (shirt["variations"][0], 7),
    ]


def test_get_reads_one_record_and_none_when_missing(woo: Any) -> None:
    emulator, _, client = woo
    order = emulator.add_order({"status": "completed", "line_items": [{"id": 1, "quantity": 2}]})
    shirt = emulator.add_product({"name": "Shirt"}, variations=[{"sku": "S"}])
    variation = shirt["variations"][0]
    api = client()
    assert api.get(Resource.ORDERS, str(order["id"])) == order
    assert api.get(Resource.ORDERS, "999999") is None
    assert api.get(Resource.CUSTOMERS, "999999") is None
    by_path = api.get(Resource.VARIANTS, f"{shirt['id']}/{variation}")
    by_own_id = api.get(Resource.VARIANTS, str(variation))
    assert by_path is not None and by_path["sku"] == "S" and by_path["type"] == "variation"
    assert by_own_id is not None and by_own_id["parent_id"] == shirt["id"]
    assert api.get(Resource.VARIANTS, f"{shirt['id']}/999999") is None
    with pytest.raises(ValueError, match="number"):
        api.get(Resource.ORDERS, "1/../../users")


def test_the_client_keeps_under_the_host_limit_that_a_raw_burst_trips() -> None:
    emulator = WooCommerceEmulator(KEY, SECRET, requests_per_window=3, window_seconds=0.3)
    emulator.add_order({"status": "pending"})
    with serve(emulator.app) as running:
        api = WooCommerceApi(
            "acme", running.base_url, KEY, SECRET, requests_per_second=5, policy=FAST
        )
        for _ in range(8):  # 8 calls against 3 per 0.3 s: paced at 5 a second, never refused
            assert api.get(Resource.ORDERS, "100") is not None
        api.close()
        assert emulator.calls.violations == 0 and emulator.calls.total == 8
        with httpx.Client(auth=(KEY, SECRET)) as raw:
            answers = [raw.get(f"{running.base_url}/wp-json/wc/v3/orders/100") for _ in range(8)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused and emulator.calls.violations == len(refused)
    assert refused[0].headers["retry-after"] == "1"


def test_429_retry_after_and_5xx_are_retried() -> None:
    emulator = WooCommerceEmulator(KEY, SECRET, requests_per_window=2, window_seconds=1.0)
    order = emulator.add_order({"status": "pending"})
    with serve(emulator.app) as running:
        api = WooCommerceApi(
            "acme", running.base_url, KEY, SECRET, requests_per_second=1000, policy=FAST
        )
        started = datetime.now(UTC)
        for _ in range(3):  # the third is refused once, waits Retry-After: 1, then succeeds
            assert api.get(Resource.ORDERS, str(order["id"])) == order
        assert emulator.calls.violations == 1 and emulator.calls.total == 4
        assert datetime.now(UTC) - started >= timedelta(seconds=0.9)
        emulator.fail_next(2, status=503)
        assert api.get(Resource.ORDERS, str(order["id"])) == order
        assert emulator.calls.total == 7
        api.close()


def test_a_refused_call_names_store_and_call_never_the_secret(woo: Any) -> None:
    emulator, url, client = woo
    emulator.add_order({"status": "pending"})
    api = client(secret="cs_wrong-secret")
    with pytest.raises(ApiError) as failure:
        api.page(Resource.ORDERS)
    error = failure.value
    assert error.status == 401 and not error.retryable
    assert "acme" in str(error) and "GET /wc/v3/orders" in str(error)
    assert emulator.calls.total == 1  # not retried
    for text in (str(error), repr(error), repr(api), str(api), repr(api.client)):
        assert "cs_wrong-secret" not in text and KEY not in text
    raw = httpx.get(f"{url}/wp-json/wc/v3/orders", auth=(KEY, "nope"))
    assert raw.status_code == 401 and raw.json()["code"] == "woocommerce_rest_authentication_error"
    assert httpx.get(f"{url}/wp-json/wc/v3/orders").json()["code"] == "woocommerce_rest_cannot_view"
    assert httpx.get(f"{url}/wp-json/wc/v3/orders/5", auth=(KEY, SECRET)).json()["code"] == (
        "woocommerce_rest_shop_order_invalid_id"
    )


def test_webhooks_register_list_delete(woo: Any) -> None:
    emulator, url, client = woo
    api = client()
    assert api.webhooks() == []
    made = api.register_webhook("order.created", "https://hooks.example/woo", secret="whsec")
    other = api.register_webhook("product.updated", "https://hooks.example/woo")
    assert made.topic == "order.created" and made.address == "https://hooks.example/woo"
    assert emulator.webhook_secrets[int(made.webhook_id)] == "whsec"
    assert {w.webhook_id for w in api.webhooks()} == {made.webhook_id, other.webhook_id}
    with pytest.raises(ApiError) as failure:
        api.register_webhook("order.exploded", "https://hooks.example/woo")
    assert failure.value.status == 400
    # Webhooks cannot be trashed: only a forced delete removes one.
    kept = httpx.delete(f"{url}/wp-json/wc/v3/webhooks/{made.webhook_id}", auth=(KEY, SECRET))
    assert kept.status_code == 501
    api.delete_webhook(made.webhook_id)
    api.delete_webhook(made.webhook_id)  # already gone: done
    assert [w.webhook_id for w in api.webhooks()] == [other.webhook_id]


def test_set_inventory_writes_the_stock(woo: Any) -> None:
    emulator, _, client = woo
    product = emulator.add_product(
        {"name": "Mug", "manage_stock": False, "date_modified_gmt": stamp(T0)}
    )
    shirt = emulator.add_product({"name": "Shirt"}, variations=[{"sku": "A"}, {"sku": "B"}])
    first, second = shirt["variations"]
    api = client()
    api.set_inventory(str(product["id"]), None, 12)
    api.set_inventory(f"{shirt['id']}/{first}", "ignored", 0)
    api.set_inventory(str(second), None, 5)  # a variation by its own id, as webhooks name it
    assert emulator.stock(product["id"]) == 12 and emulator.products[product["id"]]["manage_stock"]
    assert emulator.stock(first) == 0 and emulator.variations[first]["stock_status"] == "outofstock"
    assert emulator.stock(second) == 5
    assert emulator.products[product["id"]]["date_modified_gmt"] > stamp(T0)  # bumped
    with pytest.raises(ApiError) as failure:
        api.set_inventory("999999", None, 1)
    assert failure.value.status == 404


def test_stock_of_sku_finds_products_and_variations_and_round_trips_set_inventory(
    woo: Any,
) -> None:
    emulator, _, client = woo
    weird = 'Mug "Blue": 12 oz, L'  # quotes, a colon, spaces and a comma (WooCommerce splits)
    mug = emulator.add_product({"sku": "MUG-1", "manage_stock": True, "stock_quantity": 8})
    emulator.add_product({"sku": "MUG-2", "manage_stock": True, "stock_quantity": 3})
    odd = emulator.add_product({"sku": weird, "manage_stock": True, "stock_quantity": 2})
    emulator.add_product({"sku": 'Mug "Blue": 12 oz', "manage_stock": True, "stock_quantity": 1})
    free = emulator.add_product({"sku": "FREE", "manage_stock": False})
    shirt = emulator.add_product(
        {"sku": "SHIRT"},
        variations=[
            {"sku": "SHIRT-S", "manage_stock": True, "stock_quantity": 4},
            {"sku": "SHIRT-M", "manage_stock": True, "stock_quantity": 6},
        ],
    )
    pooled = emulator.add_product(
        {"manage_stock": True, "stock_quantity": 30},
        variations=[{"sku": "POOL-S", "manage_stock": "parent"}],
    )
    small, medium = shirt["variations"]
    api = client()
    assert api.stock_of_sku("MUG-1") == [StockLevel(str(mug["id"]), None, 8)]
    wanted = [StockLevel(f"{shirt['id']}/{small}", None, 4)]
    assert api.stock_of_sku("SHIRT-S") == wanted  # a variation, found by /products?sku=
    api.set_inventory(wanted[0].item_id, wanted[0].location_id, 0)
    assert api.stock_of_sku("SHIRT-S") == [StockLevel(wanted[0].item_id, None, 0)]
    api.set_inventory(wanted[0].item_id, wanted[0].location_id, 4)
    assert api.stock_of_sku("SHIRT-S") == wanted
    assert emulator.stock(medium) == 6 and emulator.stock(mug["id"]) == 8  # untouched
    # The comma-split query also answers the decoy; only the exact SKU is kept.
    assert api.stock_of_sku(weird) == [StockLevel(str(odd["id"]), None, 2)]
    assert api.stock_of_sku("NO-SUCH-SKU") == [] and api.stock_of_sku(" ") == []
    assert api.stock_of_sku("FREE") == [StockLevel(str(free["id"]), None, None)]  # untracked
    # Stocked by its parent: the item is the parent, with the parent's stock.
    assert api.stock_of_sku("POOL-S") == [StockLevel(str(pooled["id"]), None, 30)]
    assert emulator.calls.violations == 0


def test_shop_names_the_store_as_its_webhooks_do() -> None:
    emulator = WooCommerceEmulator(
        KEY,
        SECRET,
        site_url="https://shop.example",
        name="Shop",
        currency="EUR",
        timezone="Europe/Berlin",
    )
    with serve(emulator.app) as running:
        api = WooCommerceApi("acme", running.base_url, KEY, SECRET, policy=FAST)
        assert api.shop() == ShopInfo(
            reference="https://shop.example/", name="Shop", currency="EUR", timezone="Europe/Berlin"
        )
        api.close()
