"""The demo's BigCommerce store: its thin webhooks (ids only, and a ``hash`` of the data),
signed with :func:`platforms.bigcommerce.signed_headers` for the time the demo sends them, and
what the store's API would answer for them: each product, customer and order written, as it
happens, to a :class:`BackOffice` (the demo's BigCommerce emulator, which `revloop connect
hydrate` reads), in the API's own shapes (V3 catalog and customers, V2 orders and their
products, V3 refunds)."""

from __future__ import annotations

import email.utils
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Protocol

from demo.simulation.world import (
    CENT,
    Customer,
    Day,
    DemoRequest,
    DemoStore,
    Order,
    Product,
    Variant,
    compact_json,
)
from platforms.bigcommerce import signed_headers

_BC_STORE_NUMBER: Final = "1009876543"
_VARIANT_IDS: Final = 5_000
"""Variant ids start here within a run's block, apart from the product ids: a variant whose id
is its product's would look like a product's own stock to the breaker."""
_TAX: Final = Decimal("0.0625")
"""Massachusetts sales tax, on the items (shipping is free)."""
_PENDING, _REFUNDED, _AWAITING_FULFILLMENT, _PARTIALLY_REFUNDED = 1, 4, 11, 14
_STATUSES: Final = {
    1: "Pending",
    4: "Refunded",
    11: "Awaiting Fulfillment",
    14: "Partially Refunded",
}


class BackOffice(Protocol):
    """Where the store keeps its records: the seeding side of
    :class:`emulators.BigCommerceEmulator`. Each call writes the record's whole current state."""

    def add_product(self, product: Mapping[str, Any]) -> Any: ...

    def add_customer(self, customer: Mapping[str, Any]) -> Any: ...

    def add_order(
        self,
        order: Mapping[str, Any],
        products: Iterable[Mapping[str, Any]] = ...,
        refunds: Iterable[Mapping[str, Any]] = ...,
    ) -> Any: ...


class BigCommerceStore:
    """The BigCommerce store of the day (see :class:`demo.simulation.world.Platform`)."""

    def __init__(self, day: Day, store: DemoStore, back_office: BackOffice | None = None) -> None:
        self.day = day
        self.store = store
        self.back_office = back_office
        self._retried = False
        self._status: dict[int, int] = {}
        self._modified: dict[int, datetime] = {}

    def product_id(self) -> int:
        return self.day.ids.next("product")

    def variant_ids(self, product: Product) -> tuple[int, int]:
        return self.day.ids.next("variant", _VARIANT_IDS), self.day.ids.next("sku")

    def customer_id(self) -> int:
        return self.day.ids.next("customer")

    def order_id(self) -> int:
        return self.day.ids.next("order")

    def line_id(self) -> int:
        return self.day.ids.next("line")

    def product_created(self, product: Product) -> None:
        self._keep_product(product, product.created_at)
        self._send(
            "store/product/created",
            {"type": "product", "id": product.product_id},
            product.created_at,
        )

    def customer_created(self, customer: Customer) -> None:
        if self.back_office is not None:
            self.back_office.add_customer(_customer_record(customer))
        self._send(
            "store/customer/created",
            {"type": "customer", "id": customer.customer_id},
            customer.created_at,
        )

    def order_placed(self, order: Order, index: int) -> None:
        self._keep_order(order, _PENDING, order.placed_at)
        created = self._send(
            "store/order/created", {"type": "order", "id": order.order_id}, order.placed_at
        )
        for k, variant in enumerate(self.day.take(self.store, order, index), start=1):
            self.stock_changed(variant, order.placed_at + timedelta(seconds=1 + k))
        paid = order.placed_at + timedelta(seconds=30)
        self._keep_order(order, _AWAITING_FULFILLMENT, paid)
        self._send(
            "store/order/statusUpdated",
            {
                "type": "order",
                "id": order.order_id,
                "status": {"previous_status_id": _PENDING, "new_status_id": _AWAITING_FULFILLMENT},
            },
            paid,
        )
        if not self._retried:
            # No 2xx seen in time: BigCommerce sends the same callback again.
            self._retried = True
            self.day.schedule(index + 2, "retry", "bigcommerce", created)

    def stock_changed(self, variant: Variant, at: datetime) -> None:
        product = variant.product
        self._keep_product(product, at)
        if len(product.variants) > 1:
            # Tracked by variant: the SKU event (its id is the SKU's, not the variant's).
            self._send(
                "store/sku/inventory/updated",
                {
                    "type": "sku",
                    "id": variant.item_id,
                    "inventory": {
                        "product_id": product.product_id,
                        "method": "absolute",
                        "value": variant.level,
                        "variant_id": variant.variant_id,
                    },
                },
                at,
            )
        else:
            # Tracked by product: the SKU event never fires for products without variants.
            self._send(
                "store/product/inventory/updated",
                {
                    "type": "product",
                    "id": product.product_id,
                    "inventory": {
                        "product_id": product.product_id,
                        "method": "absolute",
                        "value": variant.level,
                    },
                },
                at,
            )

    def refunded(self, order: Order, at: datetime) -> None:
        """One unit of the first line back to the shopper (it arrived damaged)."""
        refund_id = self.day.ids.next("refund")
        line = order.lines[0]
        amount = _unit_inc_tax(line.variant)
        order.refunds.append(
            {
                "id": refund_id,
                "order_id": order.order_id,
                "user_id": 0,
                "created": _v3_date(at),
                "reason": "Arrived damaged",
                "total_amount": amount,
                "total_tax": _unit_tax(line.variant),
                "uses_merchant_override_values": False,
                "items": [
                    {
                        "item_type": "PRODUCT",
                        "item_id": line.line_id,
                        "quantity": 1,
                        "requested_amount": amount,
                        "reason": "Arrived damaged",
                    }
                ],
                "payments": [
                    {
                        "id": refund_id,
                        "provider_id": "braintree",
                        "amount": amount,
                        "offline": False,
                        "is_declined": False,
                        "declined_message": "",
                    }
                ],
            }
        )
        refunded = sum((r["total_amount"] for r in order.refunds), Decimal(0))
        whole = refunded >= _order_total(order)
        self._keep_order(order, _REFUNDED if whole else _PARTIALLY_REFUNDED, at)
        self._send(
            "store/order/refund/created",
            {"type": "order", "id": order.order_id, "refund": {"refund_id": refund_id}},
            at,
        )

    # --- the store's records ------------------------------------------------------------------

    def _keep_product(self, product: Product, at: datetime) -> None:
        if self.back_office is not None:
            self.back_office.add_product(_product_record(product, at))

    def _keep_order(self, order: Order, status_id: int, at: datetime) -> None:
        if self.back_office is not None:
            record, lines = _order_record(order, status_id, at, self.store.spec.currency)
            self.back_office.add_order(record, lines, order.refunds)

    def _send(self, scope: str, data: dict[str, Any], at: datetime) -> DemoRequest:
        store = self.store
        # BigCommerce's hash is the SHA-1 of the data: the same event twice has the same hash.
        digest = hashlib.sha1(  # noqa: S324 - an identifier, as BigCommerce makes it
            json.dumps(data, separators=(",", ":")).encode()
        ).hexdigest()
        body = compact_json(
            {
                "scope": scope,
                "store_id": _BC_STORE_NUMBER,
                "data": data,
                "hash": digest,
                "created_at": int(at.timestamp()),
                "producer": store.spec.identity,
            }
        )
        headers = signed_headers(
            body,
            store.secret,
            webhook_id=str(uuid.UUID(int=self.day.tokens.getrandbits(128), version=4)),
            sent_at=self.day.now,
        )
        request = DemoRequest(
            "POST", "/webhooks/bigcommerce", headers, body, "bigcommerce", scope, store.store_id, at
        )
        self.day.send(request)
        return request


# --- the API's shapes --------------------------------------------------------------------------


def _v2_date(at: datetime) -> str:
    return email.utils.format_datetime(at.astimezone(UTC))


def _v3_date(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _v2_money(value: Decimal) -> str:
    return f"{value:.4f}"


def _unit_tax(variant: Variant) -> Decimal:
    return (Decimal(variant.spec.price) * _TAX).quantize(CENT, rounding=ROUND_HALF_UP)


def _unit_inc_tax(variant: Variant) -> Decimal:
    return Decimal(variant.spec.price) + _unit_tax(variant)


def _order_total(order: Order) -> Decimal:
    return sum((_unit_inc_tax(line.variant) * line.quantity for line in order.lines), Decimal(0))


def _product_record(product: Product, at: datetime) -> dict[str, Any]:
    """The V3 product with its variants (money as JSON numbers, as V3 writes it)."""
    spec, variants = product.spec, product.variants
    several = len(variants) > 1
    return {
        "id": product.product_id,
        "name": spec.title,
        "type": "physical",
        "sku": "" if several else variants[0].spec.sku,
        "price": Decimal(variants[0].spec.price),
        "categories": [],
        "custom_url": {"url": f"/{spec.handle}/", "is_customized": False},
        "availability": "available",
        "is_visible": True,
        "inventory_tracking": "variant" if several else "product",
        "date_created": _v3_date(product.created_at),
        "date_modified": _v3_date(at),
        "variants": [
            {
                "id": v.variant_id,
                "product_id": product.product_id,
                "sku": v.spec.sku,
                "sku_id": v.item_id if several else None,
                "price": Decimal(v.spec.price),
                "inventory_level": v.level,
                "option_values": (
                    [{"label": v.spec.title, "option_display_name": "Colour"}]
                    if v.spec.title
                    else []
                ),
            }
            for v in variants
        ],
    }


def _customer_record(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.customer_id,
        "email": customer.email,
        "first_name": customer.first,
        "last_name": customer.last,
        "company": "",
        "phone": "",
        "customer_group_id": 0,
        "accepts_product_review_abandoned_cart_emails": False,
        "date_created": _v3_date(customer.created_at),
        "date_modified": _v3_date(customer.created_at),
    }


def _order_record(
    order: Order, status_id: int, at: datetime, currency: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The V2 order as of ``at`` and its V2 order products (money as strings of four decimals,
    as V2 writes it)."""
    lines = []
    subtotal = tax = Decimal(0)
    for line in order.lines:
        unit, unit_tax = Decimal(line.variant.spec.price), _unit_tax(line.variant)
        subtotal += unit * line.quantity
        tax += unit_tax * line.quantity
        lines.append(
            {
                "id": line.line_id,
                "order_id": order.order_id,
                "product_id": line.variant.product.product_id,
                "variant_id": line.variant.variant_id,
                "name": line.variant.product.spec.title,
                "sku": line.variant.spec.sku,
                "type": "physical",
                "quantity": line.quantity,
                "price_ex_tax": _v2_money(unit),
                "price_inc_tax": _v2_money(unit + unit_tax),
                "price_tax": _v2_money(unit_tax),
                "total_ex_tax": _v2_money(unit * line.quantity),
                "total_inc_tax": _v2_money((unit + unit_tax) * line.quantity),
                "total_tax": _v2_money(unit_tax * line.quantity),
                "applied_discounts": [],
                "product_options": (
                    [{"display_name": "Colour", "display_value": line.variant.spec.title}]
                    if line.variant.spec.title
                    else []
                ),
            }
        )
    customer = order.customer
    record = {
        "id": order.order_id,
        "customer_id": customer.customer_id,
        "date_created": _v2_date(order.placed_at),
        "date_modified": _v2_date(at),
        "status_id": status_id,
        "status": _STATUSES[status_id],
        "subtotal_ex_tax": _v2_money(subtotal),
        "subtotal_inc_tax": _v2_money(subtotal + tax),
        "subtotal_tax": _v2_money(tax),
        "shipping_cost_ex_tax": _v2_money(Decimal(0)),
        "shipping_cost_inc_tax": _v2_money(Decimal(0)),
        "total_ex_tax": _v2_money(subtotal),
        "total_inc_tax": _v2_money(subtotal + tax),
        "total_tax": _v2_money(tax),
        "discount_amount": _v2_money(Decimal(0)),
        "coupon_discount": _v2_money(Decimal(0)),
        "items_total": sum(line.quantity for line in order.lines),
        "payment_method": "Credit Card",
        "order_source": "www",
        "currency_code": currency,
        "default_currency_code": currency,
        "billing_address": {
            "first_name": customer.first,
            "last_name": customer.last,
            "email": customer.email,
            "country_iso2": "US",
        },
    }
    return record, lines
