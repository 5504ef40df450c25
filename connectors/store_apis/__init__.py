"""Store platform APIs behind one interface: Shopify (GraphQL Admin), WooCommerce (REST v3),
BigCommerce (V3, orders V2)."""

from connectors.store_apis.base import (
    Page,
    Resource,
    ShopInfo,
    StockLevel,
    StoreApi,
    Webhook,
    every_page,
)

__all__ = ["Page", "Resource", "ShopInfo", "StockLevel", "StoreApi", "Webhook", "every_page"]
