"""The demo's WooCommerce store: simple products, prices that include 19 % VAT, and its
webhooks as WooCommerce sends them (``wp_json_encode`` output, local times beside ``*_gmt``
times without an offset), signed with :func:`platforms.woocommerce.signed_headers`. Products,
orders and refunds are all WordPress posts, and share one sequence of ids."""

from __future__ import annotations

import json
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
    money,
)
from platforms.woocommerce import signed_headers

_WOO_TZ: Final = ZoneInfo("Europe/Berlin")
_DE_VAT: Final = Decimal("0.19")
_WOO_VERSION: Final = "9.7.1"
_WOO_USER_AGENT: Final = f"WooCommerce/{_WOO_VERSION} Hookshot (WordPress/6.8.1)"
_WOO_WEBHOOK_IDS: Final = {
    "product.created": 31,
    "product.updated": 32,
    "customer.created": 33,
    "order.created": 34,
    "order.updated": 35,
}


class WooCommerceStore:
    """The WooCommerce store of the day (see :class:`demo.simulation.world.Platform`)."""

    def __init__(self, day: Day, store: DemoStore) -> None:
        self.day = day
        self.store = store

    def product_id(self) -> int:
        return self.day.ids.next("post")  # products, orders and refunds are all WordPress posts

    def variant_ids(self, product: Product) -> tuple[int, int]:
        return product.product_id, product.product_id

    def customer_id(self) -> int:
        return self.day.ids.next("customer")

    def order_id(self) -> int:
        return self.day.ids.next("post")

    def line_id(self) -> int:
        return self.day.ids.next("line")

    def product_created(self, product: Product) -> None:
        product.updated_at = product.created_at
        self._send("product.created", self._product_body(product), product.created_at)

    def customer_created(self, customer: Customer) -> None:
        self._send("customer.created", self._customer_body(customer), customer.created_at)

    def order_placed(self, order: Order, index: int) -> None:
        order.paid_at = order.placed_at
        self._send("order.created", self._order_body(order), order.placed_at)
        for k, variant in enumerate(self.day.take(self.store, order, index), start=1):
            self.stock_changed(variant, order.placed_at + timedelta(seconds=1 + k))
        # Shipped (status completed) a little later.
        self.day.schedule(index + self.day.rng.randint(1, 2), "complete", "woocommerce", order)

    def completed(self, order: Order, at: datetime) -> None:
        if order.completed_at is not None:
            return
        order.status = "completed"
        order.completed_at = order.updated_at = at
        self._send("order.updated", self._order_body(order), at)

    def stock_changed(self, variant: Variant, at: datetime) -> None:
        variant.product.updated_at = at
        self._send("product.updated", self._product_body(variant.product), at)

    def refunded(self, order: Order, at: datetime) -> None:
        """One unit of the first line back; WooCommerce says so in the next order.updated,
        after the one that completes the order if it is not completed yet."""
        if order.completed_at is None:
            self.completed(order, at - timedelta(seconds=60))
        line = order.lines[0]
        unit = Decimal(line.variant.spec.price)  # prices include tax: this is what was paid
        order.refunds.insert(
            0, {"id": self.day.ids.next("post"), "reason": "Arrived chipped", "total": f"-{unit}"}
        )
        order.updated_at = at
        self._send("order.updated", self._order_body(order), at)

    def _send(self, topic: str, document: Any, at: datetime) -> None:
        store = self.store
        body = _php_json(document)
        headers = signed_headers(
            body,
            store.secret,
            source=store.spec.identity,
            topic=topic,
            webhook_id=str(_WOO_WEBHOOK_IDS[topic]),
            delivery_id=self.day.tokens.getrandbits(128).to_bytes(16, "big").hex(),
        )
        headers["user-agent"] = _WOO_USER_AGENT
        self.day.send(
            DemoRequest(
                "POST",
                "/webhooks/woocommerce",
                headers,
                body,
                "woocommerce",
                topic,
                store.store_id,
                at,
            )
        )

    def _product_body(self, product: Product) -> dict[str, Any]:
        (variant,) = product.variants  # the demo's WooCommerce products are simple
        spec = product.spec
        home = self.store.spec.identity
        modified = product.updated_at or product.created_at
        return {
            "id": product.product_id,
            "name": spec.title,
            "slug": spec.handle,
            "permalink": f"{home}product/{spec.handle}/",
            "date_created": _woo_local(product.created_at),
            "date_created_gmt": _woo_gmt(product.created_at),
            "date_modified": _woo_local(modified),
            "date_modified_gmt": _woo_gmt(modified),
            "type": "simple",
            "status": "publish",
            "featured": False,
            "catalog_visibility": "visible",
            "description": f"<p>{spec.title}.</p>",
            "short_description": "",
            "sku": variant.spec.sku,
            "price": variant.spec.price,
            "regular_price": variant.spec.price,
            "sale_price": "",
            "on_sale": False,
            "purchasable": True,
            "total_sales": 0,
            "virtual": False,
            "downloadable": False,
            "tax_status": "taxable",
            "tax_class": "",
            "manage_stock": True,
            "stock_quantity": variant.level,
            "backorders": "no",
            "backorders_allowed": False,
            "backordered": False,
            "low_stock_amount": None,
            "sold_individually": False,
            "parent_id": 0,
            "categories": [{"id": 18, "name": spec.category, "slug": spec.category.lower()}],
            "tags": [{"id": 40 + n, "name": tag, "slug": tag} for n, tag in enumerate(spec.tags)],
            "images": [],
            "attributes": [],
            "default_attributes": [],
            "variations": [],
            "grouped_products": [],
            "menu_order": 0,
            "meta_data": [],
            "stock_status": "instock" if variant.level > 0 else "outofstock",
            "has_options": False,
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/products/{product.product_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/products"}],
            },
        }

    def _customer_body(self, customer: Customer) -> dict[str, Any]:
        home = self.store.spec.identity
        return {
            "id": customer.customer_id,
            "date_created": _woo_local(customer.created_at),
            "date_created_gmt": _woo_gmt(customer.created_at),
            "date_modified": _woo_local(customer.created_at),
            "date_modified_gmt": _woo_gmt(customer.created_at),
            "email": customer.email,
            "first_name": customer.first,
            "last_name": customer.last,
            "role": "customer",
            "username": f"{customer.first}.{customer.last}".lower(),
            "billing": _address(customer, with_email=True),
            "shipping": _address(customer, with_email=False),
            "is_paying_customer": False,
            "avatar_url": "https://secure.gravatar.com/avatar/?s=96&d=mm&r=g",
            "meta_data": [],
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/customers/{customer.customer_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/customers"}],
            },
        }

    def _order_body(self, order: Order) -> dict[str, Any]:
        home = self.store.spec.identity
        lines = []
        cart_net = cart_tax = Decimal(0)
        gross_total = Decimal(0)
        for line in order.lines:
            net, tax, exact_tax = _line_amounts(line)
            cart_net += net
            cart_tax += tax
            gross_total += net + tax
            lines.append(
                {
                    "id": line.line_id,
                    "name": line.variant.product.spec.title,
                    "product_id": line.variant.product.product_id,
                    "variation_id": 0,
                    "quantity": line.quantity,
                    "tax_class": "",
                    "subtotal": money(net),
                    "subtotal_tax": money(tax),
                    "total": money(net),
                    "total_tax": money(tax),
                    "taxes": [
                        {
                            "id": 1,
                            "total": f"{exact_tax:.6f}",
                            "subtotal": f"{exact_tax:.6f}",
                        }
                    ],
                    "meta_data": [],
                    "sku": line.variant.spec.sku,
                    # A JSON number, unrounded, as WooCommerce sends it.
                    "price": float(net / line.quantity),
                    "image": {"id": "", "src": ""},
                    "parent_name": None,
                }
            )
        free = gross_total >= 50
        shipping, shipping_tax = (
            (Decimal(0), Decimal(0))
            if free
            else (
                Decimal("4.20"),
                Decimal("0.80"),
            )
        )
        total = gross_total + shipping + shipping_tax
        meta: list[dict[str, Any]] = [{"id": 90211, "key": "is_vat_exempt", "value": "no"}]
        if order.arrival:
            product = order.lines[0].variant.product.spec.handle
            entry = (
                f"{home}product/{product}/?utm_source={order.arrival['utm_source']}"
                f"&utm_medium=cpc&utm_campaign={order.arrival['utm_campaign']}"
            )
            attribution = {
                "source_type": "utm",
                "utm_source": order.arrival["utm_source"],
                "utm_medium": "cpc",
                "utm_campaign": order.arrival["utm_campaign"],
                "session_entry": entry,
                "referrer": "https://www.example.com/",
            }
            meta += [
                {"id": 90300 + n, "key": f"_wc_order_attribution_{key}", "value": value}
                for n, (key, value) in enumerate(attribution.items())
            ]
        customer_id = 0 if order.guest else order.customer.customer_id
        return {
            "id": order.order_id,
            "parent_id": 0,
            "status": order.status,
            "currency": "EUR",
            "version": _WOO_VERSION,
            "prices_include_tax": True,
            "date_created": _woo_local(order.placed_at),
            "date_modified": _woo_local(order.updated_at),
            "discount_total": "0.00",
            "discount_tax": "0.00",
            "shipping_total": money(shipping),
            "shipping_tax": money(shipping_tax),
            "cart_tax": money(cart_tax),
            "total": money(total),
            "total_tax": money(cart_tax + shipping_tax),
            "customer_id": customer_id,
            "order_key": f"wc_order_{order.order_id:x}",
            "billing": _address(order.customer, with_email=True),
            "shipping": _address(order.customer, with_email=False),
            "payment_method": "stripe",
            "payment_method_title": "Credit Card (Stripe)",
            "transaction_id": f"pi_demo{order.order_id}",
            "customer_ip_address": "198.51.100.77",
            "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Firefox/124.0",
            "created_via": "checkout",
            "customer_note": "",
            "date_completed": _woo_local(order.completed_at) if order.completed_at else None,
            "date_paid": _woo_local(order.paid_at) if order.paid_at else None,
            "cart_hash": f"{order.order_id:032x}",
            "number": str(order.order_id),
            "meta_data": meta,
            "line_items": lines,
            "tax_lines": [
                {
                    "id": 1,
                    "rate_code": "DE-MWST-1",
                    "rate_id": 1,
                    "label": "MwSt.",
                    "compound": False,
                    "tax_total": money(cart_tax),
                    "shipping_tax_total": money(shipping_tax),
                    "rate_percent": 19,
                    "meta_data": [],
                }
            ],
            "shipping_lines": [
                {
                    "id": order.order_id + 1,
                    "method_title": "Free shipping" if free else "Flat rate",
                    "method_id": "free_shipping" if free else "flat_rate",
                    "instance_id": "3",
                    "total": money(shipping),
                    "total_tax": money(shipping_tax),
                    "taxes": [],
                    "meta_data": [],
                }
            ],
            "fee_lines": [],
            "coupon_lines": [],
            "refunds": [
                {"id": r["id"], "reason": r["reason"], "total": r["total"]} for r in order.refunds
            ],
            "payment_url": f"{home}checkout/order-pay/{order.order_id}/?pay_for_order=true",
            "is_editable": False,
            "needs_payment": False,
            "needs_processing": order.status == "processing",
            "date_created_gmt": _woo_gmt(order.placed_at),
            "date_modified_gmt": _woo_gmt(order.updated_at),
            "date_completed_gmt": _woo_gmt(order.completed_at) if order.completed_at else None,
            "date_paid_gmt": _woo_gmt(order.paid_at) if order.paid_at else None,
            "currency_symbol": "\u20ac",
            "_links": {
                "self": [{"href": f"{home}wp-json/wc/v3/orders/{order.order_id}"}],
                "collection": [{"href": f"{home}wp-json/wc/v3/orders"}],
            },
        }


def _address(customer: Customer, with_email: bool) -> dict[str, Any]:
    address = {
        "first_name": customer.first,
        "last_name": customer.last,
        "company": "",
        "address_1": "Gartenweg 9",
        "address_2": "",
        "city": "Leipzig",
        "state": "",
        "postcode": "04109",
        "country": "DE",
    }
    if with_email:
        address["email"] = customer.email
    address["phone"] = ""
    return address


def _line_amounts(line: Line) -> tuple[Decimal, Decimal, Decimal]:
    """Net total (2 dp), its tax (2 dp) and the unrounded tax: prices include 19 % VAT."""
    gross = Decimal(line.variant.spec.price) * line.quantity
    exact_net = gross / (1 + _DE_VAT)
    net = exact_net.quantize(CENT, rounding=ROUND_HALF_UP)
    return net, gross - net, gross - exact_net


def _php_json(document: Any) -> bytes:
    # WooCommerce sends wp_json_encode output: ASCII only, and '/' escaped as '\/'.
    return json.dumps(document, separators=(",", ":")).replace("/", "\\/").encode()


def _woo_local(at: datetime) -> str:
    return at.astimezone(_WOO_TZ).replace(tzinfo=None).isoformat(timespec="seconds")


def _woo_gmt(at: datetime) -> str:
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
