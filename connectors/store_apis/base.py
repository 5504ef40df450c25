"""The one interface revloop reads and writes a store through, whatever its platform
(docs/connectors.md, "Store APIs").

Records come back in the shape the platform's own webhooks carry the same resource (Shopify's
REST/webhook JSON, WooCommerce's REST v3 resources, BigCommerce's V2/V3 resources), so the
pure normalizers in ``platforms/`` turn a read into the same canonical events a webhook makes.

Every listing is ordered and resumable: ``page`` answers one page and the opaque cursor of the
next, and a caller that stores the cursor and calls again with it after a crash reads on from
there, never a record twice. ``since`` bounds a listing to what changed at or after an instant.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Resource(StrEnum):
    PRODUCTS = "products"
    VARIANTS = "variants"
    ORDERS = "orders"
    CUSTOMERS = "customers"
    INVENTORY_LEVELS = "inventory_levels"


@dataclass(frozen=True)
class Page:
    records: tuple[Mapping[str, Any], ...]
    next_cursor: str | None
    """Where the next page starts; None on the last page."""


@dataclass(frozen=True)
class ShopInfo:
    reference: str
    """What the platform's webhooks name the store by: the myshopify domain, the WooCommerce
    site URL, BigCommerce's ``stores/{hash}``."""
    name: str
    currency: str
    timezone: str | None = None


@dataclass(frozen=True)
class StockLevel:
    """One inventory item's stock at one location, as ``set_inventory`` takes it back."""

    item_id: str
    location_id: str | None
    """None where the platform keeps one stock per item (WooCommerce)."""
    available: int | None
    """None when the platform does not track the item's stock."""


@dataclass(frozen=True)
class Webhook:
    webhook_id: str
    topic: str
    address: str


class StoreApi(Protocol):
    """One store's platform API, for one store (clients hold its credentials; never printed)."""

    platform: str
    store_id: str

    def shop(self) -> ShopInfo: ...

    def page(
        self,
        resource: Resource,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        page_size: int | None = None,
    ) -> Page:
        """One page of ``resource`` changed at or after ``since`` (all when None), starting at
        ``cursor`` (the first page when None)."""
        ...

    def get(self, resource: Resource, resource_id: str) -> Mapping[str, Any] | None:
        """One record by id, complete (an order with its line items); None when it is gone."""
        ...

    def webhooks(self) -> list[Webhook]: ...

    def register_webhook(self, topic: str, address: str) -> Webhook: ...

    def delete_webhook(self, webhook_id: str) -> None: ...

    def set_inventory(self, item_id: str, location_id: str | None, available: int) -> None:
        """Set the available stock of an inventory item (Shopify: at a location)."""
        ...

    def stock_of_sku(self, sku: str) -> list[StockLevel]:
        """Every inventory item whose SKU is ``sku``, at each of its locations, with the ids
        ``set_inventory`` takes (empty when no item has it). For the multichannel lock, which
        finds a product sold elsewhere by its SKU."""
        ...

    def close(self) -> None: ...


def every_page(
    api: StoreApi,
    resource: Resource,
    *,
    since: datetime | None = None,
    cursor: str | None = None,
    page_size: int | None = None,
) -> Iterator[tuple[Page, str | None]]:
    """Each page in turn, with the cursor it was read from (for checkpoints)."""
    while True:
        page = api.page(resource, since=since, cursor=cursor, page_size=page_size)
        yield page, cursor
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
