"""The demo's simulation, without Kafka: deterministic, signed as the platforms sign, and made of
payloads the normalizers turn into canonical events (docs/demo.md)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.hydrator import READERS, requesting_delivery
from connectors.store_apis.bigcommerce import BigCommerceApi
from demo.hydration import store_hash
from demo.run import DemoState, ensure_demo_state
from demo.simulation import DemoRequest, Simulation, expected_outcome, run_simulation, simulate
from emulators import BigCommerceEmulator, serve
from ingest import feeds
from platforms import bigcommerce, shopify, woocommerce
from platforms.events import NormalizeContext, RawDelivery, Skip
from revloop.stores import StoreRegistry
from streams.circuit_breaker.topology import variant_records

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MODULES: dict[str, Any] = {
    "shopify": shopify,
    "woocommerce": woocommerce,
    "bigcommerce": bigcommerce,
}
CASES = [(7, 40), (1, 3), (42, 8), (2026, 120)]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> DemoState:
    return ensure_demo_state(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def registry(state: DemoState) -> StoreRegistry:
    """The registry as `revloop ingest` reads it from the demo's state directory."""
    return StoreRegistry.load(state.stores_file, state.secret_box())


def run(state: DemoState, seed: int, orders: int, now: datetime = NOW) -> Simulation:
    return run_simulation(seed, orders, stores=state.stores, now=now)


def webhooks(simulation: Simulation) -> list[DemoRequest]:
    return [r for r in simulation.requests if not r.is_feed]


def parsed(request: DemoRequest) -> Any:
    # Exact: integers stay ints (big Shopify ids), decimals stay Decimals.
    return json.loads(request.body, parse_float=Decimal)


def test_a_seed_tells_the_same_story_every_time(state: DemoState) -> None:
    first = simulate(7, 40, stores=state.stores, now=NOW)
    again = simulate(7, 40, stores=state.stores, now=NOW)
    assert first == again
    assert simulate(8, 40, stores=state.stores, now=NOW) != first


def test_a_later_run_tells_the_same_story_with_new_ids(
    state: DemoState, registry: StoreRegistry
) -> None:
    now = NOW + timedelta(minutes=3)
    first, later = run(state, 7, 40), run(state, 7, 40, now)
    assert [r.label for r in first.requests] == [r.label for r in later.requests]
    assert [(m.sku, m.kind, m.level) for m in first.stock] == [
        (m.sku, m.kind, m.level) for m in later.stock
    ]
    # Nothing a later run sends may be taken for a repeat of an earlier one.
    salt = state.customer_salt.encode()
    before = expected_outcome(first.requests, registry, salt, NOW)
    after = expected_outcome(later.requests, registry, salt, now)
    assert not before.raw_event_ids & after.raw_event_ids
    for name, ids in before.events.items():
        assert not ids & after.events[name], name


@pytest.mark.parametrize(("seed", "orders"), CASES)
def test_every_request_verifies_against_the_demo_registry(
    state: DemoState, registry: StoreRegistry, seed: int, orders: int
) -> None:
    for request in run(state, seed, orders).requests:
        assert request.method == "POST"
        assert request.headers["content-type"] == "application/json"
        if request.is_feed:
            store = feeds.authenticate(request.headers["authorization"], registry)
            assert store.store_id == request.store_id
            continue
        assert request.path == f"/webhooks/{request.platform}"
        delivery = MODULES[request.platform].authenticate(
            request.body, request.headers, registry, NOW
        )
        assert delivery.store.store_id == request.store_id
        assert delivery.topic == request.topic
        assert delivery.topic in MODULES[request.platform].TOPICS


@pytest.mark.parametrize(("seed", "orders"), CASES)
def test_every_webhook_normalizes_into_canonical_events(
    state: DemoState, registry: StoreRegistry, seed: int, orders: int
) -> None:
    simulation = run(state, seed, orders)
    context = NormalizeContext(
        customer_salt=state.customer_salt.encode(),
        store_currency={s.store_id: s.currency for s in registry if s.currency},
    )
    for request in webhooks(simulation):
        delivery = MODULES[request.platform].authenticate(
            request.body, request.headers, registry, NOW
        )
        raw = RawDelivery(
            event_id=delivery.event_id,
            store_id=delivery.store.store_id,
            platform=request.platform,
            topic=delivery.topic,
            occurred_at=delivery.occurred_at,
            received_at=NOW,
            headers=delivery.headers,
            body=request.body,
        )
        # A NotNormalizable here is what the normalizer would dead-letter.
        events = MODULES[request.platform].normalize(raw, context)
        assert not isinstance(events, Skip), request.label
        assert events, request.label

    expected = expected_outcome(simulation.requests, registry, context.customer_salt, NOW)
    assert expected.rejected == ()
    assert expected.dead_letters == ()
    assert expected.skipped == ()
    for name in (
        "commerce.orders.v1",
        "commerce.products.v1",
        "commerce.inventory-levels.v1",
        "commerce.customers.v1",
        "marketing.touchpoints.v1",
        "marketing.campaign-product-links.v1",
        "ingest.hydration-requests.v1",
    ):
        assert expected.events[name], name


def test_retried_deliveries_are_repeats_and_refunds_are_counted_once(
    state: DemoState, registry: StoreRegistry
) -> None:
    simulation = run(state, 7, 40)
    retries = [r for r in simulation.requests if r.retry]
    assert sorted(r.platform for r in retries) == ["bigcommerce", "shopify"]
    for retry in retries:
        (original,) = [r for r in simulation.requests if not r.retry and r.body == retry.body]
        assert original.headers == retry.headers
    expected = expected_outcome(simulation.requests, registry, state.customer_salt.encode(), NOW)
    assert {r.label for r in retries} <= set(expected.duplicates)
    # Each refund is one event, though Shopify and WooCommerce repeat it in later updates.
    refunds = sum(simulation.refunds.values())
    orders = sum(simulation.orders.values())
    assert refunds >= 3
    assert len(expected.events["commerce.orders.v1"]) > orders + refunds


@pytest.mark.parametrize(("seed", "orders"), CASES)
def test_every_store_sells_something_out_and_restocks_it(
    state: DemoState, seed: int, orders: int
) -> None:
    levels: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for request in webhooks(run(state, seed, orders)):
        body = parsed(request)
        if request.topic == "inventory_levels/update":
            key, level = f"{body['inventory_item_id']}@{body['location_id']}", body["available"]
        elif request.topic.startswith("product.") and body.get("manage_stock"):
            key, level = str(body["id"]), body["stock_quantity"]
        elif request.topic.endswith("/inventory/updated"):
            inventory = body["data"]["inventory"]
            assert inventory["method"] == "absolute"
            key, level = f"{body['data']['type']}/{body['data']['id']}", inventory["value"]
        else:
            continue
        assert isinstance(level, int)
        assert level >= 0
        levels[request.platform][key].append(level)
    assert sorted(levels) == ["bigcommerce", "shopify", "woocommerce"]
    for platform, items in levels.items():
        came_back = [
            key
            for key, history in items.items()
            if 0 in history and any(level > 0 for level in history[history.index(0) :])
        ]
        assert came_back, f"no {platform} item went to 0 and back"


def test_the_stock_story_matches_the_webhooks(state: DemoState) -> None:
    simulation = run(state, 7, 40)
    by_store: dict[str, list[str]] = defaultdict(list)
    for moment in simulation.stock:
        by_store[moment.store_id].append(moment.kind)
    assert sorted(by_store) == ["demo-bigcommerce", "demo-shopify", "demo-woo"]
    for kinds in by_store.values():
        assert kinds.count("sold_out") == kinds.count("restocked") >= 1


@pytest.mark.parametrize(("seed", "orders"), CASES)
def test_feed_bodies_carry_no_float_money(state: DemoState, seed: int, orders: int) -> None:
    def no_float(text: str) -> Any:
        raise AssertionError(f"a float in a feed body: {text}")

    feed_requests = [r for r in run(state, seed, orders).requests if r.is_feed]
    assert {r.topic for r in feed_requests} == {"touchpoints", "campaigns"}
    for request in feed_requests:
        body = json.loads(request.body, parse_float=no_float)
        for item in body.get("touchpoints", []):
            if "cost" in item:
                assert type(item["cost"]["amount_minor"]) is int
                assert item["cost"]["currency"] in ("USD", "EUR")


def test_payloads_have_the_platforms_shapes(state: DemoState) -> None:
    simulation = run(state, 7, 40)
    for request in webhooks(simulation):
        body = parsed(request)
        if request.platform == "shopify" and request.topic.startswith("orders/"):
            assert type(body["id"]) is int
            assert body["id"] > 2**53
            for name in ("total_price", "subtotal_price", "total_tax"):
                Decimal(body[name])  # a decimal string
                assert isinstance(body[name], str)
            assert body["total_price_set"]["shop_money"]["amount"] == body["total_price"]
            assert all(type(line["variant_id"]) is int for line in body["line_items"])
            assert re.fullmatch(r".*[+-]\d\d:\d\d", body["updated_at"])
        elif request.platform == "shopify" and request.topic == "refunds/create":
            transactions = body["transactions"]
            assert all(isinstance(t["amount"], str) for t in transactions)
        elif request.platform == "woocommerce":
            assert request.body.isascii()
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["date_modified_gmt"])
            if request.topic.startswith("order."):
                assert isinstance(body["total"], str)
                assert isinstance(body["number"], str)
                assert all(Decimal(r["total"]) < 0 for r in body["refunds"])
        elif request.platform == "bigcommerce":
            assert set(body) == {"scope", "store_id", "data", "hash", "created_at", "producer"}
            assert body["scope"] == request.topic
            assert isinstance(body["store_id"], str)
            assert type(body["created_at"]) is int
            compact = json.dumps(body["data"], separators=(",", ":")).encode()
            assert body["hash"] == hashlib.sha1(compact).hexdigest()  # noqa: S324


def test_only_example_domains_receive_mail(state: DemoState) -> None:
    addresses = {
        address
        for request in run(state, 2026, 120).requests
        for address in re.findall(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", request.body)
    }
    assert addresses
    assert {a.rsplit(b"@", 1)[1] for a in addresses} <= {b"example.com", b"example.org"}


def test_the_run_must_give_every_store_an_order(state: DemoState) -> None:
    with pytest.raises(ValueError, match="orders"):
        simulate(7, 2, stores=state.stores, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        simulate(7, 8, stores=state.stores, now=NOW.replace(tzinfo=None))


def test_demo_state_is_made_once_and_kept_private(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    first = ensure_demo_state(directory)
    again = ensure_demo_state(directory)
    assert again == first
    assert directory.stat().st_mode & 0o777 == 0o700
    for name in ("master-keys", "customer-key-salt", "stores.json", "api-keys.json"):
        assert (directory / name).stat().st_mode & 0o777 == 0o600, name
    assert first.master_keys.startswith("demo:")
    assert first.stores_file.read_text().count('"currency"') == 3
    for store in first.stores:
        # The registry keeps only a digest of each API key, and the secrets only encrypted.
        assert store.api_key not in first.stores_file.read_text()
        assert store.secret.decode() not in first.stores_file.read_text()


def test_bigcommerce_webhooks_hydrate_from_the_records_the_store_keeps(
    state: DemoState, registry: StoreRegistry
) -> None:
    """The simulation writes BigCommerce's products, customers and orders to its back office
    (here an emulator, as in the demo) without changing the story; what the hydrator reads there
    for each thin webhook is complete, and names the stock as the story's moments do."""
    (store,) = [s for s in state.stores if s.platform == "bigcommerce"]
    emulator = BigCommerceEmulator(
        store_hash(store.spec.identity), "sim-token", requests_per_window=1000
    )
    simulation = run_simulation(7, 40, stores=state.stores, now=NOW, bigcommerce=emulator)
    assert simulation == run(state, 7, 40)
    context = NormalizeContext(
        customer_salt=state.customer_salt.encode(),
        store_currency={s.store_id: s.currency for s in registry if s.currency},
        source="hydration",
    )
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with (
        serve(emulator.app) as served,
        BigCommerceApi(
            store.store_id, emulator.store_hash, "sim-token", api_url=served.base_url
        ) as api,
    ):
        for request in webhooks(simulation):
            if request.platform != "bigcommerce" or request.retry:
                continue
            delivery = bigcommerce.authenticate(request.body, request.headers, registry, NOW)
            raw = RawDelivery(
                delivery.event_id, store.store_id, "bigcommerce", delivery.topic,
                delivery.occurred_at, NOW, delivery.headers, request.body,
            )  # fmt: skip
            result = bigcommerce.normalize(raw, context)
            assert isinstance(result, list)
            for hydration in result:
                value = hydration.value
                found = READERS["bigcommerce"](api, value, requesting_delivery(value), context)
                assert found, request.label
                for event in found:
                    events[event.record.rsplit(".", 1)[-1]].append(event.value)
    assert emulator.calls.violations == 0

    orders = {o["order_id"]: o for o in events["OrderEvent"] if o["kind"] == "created"}
    assert len(orders) == simulation.orders["bigcommerce"] == len(emulator.orders)
    for order_id, order in orders.items():
        held = emulator.orders[int(order_id)]
        assert order["total"]["amount_minor"] == int(Decimal(held["total_inc_tax"]) * 100)
        assert order["total"]["amount_minor"] > 0
        lines = emulator.order_products[int(order_id)]
        assert len(order["line_items"]) == len(lines) > 0
        assert all(line["product_id"] and line["variant_id"] for line in order["line_items"])
    refunds = {o["refund"]["refund_id"] for o in events["OrderEvent"] if o["kind"] == "refunded"}
    assert len(refunds) == simulation.refunds["bigcommerce"] > 0
    assert len({c["customer_id"] for c in events["CustomerUpsert"]}) == len(emulator.customers)

    # The breaker learns whose stock an item is from the products, and the levels from the
    # webhooks: together they must name each moment's product and variant, at its level.
    owners = {
        r["item_id"]: (r["product_id"], r["variant_id"])
        for product in events["ProductUpsert"]
        for r in variant_records({"record": "ProductUpsert", **product})
    }
    levels = {
        (owners[level["inventory_item_id"]], level["envelope"]["occurred_at"], level["quantity"])
        for level in events["InventoryLevel"]
    }
    moments = [m for m in simulation.stock if m.store_id == store.store_id]
    assert moments
    for moment in moments:
        assert any(
            owner == (moment.product_id, moment.variant_id)
            and quantity == moment.level
            and abs(at - moment.at) <= timedelta(minutes=5)
            for owner, at, quantity in levels
        ), moment
