"""A store registry for ingest tests: one store per platform, with known secrets."""

from __future__ import annotations

from datetime import UTC, datetime

from ingest.stores import Store, StoreRegistry
from revloop.crypto import Secret

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SHOP_SECRET = b"shopify-app-secret"
WOO_SECRET = b"woocommerce-webhook-secret"
BC_SECRET = b"bigcommerce-client-secret"


def make_registry(
    *,
    previous_shop_secret: bytes | None = None,
    window_ends: datetime | None = None,
    bc_hash: str = "abc123",
) -> StoreRegistry:
    shop_secrets = (Secret(SHOP_SECRET),) + (
        (Secret(previous_shop_secret),) if previous_shop_secret else ()
    )
    return StoreRegistry(
        [
            Store("acme-shopify", "shopify", "acme.myshopify.com", shop_secrets, window_ends),
            Store("shop-woo", "woocommerce", "https://shop.example.com", (Secret(WOO_SECRET),)),
            Store("bc-store", "bigcommerce", bc_hash, (Secret(BC_SECRET),)),
        ]
    )
