"""BigCommerce: the catalog and customers from the V3 API, orders from V2 (docs/connectors.md,
"Store APIs").

What the client relies on (developer.bigcommerce.com: "About our API", "Best practices",
"Filtering", the Orders V2/V3, Catalog, Customers, Inventory and Webhooks references):

* One base per store, ``{api_url}/stores/{store_hash}/``, and the API account's token in the
  ``X-Auth-Token`` header (``X-Auth-Client`` is no longer required).
* V3 lists take ``page`` and ``limit`` (50 by default, at most 250; a larger limit is refused
  here rather than sent) and answer ``{"data": [...], "meta": {"pagination": {"total", "count",
  "per_page", "current_page", "total_pages", "links": {"previous", "current", "next"}}}}``;
  ``links.next`` is a query string (``?page=2&limit=50``), absent on the last page. ``since`` is
  ``date_modified:min`` on products and customers. Variants and inventory items have no
  modification filter: with ``since`` they are read whole, a superset that misses nothing.
* Orders exist only in V2: ``GET /v2/orders`` with ``min_date_modified`` (RFC 2822 or ISO 8601),
  ``page``, ``limit`` (at most 250) and ``sort=field:direction``. V2 answers a bare JSON array
  with no totals, and ``204 No Content`` for an empty page, so a short or empty page is the
  last. An order's lines are another V2 list (``/v2/orders/{id}/products``; the order itself
  only links to it) and its refunds are V3 (``/v3/orders/{id}/payment_actions/refunds``).
* Every answer carries ``X-Rate-Limit-Requests-Left``, ``-Requests-Quota``, ``-Time-Window-Ms``
  and ``-Time-Reset-Ms``. The quota (150 or 450 per 30 s by plan) belongs to the store and is
  shared by every app on it; a request past it gets 429, whose ``X-Rate-Limit-Time-Reset-Ms``
  says when the window refreshes.

Pages are numbered, so a page is an offset into a sorted list and the sort must not move
records while a listing is read. Sorting by ``date_modified`` would: a record changed mid-read
jumps to the end and every later one shifts back, so one is skipped at a page boundary. Lists
are therefore read in id order (customers by creation date, which the Customers API can sort
by), where a change moves nothing and new records join the end. The cursor is the next page's
``page=N&limit=L``.

Call cost: an ORDERS page of n orders is 1 + n calls (each order's products, up to 250 lines a
call) plus one per order that has refunds (``refunded_amount`` above zero); ``get`` of an order
is three calls (order, products, refunds). Records are the API's own JSON with floats read as
Decimals (V3 money is JSON numbers), which ``platforms.bigcommerce.resource_events`` turns into
canonical events.

The client paces itself: once an answer leaves no more than ``RESERVE_PERCENT`` of the quota,
the next call waits for the window to reset; a 429 waits ``X-Rate-Limit-Time-Reset-Ms``.
Stock is written with the Inventory API's absolute adjustment, at a location (1 is the default
location every store has); reads of INVENTORY_LEVELS are the Inventory API's items, one
variant's stock at every location, so what is written is what is read back.

``stock_of_sku`` finds the variants with ``GET /v3/catalog/variants?sku=…`` (the Catalog API's
SKU filter; the value goes as one query parameter, so nothing in it needs escaping), keeps those
whose ``sku`` is exactly the one asked, reads whether their products track inventory
(``/v3/catalog/products?id:in=…``, ``inventory_tracking``: ``none`` is untracked) and their stock
at each location from the Inventory API's items (``/v3/inventory/items?variant_id:in=…``, as
INVENTORY_LEVELS reads them): ``total_inventory_onhand`` per location, the quantity the absolute
adjustment in ``set_inventory`` writes. Three calls for a SKU (more past 250 variants).
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx

from connectors.http import ApiClient, ApiError, RetryPolicy
from connectors.store_apis.base import Page, Resource, ShopInfo, StockLevel, Webhook

PLATFORM = "bigcommerce"
DEFAULT_API_URL = "https://api.bigcommerce.com"
MAX_LIMIT = 250
V3_PAGE_SIZE = 250
ORDERS_PAGE_SIZE = 50
"""Orders cost a call each on top of their page; a smaller page keeps a checkpoint closer."""
DEFAULT_LOCATION = "1"
RESERVE_PERCENT = 2
"""Of the window's quota left for the other apps sharing it before the client waits."""
RESET_MARGIN_SECONDS = 0.02
ADJUSTMENT_REASON = "revloop"
ID_BATCH = 50
"""Ids per ``id:in`` / ``variant_id:in`` filter, to keep the query string short."""
_STORE_HASH = re.compile(r"[a-z0-9]{1,40}")
_ID = re.compile(r"[0-9]{1,19}")
_V3_LISTS: dict[Resource, tuple[str, dict[str, str]]] = {
    Resource.PRODUCTS: ("/v3/catalog/products", {"include": "variants", "sort": "id"}),
    Resource.VARIANTS: ("/v3/catalog/variants", {}),
    Resource.CUSTOMERS: ("/v3/customers", {"sort": "date_created:asc"}),
    Resource.INVENTORY_LEVELS: ("/v3/inventory/items", {}),
}
_SINCE_FILTERED = frozenset({Resource.PRODUCTS, Resource.CUSTOMERS})


def _header_number(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def decode(response: httpx.Response) -> Any:
    """An answer's JSON with floats as Decimals (exact money), or None for 204 / no body."""
    if response.status_code == 204 or not response.content.strip():
        return None
    return json.loads(response.content, parse_float=Decimal)


def cursor_for(page: int, limit: int) -> str:
    return f"page={page}&limit={limit}"


def parse_cursor(cursor: str) -> tuple[int, int]:
    """(page, limit) of a cursor, or of a V3 ``links.next`` query string."""
    try:
        fields = parse_qs(cursor.lstrip("?"), strict_parsing=True)
        page, limit = int(fields["page"][-1]), int(fields["limit"][-1])
    except (KeyError, ValueError):
        raise ValueError("not a BigCommerce page cursor") from None
    if page < 1 or not 1 <= limit <= MAX_LIMIT:
        raise ValueError("not a BigCommerce page cursor")
    return page, limit


def _limit(page_size: int | None, default: int) -> int:
    limit = default if page_size is None else page_size
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"BigCommerce pages hold 1 to {MAX_LIMIT} records")
    return limit


def _since_v3(since: datetime) -> str:
    # Whole seconds, rounded down: the filter is inclusive, so nothing at `since` is lost.
    return since.astimezone(UTC).replace(microsecond=0).isoformat()


def _since_v2(since: datetime) -> str:
    return email.utils.format_datetime(since.astimezone(UTC).replace(microsecond=0))


def _record_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise ValueError(f"BigCommerce {what} ids are integers")
    return value


class BigCommerceApi:
    """One BigCommerce store's API (implements StoreApi)."""

    platform = PLATFORM

    def __init__(
        self,
        store_id: str,
        store_hash: str,
        token: str,
        *,
        api_url: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not _STORE_HASH.fullmatch(store_hash):
            raise ValueError("a BigCommerce store hash is lower-case letters and digits")
        self.store_id, self.store_hash = store_id, store_hash
        self.client = ApiClient(
            PLATFORM,
            store_id,
            f"{(api_url or DEFAULT_API_URL).rstrip('/')}/stores/{store_hash}",
            auth_headers={"X-Auth-Token": token, "Accept": "application/json"},
            policy=policy,
            throttle=self._throttled,
            pace=self._pace,
        )

    def __repr__(self) -> str:
        return f"BigCommerceApi({self.client!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> BigCommerceApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rate limits ---------------------------------------------------------------------------

    @staticmethod
    def _pace(response: httpx.Response) -> float:
        left = _header_number(response, "x-rate-limit-requests-left")
        reset_ms = _header_number(response, "x-rate-limit-time-reset-ms")
        if left is None or reset_ms is None:
            return 0.0
        quota = _header_number(response, "x-rate-limit-requests-quota") or 0
        if left > max(1, quota * RESERVE_PERCENT // 100):
            return 0.0
        return reset_ms / 1000 + RESET_MARGIN_SECONDS

    @staticmethod
    def _throttled(response: httpx.Response) -> float | None:
        if response.status_code != 429:
            return None
        reset_ms = _header_number(response, "x-rate-limit-time-reset-ms")
        if reset_ms is not None:
            return reset_ms / 1000 + RESET_MARGIN_SECONDS
        seconds = _header_number(response, "x-retry-after")
        return float(seconds) if seconds is not None else None  # else: backoff

    # -- calls ---------------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None, call: str = "") -> Any:
        response = self.client.request("GET", path, params=dict(params or {}), call=call or None)
        return decode(response)

    def _get_or_none(self, path: str, call: str) -> Any:
        try:
            return self._get(path, call=call)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def shop(self) -> ShopInfo:
        store = self._get("/v2/store", call="GET /v2/store")
        timezone = store.get("timezone")
        return ShopInfo(
            reference=f"stores/{self.store_hash}",
            name=str(store.get("name") or ""),
            currency=str(store.get("currency") or ""),
            timezone=str(timezone["name"]) if isinstance(timezone, dict) else None,
        )

    def page(
        self,
        resource: Resource,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        page_size: int | None = None,
    ) -> Page:
        if resource is Resource.ORDERS:
            return self._orders_page(since, cursor, page_size)
        path, fixed = _V3_LISTS[resource]
        number, limit = parse_cursor(cursor) if cursor else (1, _limit(page_size, V3_PAGE_SIZE))
        params = {**fixed, "page": str(number), "limit": str(limit)}
        if since is not None and resource in _SINCE_FILTERED:
            params["date_modified:min"] = _since_v3(since)
        body = self._get(path, params, call=f"GET {path} page {number}") or {}
        pagination = (body.get("meta") or {}).get("pagination") or {}
        following = (pagination.get("links") or {}).get("next")
        current = int(pagination.get("current_page") or number)
        last = int(pagination.get("total_pages") or 0)
        next_cursor = None
        if following and current < last:
            next_cursor = cursor_for(*parse_cursor(str(following)))
        return Page(tuple(body.get("data") or ()), next_cursor)

    def _orders_page(
        self, since: datetime | None, cursor: str | None, page_size: int | None
    ) -> Page:
        number, limit = parse_cursor(cursor) if cursor else (1, _limit(page_size, ORDERS_PAGE_SIZE))
        params = {"page": str(number), "limit": str(limit), "sort": "id:asc"}
        if since is not None:
            params["min_date_modified"] = _since_v2(since)
        orders = self._get("/v2/orders", params, call=f"GET /v2/orders page {number}") or []
        records = []
        for order in orders:
            order_id = str(order["id"])
            records.append(self._complete_order(order, order_id, refunds=_refunded(order)))
        # V2 has no totals: a full page may have a next one (an empty 204 if not).
        next_cursor = cursor_for(number + 1, limit) if len(orders) == limit else None
        return Page(tuple(records), next_cursor)

    def _complete_order(self, order: dict[str, Any], order_id: str, *, refunds: bool) -> Any:
        products: list[Any] = []
        number = 1
        while True:
            path = f"/v2/orders/{order_id}/products"
            batch = self._get(
                path,
                {"page": str(number), "limit": str(MAX_LIMIT)},
                call=f"GET {path} page {number}",
            )
            products.extend(batch or [])
            if not batch or len(batch) < MAX_LIMIT:
                break
            number += 1
        order["products"] = products
        order["refunds"] = self._refunds(order_id) if refunds else []
        return order

    def _refunds(self, order_id: str) -> list[Any]:
        path = f"/v3/orders/{order_id}/payment_actions/refunds"
        body = self._get(path, call=f"GET {path}") or {}
        return list(body.get("data") or [])

    def get(self, resource: Resource, resource_id: str) -> Mapping[str, Any] | None:
        record_id = _record_id(resource_id, str(resource))
        if resource is Resource.ORDERS:
            path = f"/v2/orders/{record_id}"
            order = self._get_or_none(path, f"GET {path}")
            if order is None:
                return None
            complete: Mapping[str, Any] = self._complete_order(order, record_id, refunds=True)
            return complete
        if resource is Resource.PRODUCTS:
            path = f"/v3/catalog/products/{record_id}"
            try:
                body = self._get(path, {"include": "variants"}, call=f"GET {path}")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            found: Mapping[str, Any] | None = (body or {}).get("data")
            return found
        path, key = {
            Resource.CUSTOMERS: ("/v3/customers", "id:in"),
            Resource.VARIANTS: ("/v3/catalog/variants", "id"),
            Resource.INVENTORY_LEVELS: ("/v3/inventory/items", "variant_id:in"),
        }[resource]
        body = self._get(path, {key: record_id}, call=f"GET {path} {key}={record_id}") or {}
        matches = body.get("data") or []
        return matches[0] if matches else None

    # -- webhooks ------------------------------------------------------------------------------

    def webhooks(self) -> list[Webhook]:
        found: list[Webhook] = []
        number = 1
        while True:
            params = {"page": str(number), "limit": str(MAX_LIMIT)}
            body = self._get("/v3/hooks", params, call=f"GET /v3/hooks page {number}") or {}
            found.extend(_webhook(hook) for hook in body.get("data") or [])
            pagination = (body.get("meta") or {}).get("pagination") or {}
            if number >= int(pagination.get("total_pages") or 0):
                return found
            number += 1

    def register_webhook(
        self, topic: str, address: str, *, headers: Mapping[str, str] | None = None
    ) -> Webhook:
        """Subscribe ``address`` to a scope (``store/order/created``; ``store/order/*``).
        ``headers`` are sent back on every callback (a shared secret, for instance)."""
        payload: dict[str, Any] = {"scope": topic, "destination": address, "is_active": True}
        if headers:
            payload["headers"] = dict(headers)
        response = self.client.request(
            "POST", "/v3/hooks", json=payload, call=f"POST /v3/hooks {topic}"
        )
        return _webhook(decode(response)["data"])

    def delete_webhook(self, webhook_id: str) -> None:
        """Unsubscribe; a webhook already gone counts as deleted."""
        path = f"/v3/hooks/{_record_id(webhook_id, 'webhook')}"
        try:
            self.client.request("DELETE", path, call=f"DELETE {path}")
        except ApiError as exc:
            if exc.status != 404:
                raise

    # -- inventory -----------------------------------------------------------------------------

    def set_inventory(self, item_id: str, location_id: str | None, available: int) -> None:
        """Set a variant's stock at a location (default: location 1) with an absolute
        adjustment. BigCommerce applies adjustments asynchronously: a read straight after may
        still show the old level for a moment."""
        variant = int(_record_id(item_id, "variant"))
        location = int(_record_id(location_id or DEFAULT_LOCATION, "location"))
        if isinstance(available, bool) or not isinstance(available, int) or available < 0:
            raise ValueError("stock is a whole number, zero or more")
        self.client.request(
            "PUT",
            "/v3/inventory/adjustments/absolute",
            json={
                "reason": ADJUSTMENT_REASON,
                "items": [{"location_id": location, "variant_id": variant, "quantity": available}],
            },
            call=f"PUT /v3/inventory/adjustments/absolute variant {variant} location {location}",
        )

    def stock_of_sku(self, sku: str) -> list[StockLevel]:
        if not sku:
            return []  # an empty filter would be no filter
        variants = [
            v for v in self._every("/v3/catalog/variants", {"sku": sku}) if v.get("sku") == sku
        ]
        if not variants:
            return []
        product_ids = sorted({str(v["product_id"]) for v in variants})
        untracked = {
            str(p["id"])
            for chunk in _chunks(product_ids, ID_BATCH)
            for p in self._every(
                "/v3/catalog/products",
                {"id:in": ",".join(chunk), "include_fields": "inventory_tracking"},
            )
            if p.get("inventory_tracking") == "none"
        }
        tracked = {str(v["id"]): str(v["product_id"]) not in untracked for v in variants}
        levels: list[StockLevel] = []
        for chunk in _chunks(sorted(tracked, key=int), ID_BATCH):
            for item in self._every("/v3/inventory/items", {"variant_id:in": ",".join(chunk)}):
                variant_id = str((item.get("identity") or {}).get("variant_id"))
                if variant_id not in tracked:
                    continue
                for place in item.get("locations") or []:
                    onhand = place.get("total_inventory_onhand")
                    levels.append(
                        StockLevel(
                            item_id=variant_id,
                            location_id=str(place["location_id"]),
                            available=int(onhand)
                            if tracked[variant_id] and onhand is not None
                            else None,
                        )
                    )
        return levels

    def _every(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every record of a V3 list, page after page."""
        records: list[dict[str, Any]] = []
        number = 1
        while True:
            query = {**params, "page": str(number), "limit": str(MAX_LIMIT)}
            body = self._get(path, query, call=f"GET {path} page {number}") or {}
            records.extend(body.get("data") or [])
            pagination = (body.get("meta") or {}).get("pagination") or {}
            if number >= int(pagination.get("total_pages") or 0):
                return records
            number += 1


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _refunded(order: Mapping[str, Any]) -> bool:
    """Whether an order may have refunds to fetch (when unsure: yes)."""
    try:
        return Decimal(str(order.get("refunded_amount") or 0)) != 0
    except ArithmeticError:
        return True


def _webhook(hook: Mapping[str, Any]) -> Webhook:
    return Webhook(str(hook["id"]), str(hook["scope"]), str(hook["destination"]))
