"""The demo's Shopify store: its ids (some above 2^53, as real ones are), and its webhooks as
Shopify sends them, JSON integers for ids and decimal strings for money, signed with
:func:`platforms.shopify.signed_headers`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

from demo.simulation.world import (
    CENT,
    Customer,
    Day,
    DemoRequest,
    DemoStore,
    Line,
    Order,
    Product,
    Variant,
    compact_json,
    money,
)
from platforms.shopify import signed_headers

_SHOP_TZ: Final = ZoneInfo("America/New_York")
_NY_TAX: Final = Decimal("0.08875")
_SHOPIFY_LOCATION: Final = 71234567890


class ShopifyStore:
    """The Shopify store of the day (see :class:`demo.simulation.world.Platform`)."""

    def __init__(self, day: Day, store: DemoStore) -> None:
        self.day = day
        self.store = store
        self._retried = False

    def product_id(self) -> int:
        return self.day.ids.next("product", 8_800_000_000_000)

    def variant_ids(self, product: Product) -> tuple[int, int]:
        # Above 2**53, as real ones are: a parser that goes through doubles breaks them.
        return (
            self.day.ids.next("variant", 9_007_199_254_740_993),
            self.day.ids.next("item", 9_100_000_000_000_000),
        )

    def customer_id(self) -> int:
        return self.day.ids.next("customer", 7_600_000_000_000)

    def order_id(self) -> int:
        return self.day.ids.next("order", 5_980_000_000_000_000_000)

    def line_id(self) -> int:
        return self.day.ids.next("line", 15_000_000_000_000)

    def product_created(self, product: Product) -> None:
        created = product.created_at
        self._send("products/create", _product_body(product), created)
        for k, variant in enumerate(product.variants, start=1):
            self.stock_changed(variant, created + timedelta(seconds=k))

    def customer_created(self, customer: Customer) -> None:
        self._send("customers/create", _customer_body(customer), customer.created_at)

    def order_placed(self, order: Order, index: int) -> None:
        self._send("orders/create", self._order_body(order), order.placed_at)
        for k, variant in enumerate(self.day.take(self.store, order, index), start=1):
            self.stock_changed(variant, order.placed_at + timedelta(seconds=2 + k))
        order.status = "paid"
        order.paid_at = order.updated_at = order.placed_at + timedelta(seconds=45)
        paid = self._send("orders/paid", self._order_body(order), order.paid_at)
        if not self._retried:
            # Shopify did not get our 200 in time (say) and delivers the same webhook again.
            self._retried = True
            self.day.schedule(index + 2, "retry", "shopify", paid)

    def stock_changed(self, variant: Variant, at: datetime) -> None:
        self._send(
            "inventory_levels/update",
            {
                "inventory_item_id": variant.item_id,
                "location_id": _SHOPIFY_LOCATION,
                "available": variant.level,
                "updated_at": _shop_time(at),
                "admin_graphql_api_id": (
                    f"gid://shopify/InventoryLevel/{_SHOPIFY_LOCATION}"
                    f"?inventory_item_id={variant.item_id}"
                ),
            },
            at,
        )

    def refunded(self, order: Order, at: datetime) -> None:
        """One unit of the first line back to the shopper, without a restock (it arrived
        damaged), then the order update that repeats the refund."""
        line = order.lines[0]
        refund_id = self.day.ids.next("refund", 1_020_000_000_000_000_000)
        transaction_id = self.day.ids.next("transaction", 7_010_000_000_000)
        unit = Decimal(line.variant.spec.price)
        tax = (unit * _NY_TAX).quantize(CENT, rounding=ROUND_HALF_UP)
        when = _shop_time(at)
        refund = {
            "id": refund_id,
            "order_id": order.order_id,
            "created_at": when,
            "note": "Arrived damaged",
            "user_id": 93456789012,
            "processed_at": when,
            "duties": [],
            "total_duties_set": _money_set("0.00", "USD"),
            "return": None,
            "refund_shipping_lines": [],
            "restock": False,
            "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
            "order_adjustments": [],
            "refund_line_items": [
                {
                    "id": refund_id % 10**13,
                    "quantity": 1,
                    "line_item_id": line.line_id,
                    "location_id": None,
                    "restock_type": "no_restock",
                    # Shopify writes these two as JSON numbers; the *_set strings are exact.
                    "subtotal": float(unit),
                    "total_tax": float(tax),
                    "subtotal_set": _money_set(money(unit), "USD"),
                    "total_tax_set": _money_set(money(tax), "USD"),
                    "line_item": _line_body(line),
                }
            ],
            "transactions": [
                {
                    "id": transaction_id,
                    "order_id": order.order_id,
                    "kind": "refund",
                    "gateway": "shopify_payments",
                    "status": "success",
                    "message": "Transaction approved",
                    "created_at": when,
                    "test": False,
                    "parent_id": transaction_id - 1,
                    "processed_at": when,
                    "amount": money(unit + tax),
                    "currency": "USD",
                    "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{transaction_id}",
                }
            ],
        }
        self._send("refunds/create", refund, at)
        order.refunds.append(refund)
        order.updated_at = at + timedelta(seconds=2)
        self._send("orders/updated", self._order_body(order), order.updated_at)

    def _send(self, topic: str, document: Any, at: datetime) -> DemoRequest:
        store = self.store
        body = compact_json(document)
        headers = signed_headers(
            body,
            store.secret,
            shop_domain=store.spec.identity,
            topic=topic,
            webhook_id=str(uuid.UUID(int=self.day.tokens.getrandbits(128), version=4)),
            triggered_at=at,
        )
        request = DemoRequest(
            "POST", "/webhooks/shopify", headers, body, "shopify", topic, store.store_id, at
        )
        self.day.send(request)
        return request

    def _order_body(self, order: Order) -> dict[str, Any]:
        totals = _totals(order)
        refunded = sum(
            (Decimal(t["amount"]) for r in order.refunds for t in r["transactions"]), Decimal(0)
        )
        usd = "USD"
        store = self.store
        landing = "/"
        if order.arrival:
            landing = (
                f"/products/{order.lines[0].variant.product.spec.handle}"
                f"?utm_source={order.arrival['utm_source']}&utm_medium=cpc"
                f"&utm_campaign={order.arrival['utm_campaign']}"
                f"&{'fbclid' if order.arrival['utm_source'] == 'meta' else 'gclid'}="
                f"{order.arrival['click_id']}"
            )
        financial = order.status
        if order.refunds:
            financial = "partially_refunded"
        customer = _customer_body(order.customer)
        return {
            "id": order.order_id,
            "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
            "app_id": 580111,
            "browser_ip": "203.0.113.47",
            "buyer_accepts_marketing": False,
            "cancel_reason": None,
            "cancelled_at": None,
            "checkout_token": f"{order.order_id:x}",
            "closed_at": None,
            "confirmation_number": f"D{order.number}X",
            "confirmed": True,
            "contact_email": order.customer.email,
            "created_at": _shop_time(order.placed_at),
            "currency": usd,
            "current_subtotal_price": money(totals["subtotal"]),
            "current_total_price": money(totals["total"] - refunded),
            "current_total_tax": money(totals["tax"]),
            "customer_locale": "en-US",
            "discount_codes": [],
            "email": order.customer.email,
            "estimated_taxes": False,
            "financial_status": financial,
            "fulfillment_status": None,
            "landing_site": landing,
            "landing_site_ref": None,
            "name": f"#{order.number}",
            "note": None,
            "note_attributes": [],
            "number": order.number - 1000,
            "order_number": order.number,
            "order_status_url": f"https://{store.spec.identity}/orders/{order.order_id:x}/authenticate",
            "presentment_currency": usd,
            "processed_at": _shop_time(order.placed_at),
            "referring_site": "https://www.example.com/" if order.arrival else None,
            "source_name": "web",
            "subtotal_price": money(totals["subtotal"]),
            "subtotal_price_set": _money_set(money(totals["subtotal"]), usd),
            "tags": "",
            "tax_lines": [
                {
                    "price": money(totals["tax"]),
                    "rate": float(_NY_TAX),
                    "title": "NY State + City Tax",
                    "price_set": _money_set(money(totals["tax"]), usd),
                    "channel_liable": False,
                }
            ],
            "taxes_included": False,
            "test": False,
            "token": f"{order.order_id:x}",
            "total_discounts": "0.00",
            "total_discounts_set": _money_set("0.00", usd),
            "total_line_items_price": money(totals["subtotal"]),
            "total_line_items_price_set": _money_set(money(totals["subtotal"]), usd),
            "total_outstanding": "0.00" if order.paid_at else money(totals["total"]),
            "total_price": money(totals["total"]),
            "total_price_set": _money_set(money(totals["total"]), usd),
            "total_shipping_price_set": _money_set(money(totals["shipping"]), usd),
            "total_tax": money(totals["tax"]),
            "total_tax_set": _money_set(money(totals["tax"]), usd),
            "total_tip_received": "0.00",
            "updated_at": _shop_time(order.updated_at),
            "user_id": None,
            "billing_address": _address(order.customer),
            "customer": {
                key: customer[key]
                for key in (
                    "id",
                    "created_at",
                    "updated_at",
                    "first_name",
                    "last_name",
                    "state",
                    "email",
                    "phone",
                    "currency",
                    "tax_exemptions",
                    "admin_graphql_api_id",
                    "default_address",
                )
            },
            "line_items": [_line_body(line) for line in order.lines],
            "refunds": order.refunds,
            "shipping_address": _address(order.customer),
            "shipping_lines": [
                {
                    "id": order.order_id % 10**13 + 1,
                    "code": "Standard",
                    "discounted_price": money(totals["shipping"]),
                    "price": money(totals["shipping"]),
                    "price_set": _money_set(money(totals["shipping"]), usd),
                    "source": "shopify",
                    "title": "Standard",
                    "tax_lines": [],
                    "discount_allocations": [],
                }
            ],
        }


def _product_body(product: Product) -> dict[str, Any]:
    created = _shop_time(product.created_at)
    spec = product.spec
    return {
        "admin_graphql_api_id": f"gid://shopify/Product/{product.product_id}",
        "body_html": f"<p>{spec.title}.</p>",
        "created_at": created,
        "handle": spec.handle,
        "id": product.product_id,
        "product_type": spec.category,
        "published_at": created,
        "template_suffix": None,
        "title": spec.title,
        "updated_at": created,
        "vendor": "Northwind",
        "status": "active",
        "published_scope": "global",
        "tags": ", ".join(spec.tags),
        "variants": [
            {
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v.variant_id}",
                "barcode": None,
                "compare_at_price": None,
                "created_at": created,
                "id": v.variant_id,
                "inventory_policy": "deny",
                "position": n,
                "price": v.spec.price,
                "product_id": product.product_id,
                "sku": v.spec.sku,
                "taxable": True,
                "title": v.spec.title or "Default Title",
                "updated_at": created,
                "option1": v.spec.title or "Default Title",
                "option2": None,
                "option3": None,
                "image_id": None,
                "inventory_item_id": v.item_id,
                "inventory_quantity": v.level,
                "old_inventory_quantity": v.level,
            }
            for n, v in enumerate(product.variants, start=1)
        ],
        "options": [
            {
                "name": "Size" if product.variants[0].spec.title else "Title",
                "id": product.product_id + 1,
                "product_id": product.product_id,
                "position": 1,
                "values": [v.spec.title or "Default Title" for v in product.variants],
            }
        ],
        "images": [],
        "image": None,
        "media": [],
        "variant_gids": [
            {
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v.variant_id}",
                "updated_at": product.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }
            for v in product.variants
        ],
        "has_variants_that_requires_components": False,
        "category": None,
    }


def _address(customer: Customer) -> dict[str, Any]:
    return {
        "first_name": customer.first,
        "last_name": customer.last,
        "company": None,
        "address1": f"{100 + len(customer.last) * 7} Larkspur Lane",
        "address2": None,
        "city": "Brooklyn",
        "province": "New York",
        "country": "United States",
        "zip": "11215",
        "phone": None,
        "name": f"{customer.first} {customer.last}",
        "province_code": "NY",
        "country_code": "US",
    }


def _customer_body(customer: Customer) -> dict[str, Any]:
    created = _shop_time(customer.created_at)
    address = {
        "id": customer.customer_id + 2_000_000_000_000,
        "customer_id": customer.customer_id,
        **_address(customer),
        "country_name": "United States",
        "default": True,
    }
    return {
        "id": customer.customer_id,
        "created_at": created,
        "updated_at": created,
        "first_name": customer.first,
        "last_name": customer.last,
        "state": "disabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "email": customer.email,
        "phone": None,
        "currency": "USD",
        "addresses": [address],
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer.customer_id}",
        "default_address": address,
    }


def _totals(order: Order) -> dict[str, Decimal]:
    subtotal = sum(
        (Decimal(line.variant.spec.price) * line.quantity for line in order.lines), Decimal(0)
    )
    tax = sum((_line_tax(line) for line in order.lines), Decimal(0))
    shipping = Decimal("0.00") if subtotal >= 100 else Decimal("8.00")
    return {
        "subtotal": subtotal,
        "tax": tax,
        "shipping": shipping,
        "total": subtotal + tax + shipping,
    }


def _line_tax(line: Line) -> Decimal:
    amount = Decimal(line.variant.spec.price) * line.quantity * _NY_TAX
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _line_body(line: Line) -> dict[str, Any]:
    variant = line.variant
    tax = money(_line_tax(line))
    return {
        "id": line.line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line.line_id}",
        "current_quantity": line.quantity,
        "fulfillable_quantity": line.quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 500,
        "name": variant.label.replace(" (", " - ").rstrip(")"),
        "price": variant.spec.price,
        "price_set": _money_set(variant.spec.price, "USD"),
        "product_exists": True,
        "product_id": variant.product.product_id,
        "properties": [],
        "quantity": line.quantity,
        "requires_shipping": True,
        "sales_line_item_group_id": None,
        "sku": variant.spec.sku,
        "taxable": True,
        "title": variant.product.spec.title,
        "total_discount": "0.00",
        "total_discount_set": _money_set("0.00", "USD"),
        "variant_id": variant.variant_id,
        "variant_inventory_management": "shopify",
        "variant_title": variant.spec.title,
        "vendor": "Northwind",
        "tax_lines": [
            {
                "channel_liable": False,
                "price": tax,
                "price_set": _money_set(tax, "USD"),
                "rate": float(_NY_TAX),
                "title": "NY State + City Tax",
            }
        ],
        "duties": [],
        "discount_allocations": [],
    }


def _shop_time(at: datetime) -> str:
    return at.astimezone(_SHOP_TZ).isoformat(timespec="seconds")


def _money_set(amount: str, currency: str) -> dict[str, Any]:
    return {
        "shop_money": {"amount": amount, "currency_code": currency},
        "presentment_money": {"amount": amount, "currency_code": currency},
    }
