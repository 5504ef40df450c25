"""The demo's BigCommerce store: its thin webhooks (ids only, and a ``hash`` of the data),
signed with :func:`platforms.bigcommerce.signed_headers` for the time the demo sends them."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Final

from demo.simulation.world import (
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


class BigCommerceStore:
    """The BigCommerce store of the day (see :class:`demo.simulation.world.Platform`)."""

    def __init__(self, day: Day, store: DemoStore) -> None:
        self.day = day
        self.store = store
        self._retried = False

    def product_id(self) -> int:
        return self.day.ids.next("product")

    def variant_ids(self, product: Product) -> tuple[int, int]:
        return self.day.ids.next("variant"), self.day.ids.next("sku")

    def customer_id(self) -> int:
        return self.day.ids.next("customer")

    def order_id(self) -> int:
        return self.day.ids.next("order")

    def line_id(self) -> int:
        return self.day.ids.next("line")

    def product_created(self, product: Product) -> None:
        self._send(
            "store/product/created",
            {"type": "product", "id": product.product_id},
            product.created_at,
        )

    def customer_created(self, customer: Customer) -> None:
        self._send(
            "store/customer/created",
            {"type": "customer", "id": customer.customer_id},
            customer.created_at,
        )

    def order_placed(self, order: Order, index: int) -> None:
        created = self._send(
            "store/order/created", {"type": "order", "id": order.order_id}, order.placed_at
        )
        for k, variant in enumerate(self.day.take(self.store, order, index), start=1):
            self.stock_changed(variant, order.placed_at + timedelta(seconds=1 + k))
        self._send(
            "store/order/statusUpdated",
            {
                "type": "order",
                "id": order.order_id,
                "status": {"previous_status_id": 1, "new_status_id": 11},
            },
            order.placed_at + timedelta(seconds=30),
        )
        if not self._retried:
            # No 2xx seen in time: BigCommerce sends the same callback again.
            self._retried = True
            self.day.schedule(index + 2, "retry", "bigcommerce", created)

    def stock_changed(self, variant: Variant, at: datetime) -> None:
        product = variant.product
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
        refund_id = self.day.ids.next("refund")
        order.refunds.append({"refund_id": refund_id})
        self._send(
            "store/order/refund/created",
            {"type": "order", "id": order.order_id, "refund": {"refund_id": refund_id}},
            at,
        )

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
