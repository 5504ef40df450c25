"""The platform normalizers, pure: documented payloads in, canonical events out.

Fixtures are the platforms' documented sample shapes (docs/platform-payloads.md). Every event
must fit its Avro schema, carry no email outside CustomerUpsert, and be derived identically on a
second run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from platforms import bigcommerce, shopify, woocommerce
from platforms.dispatch import normalize_delivery
from platforms.events import Emit, NormalizeContext, RawDelivery, shopper_key
from platforms.payloads import NotNormalizable, minor_units
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde
from schemas.topics import topic_for_record
from streams.normalizer.dedupe import SeenEvents, first_sightings
from tests import FIXTURES

SERDE = AvroSerde(CommittedCatalogue.load())
CONTEXT = NormalizeContext(customer_salt=b"test-salt", store_currency={"acme": "USD"})
T0 = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)


def fixture_topic(path: Path) -> str:
    platform, stem = path.parent.name, path.stem
    if platform == "bigcommerce":
        return str(json.loads(path.read_bytes())["scope"])
    base = stem.split("_jpy")[0]
    return base.replace("__", "." if platform == "woocommerce" else "/")


def raw_for(
    platform: str, topic: str, body: bytes, event_id: str = "raw-1", store_id: str = "acme"
) -> RawDelivery:
    return RawDelivery(event_id, store_id, platform, topic, T0, T0, {}, body)


def fixture(platform: str, name: str) -> RawDelivery:
    path = FIXTURES / platform / f"{name}.json"
    return raw_for(platform, fixture_topic(path), path.read_bytes(), event_id=f"raw-{name}")


def events_of(raw: RawDelivery, context: NormalizeContext = CONTEXT) -> list[Emit]:
    outcome = normalize_delivery(raw, context)
    assert outcome.status == "normalized", (outcome.reason, outcome.message)
    return list(outcome.events)


ALL_FIXTURES = sorted(FIXTURES.glob("*/*.json"))


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_fixture_normalizes_into_schema_valid_events_without_leaking_email(
    path: Path,
) -> None:
    raw = raw_for(path.parent.name, fixture_topic(path), path.read_bytes())
    first = normalize_delivery(raw, CONTEXT)
    assert first.status in ("normalized", "skipped"), (first.reason, first.message)
    assert normalize_delivery(raw, CONTEXT) == first  # deterministic, ids included
    for event in first.events:
        encoded = SERDE.encode(event.record, event.value)
        assert SERDE.decode(encoded).value["envelope"]["event_id"] == event.event_id
        assert event.value["envelope"]["caused_by"] == [raw.event_id]
        key = topic_for_record(event.record).message_key(event.value)
        assert b"@" not in key
        if not event.record.endswith("CustomerUpsert"):
            assert b"@example.com" not in encoded, event.record


def test_shopify_order_keeps_big_ids_exact_and_money_in_minor_units() -> None:
    (order,) = events_of(fixture("shopify", "orders__create"))
    value = order.value
    assert order.record == "dev.revloop.events.OrderEvent"
    assert value["kind"] == "created"
    assert value["order_id"] == "5987654321098765432"  # > 2^53, every digit kept
    assert value["order_number"] == "#1042"
    assert value["total"] == {"amount_minor": 18981, "currency": "USD"}
    assert value["subtotal"]["amount_minor"] == 16699
    assert value["total_tax"]["amount_minor"] == 1482
    assert value["total_shipping"]["amount_minor"] == 800
    lines = value["line_items"]
    assert [line["total"]["amount_minor"] for line in lines] == [12999, 3700]
    assert sum(line["total"]["amount_minor"] for line in lines) == value["subtotal"]["amount_minor"]
    assert lines[1]["variant_id"] == "47112233440011"
    assert value["customer_key"] == shopper_key(CONTEXT, "acme", "maya.lindqvist@example.com", None)
    assert value["attribution_hints"]["landing_site"] == "/collections/rainwear"
    assert value["envelope"]["occurred_at"] == datetime(2026, 3, 14, 14, 22, 33, tzinfo=UTC)


def test_zero_decimal_currencies_are_not_scaled() -> None:
    (order,) = events_of(fixture("shopify", "orders__create_jpy"))
    assert order.value["total"] == {"amount_minor": 13600, "currency": "JPY"}
    assert order.value["total_shipping"] == {"amount_minor": 800, "currency": "JPY"}


def test_a_shopify_refund_is_one_event_whether_it_comes_alone_or_inside_an_order_update() -> None:
    (alone,) = events_of(fixture("shopify", "refunds__create"))
    order, embedded = events_of(fixture("shopify", "orders__updated"))
    assert alone.value["kind"] == embedded.value["kind"] == "refunded"
    assert alone.event_id == embedded.event_id  # the refund id, not the delivery, names it
    refund = alone.value["refund"]
    assert refund["refund_id"] == "1023456789012345678"
    assert refund["amount"] == {"amount_minor": 2014, "currency": "USD"}  # 18.50 + 1.64 tax
    assert [line["amount"]["amount_minor"] for line in refund["line_items"]] == [2014]
    assert alone.value["total"] is None  # refunds/create does not carry the order
    assert embedded.value["total"] is None
    assert order.value["kind"] == "updated"

    seen = SeenEvents(timedelta(hours=72))
    update = fixture("shopify", "orders__updated")
    assert first_sightings(update, [order, embedded], seen) == (True, [order, embedded])
    later = fixture("shopify", "refunds__create")
    assert first_sightings(later, [alone], seen) == (True, [])


def test_shopify_products_need_the_store_currency_and_dead_letter_without_it() -> None:
    (product,) = events_of(fixture("shopify", "products__update"))
    variants = product.value["variants"]
    assert variants[0]["inventory_item_id"] == "9007199254740993"
    assert variants[0]["price"] == {"amount_minor": 12999, "currency": "USD"}
    unknown = NormalizeContext(customer_salt=b"test-salt")
    outcome = normalize_delivery(fixture("shopify", "products__update"), unknown)
    assert (outcome.status, outcome.reason) == ("dead_lettered", "store_currency_unknown")


def test_shopify_inventory_is_absolute_per_location() -> None:
    (level,) = events_of(fixture("shopify", "inventory_levels__update"))
    assert level.value["inventory_item_id"] == "9007199254740995"
    assert level.value["location_id"] == "71234567890"
    assert (level.value["method"], level.value["quantity"]) == ("absolute", 6)
    untracked = raw_for(
        "shopify",
        "inventory_levels/update",
        b'{"inventory_item_id": 1, "location_id": 2, "available": null}',
    )
    assert normalize_delivery(untracked, CONTEXT).reason == "untracked_inventory"


def test_shopify_redactions_name_the_customer_by_id_and_key_and_the_orders_as_strings() -> None:
    (redact,) = events_of(fixture("shopify", "customers__redact"))
    assert redact.value["scope"] == "customer"
    assert redact.value["customer_id"] == "7654321098765"
    assert redact.value["customer_key"] == shopper_key(
        CONTEXT, "acme", "maya.lindqvist@example.com", None
    )
    assert redact.value["orders_to_redact"] == ["5987654321098765432", "5987654321098765511"]
    (shop,) = events_of(fixture("shopify", "shop__redact"))
    assert (shop.value["scope"], shop.value["customer_id"]) == ("shop", None)
    anonymous = raw_for("shopify", "customers/redact", b'{"customer": {}, "orders_to_redact": []}')
    assert normalize_delivery(anonymous, CONTEXT).status == "dead_lettered"


def test_woocommerce_order_update_yields_status_kind_and_each_refund_as_a_positive_amount() -> None:
    order, refund = events_of(fixture("woocommerce", "order__updated"))
    assert (order.value["kind"], order.value["fulfillment_status"]) == ("fulfilled", "completed")
    assert order.value["total"] == {"amount_minor": 5997, "currency": "EUR"}
    assert order.value["subtotal"]["amount_minor"] == 3360 + 1260
    assert [line["unit_price"]["amount_minor"] for line in order.value["line_items"]] == [
        1680,
        1260,
    ]
    assert order.value["envelope"]["occurred_at"].tzinfo is not None
    assert refund.value["refund"]["amount"] == {"amount_minor": 1499, "currency": "EUR"}
    assert refund.value["refund"]["refund_id"] == "4830"


def _woo_order(**changes: Any) -> RawDelivery:
    """The documented order sample (order__created.json), some top-level fields replaced, sent
    as order.updated."""
    order = json.loads((FIXTURES / "woocommerce" / "order__created.json").read_bytes())
    order.update(changes)
    return raw_for("woocommerce", "order.updated", json.dumps(order).encode())


def _woo_lines_without_subtotal(*which: int) -> list[dict[str, Any]]:
    order = json.loads((FIXTURES / "woocommerce" / "order__created.json").read_bytes())
    lines: list[dict[str, Any]] = order["line_items"]
    for index in which:
        del lines[index]["subtotal"]
    return lines


@pytest.mark.parametrize("missing", [(0, 1), (1,)], ids=["every-line", "one-line"])
def test_woocommerce_order_subtotal_is_unknown_not_zero_when_a_line_lacks_one(
    missing: tuple[int, ...],
) -> None:
    (order,) = events_of(_woo_order(line_items=_woo_lines_without_subtotal(*missing)))
    assert order.value["subtotal"] is None  # not 0, not the lines that happen to have one
    assert order.value["total"] == {"amount_minor": 5997, "currency": "EUR"}
    assert [line["total"]["amount_minor"] for line in order.value["line_items"]] == [3360, 1260]
    (complete,) = events_of(_woo_order())
    assert complete.value["subtotal"] == {"amount_minor": 3360 + 1260, "currency": "EUR"}
    (no_lines,) = events_of(_woo_order(line_items=None))
    assert no_lines.value["subtotal"] is None  # null lines: nothing known about them
    (empty,) = events_of(_woo_order(line_items=[]))
    assert empty.value["subtotal"] == {"amount_minor": 0, "currency": "EUR"}


@pytest.mark.parametrize(
    ("status", "date_paid_gmt", "financial_status"),
    [
        ("processing", None, "paid"),  # WooCommerce's own is_paid(): a paid status
        ("completed", None, "paid"),
        ("processing", "2026-03-14T15:22:34", "paid"),
        ("on-hold", None, "unpaid"),  # awaiting payment
        ("pending", None, "unpaid"),
        ("failed", None, "unpaid"),
        ("cancelled", None, "unpaid"),
        ("checkout-draft", None, "unpaid"),
        ("on-hold", "2026-03-14T15:22:34", "paid"),  # paid, then put on hold
        ("refunded", "2026-03-14T15:22:34", "refunded"),
        ("refunded", None, "refunded"),
        ("awaiting-shipment", "2026-03-14T15:22:34", "paid"),  # a plugin's status
        ("awaiting-shipment", None, None),  # a plugin's status: unknown, not "unpaid"
    ],
)
def test_woocommerce_financial_status_follows_the_order_status_and_the_payment_date(
    status: str, date_paid_gmt: str | None, financial_status: str | None
) -> None:
    raw = _woo_order(status=status, date_paid_gmt=date_paid_gmt)  # WooCommerce sends null
    (order, *_) = events_of(raw)
    assert order.value["financial_status"] == financial_status
    assert order.value["fulfillment_status"] == status


def test_woocommerce_variable_products_ask_for_their_variations() -> None:
    context = NormalizeContext(customer_salt=b"s", store_currency={"acme": "EUR"})
    product, hydrate = events_of(fixture("woocommerce", "product__updated"), context)
    assert product.value["variants"] == []
    assert hydrate.value["resource"] == "product_variations"
    assert hydrate.value["details"] == {"variations": "318,319,320"}
    simple = raw_for(
        "woocommerce",
        "product.updated",
        json.dumps(
            {
                "id": 77,
                "name": "Mug",
                "type": "simple",
                "price": "14.99",
                "sku": "MUG",
                "manage_stock": True,
                "stock_quantity": 0,
                "date_modified_gmt": "2026-03-18T08:47:02",
            }
        ).encode(),
    )
    upsert, stock = events_of(simple, context)
    assert upsert.value["variants"][0]["price"] == {"amount_minor": 1499, "currency": "EUR"}
    assert (stock.record, stock.value["quantity"], stock.value["location_id"]) == (
        "dev.revloop.events.InventoryLevel",
        0,
        "default",
    )


def test_bigcommerce_thin_payloads_become_hydration_requests_with_their_hints() -> None:
    (request,) = events_of(fixture("bigcommerce", "store__product__inventory__updated_relative"))
    value = request.value
    assert (value["resource"], value["resource_id"], value["scope"]) == (
        "product",
        "167",
        "store/product/inventory/updated",
    )
    assert value["details"] == {
        "inventory.product_id": "167",
        "inventory.method": "relative",
        "inventory.value": "-2",
    }
    assert value["raw_event_id"] == "raw-store__product__inventory__updated_relative"
    assert value["envelope"]["occurred_at"] == datetime.fromtimestamp(1773498153, UTC)
    (deleted,) = events_of(fixture("bigcommerce", "store__product__deleted"))
    assert deleted.record == "dev.revloop.events.ProductDelete"


@pytest.mark.parametrize(
    ("platform", "topic", "body", "reason"),
    [
        ("shopify", "orders/create", b"{not json", "bad_json"),
        ("shopify", "orders/create", b"[1, 2]", "bad_json"),
        (
            "shopify",
            "orders/create",
            b'{"id": 1, "currency": "USD", "total_price": NaN}',
            "bad_json",
        ),
        ("shopify", "orders/create", b'{"id": 1.5, "currency": "USD"}', "bad_id"),
        ("shopify", "orders/create", b'{"id": 1, "currency": "dollars"}', "bad_currency"),
        (
            "shopify",
            "orders/create",
            b'{"id": 1, "currency": "USD", "total_price": "1.005"}',
            "bad_money",
        ),
        (
            "woocommerce",
            "order.updated",
            b'{"id": 1, "currency": "EUR", "total": "5,00"}',
            "bad_money",
        ),
        ("bigcommerce", "store/order/created", b'{"data": {"type": "order"}}', "missing_field"),
    ],
)
def test_unnormalizable_payloads_dead_letter_with_a_reason(
    platform: str, topic: str, body: bytes, reason: str
) -> None:
    outcome = normalize_delivery(raw_for(platform, topic, body), CONTEXT)
    assert (outcome.status, outcome.reason) == ("dead_lettered", reason)


def test_unknown_topics_and_raw_only_topics_are_skipped_not_dead_lettered() -> None:
    for platform, topic in [
        ("shopify", "themes/publish"),
        ("shopify", "customers/data_request"),
        ("woocommerce", "coupon.created"),
        ("bigcommerce", "store/cart/created"),
    ]:
        assert normalize_delivery(raw_for(platform, topic, b"{}"), CONTEXT).status == "skipped"


# -- properties --------------------------------------------------------------------------------

exponents = st.sampled_from([("USD", 2), ("JPY", 0), ("KWD", 3), ("EUR", 2)])


@given(exponents, st.integers(min_value=-(10**15), max_value=10**15))
def test_minor_units_is_exact_for_every_amount_the_currency_can_express(
    currency_exponent: tuple[str, int], minor: int
) -> None:
    currency, exponent = currency_exponent
    amount = Decimal(minor).scaleb(-exponent)
    assert minor_units(str(amount), currency) == minor
    assert minor_units(f"{amount:.{exponent + 2}f}", currency) == minor  # trailing zeros


@given(exponents, st.integers(min_value=1, max_value=9), st.integers(0, 10**9))
def test_minor_units_refuses_amounts_finer_than_the_currency(
    currency_exponent: tuple[str, int], digit: int, whole: int
) -> None:
    currency, exponent = currency_exponent
    amount = f"{whole}.{'0' * exponent}{digit}"
    with pytest.raises(NotNormalizable):
        minor_units(amount, currency)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutate(document: Any, path_choice: int, replacement: Any) -> Any:
    """Replace (or delete, when ``replacement`` is the sentinel) one node of ``document``."""
    nodes: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                nodes.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                nodes.append((node, index))
                walk(node[index])

    walk(document)
    if nodes:
        parent, key = nodes[path_choice % len(nodes)]
        if replacement is _DELETE and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = None if replacement is _DELETE else replacement
    return document


_DELETE = object()


def _dumps(document: Any) -> bytes:
    return json.dumps(document, default=str).encode()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(ALL_FIXTURES),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.just(_DELETE) | json_values), min_size=1, max_size=3
    ),
)
def test_mutated_payloads_either_normalize_into_valid_events_or_dead_letter(
    path: Path, mutations: list[tuple[int, Any]]
) -> None:
    document = json.loads(path.read_bytes())
    for choice, replacement in mutations:
        document = _mutate(document, choice, replacement)
    raw = raw_for(path.parent.name, fixture_topic(path), _dumps(document))
    outcome = normalize_delivery(raw, CONTEXT)  # never raises
    assert outcome.status in ("normalized", "skipped", "dead_lettered")
    for event in outcome.events:
        SERDE.encode(event.record, event.value)  # whatever is emitted fits its schema


@given(st.sampled_from(["shopify", "woocommerce", "bigcommerce"]), st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(platform: str, body: bytes) -> None:
    topic = {"shopify": "orders/create", "woocommerce": "order.updated"}.get(
        platform, "store/order/created"
    )
    assert normalize_delivery(raw_for(platform, topic, body), CONTEXT).status == "dead_lettered"


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 200)), min_size=1, max_size=60
    ).map(lambda xs: sorted(xs, key=lambda x: x[1]))
)
def test_seen_events_remembers_exactly_the_ids_inside_the_window(
    sightings: list[tuple[str, int]],
) -> None:
    window = timedelta(seconds=50)
    seen = SeenEvents(window)
    last: dict[str, int] = {}
    for event_id, second in sightings:
        now = T0 + timedelta(seconds=second)
        seen.expire(now)
        expected = event_id in last and second - last[event_id] < 50
        assert (event_id in seen) == expected
        seen.add(event_id, now)
        last[event_id] = second


def test_platform_modules_expose_one_normalize_each() -> None:
    for module in (shopify, woocommerce, bigcommerce):
        assert callable(module.normalize)
