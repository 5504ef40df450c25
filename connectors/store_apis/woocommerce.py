"""WooCommerce REST API v3 as a StoreApi (docs/connectors.md, "Store APIs").

Calls go to ``{site}/wp-json/wc/v3/...`` with the REST API key as HTTP Basic auth
(``consumer_key:consumer_secret``), which WooCommerce accepts over HTTPS only; over plain HTTP it
wants OAuth 1.0a, which this client does not speak. Records are the REST v3 resources, the same
JSON WooCommerce's webhooks deliver (``platforms/woocommerce.py``).

Pagination (WordPress REST, WooCommerce's ``class-wc-rest-crud-controller.php``): ``per_page``
(1-100, 10 by default; more answers 400 ``rest_invalid_param``) and ``page``; every listing
answers ``X-WP-Total`` and ``X-WP-TotalPages`` and a ``Link`` header with ``rel="next"`` while a
next page exists. A page past the end is an empty list.

Listings here are ordered ``orderby=id&order=asc``: ids only grow, so a record created or
modified during a backfill never moves onto a page already read. (Ordering by ``modified``
would move every record updated mid-read behind the cursor, to be read twice, and shift the
ones after it onto pages already read, so skipped.) The cursor keeps the page number and the
highest id read, so a record pushed onto the next page is not read twice; and when
``X-WP-Total`` shrank since the last page (records before the cursor deleted or trashed), the
client steps back as many pages as were lost and drops what it read already (that page may come
back short). A deletion balanced by a creation between two pages leaves the total unchanged
and can still skip one record, until the next backfill or its next webhook.

``since`` is ``modified_after`` with ``dates_are_gmt=true`` on products, variations and orders
(a WordPress ``date_query`` on ``post_modified_gmt``). It is strict (``>``) at whole seconds, so
the client asks for one second before ``since`` to keep "at or after". Customers have no such
filter: they are read in full and filtered here on ``date_modified_gmt``.

Variations live under ``/products/{id}/variations``: VARIANTS walks the variable products
(``type=variable``) in id order and answers one product's variations per page, so the cursor
holds the product page, the products of it still to visit and the position within the current
product's variations. Older WooCommerce versions leave ``type`` and ``parent_id`` out of a
variation read there, while its webhook body (built by ``/products/{id}``) has them; they are
filled in from the path so the normalizer sees a variation, not a product.

INVENTORY_LEVELS: WooCommerce has one stock per product or variation and no locations. The
records are the product and variation resources whose ``manage_stock`` is ``true`` (their
``stock_quantity`` is the stock): first the products, then the variations as above. A variation
whose ``manage_stock`` is ``"parent"`` shares its parent's stock, already listed with the parent.

``stock_of_sku`` is ``GET /products?sku=…`` (WooCommerce's ``WC_REST_Products_Controller``:
an exact match on the ``_sku`` meta, and with ``sku`` given the query covers ``product`` and
``product_variation`` posts, so a variation with the SKU comes back itself, with ``type``
``"variation"`` and its ``parent_id``). The parameter is split at commas (``a,b`` asks for
``a``, ``b`` and ``a,b``) and MySQL compares case-insensitively, so only records whose ``sku``
is exactly the one asked are kept. A product's or variation's stock is ``stock_quantity`` when
``manage_stock`` is ``true``; a variation whose ``manage_stock`` is ``"parent"`` shows its
parent's stock, and its item is the parent; otherwise WooCommerce does not track it (None).

Item ids for ``get`` of a variant or inventory item and for ``set_inventory``: ``"{product}"``
or ``"{product}/{variation}"``. A bare id goes to ``/products/{id}``, which resolves any product
id, a variation's included (the id webhooks and the normalizer name a variation by); the
``product/variation`` form uses the documented ``/products/{product}/variations/{variation}``.

Rate limits: WooCommerce core has none, but hosts and security plugins answer 429 with
``Retry-After``; ApiClient honours it, and the client spaces its own calls to
``requests_per_second``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.http import ApiClient, ApiError, RetryPolicy
from connectors.store_apis.base import Page, Resource, ShopInfo, StockLevel, Webhook

PLATFORM = "woocommerce"
API = "/wc/v3"
MAX_PER_PAGE = 100
"""WordPress REST refuses a larger ``per_page``."""
ORDER = {"orderby": "id", "order": "asc"}
PRODUCTS_PER_VARIANTS_PAGE = 10
"""The most products a VARIANTS page visits looking for variations before it answers (maybe
empty), so that a cursor is handed out every few calls."""

_LISTINGS = {
    Resource.PRODUCTS: f"{API}/products",
    Resource.ORDERS: f"{API}/orders",
    Resource.CUSTOMERS: f"{API}/customers",
}
"""Listed and read by id at the same path (``/orders``, ``/orders/{id}``)."""


@dataclass(frozen=True)
class _Pos:
    """Where a listing goes on: the page to ask for, the highest id read, ``X-WP-Total`` then."""

    page: int
    after: int
    total: int | None

    def dump(self) -> list[int | None]:
        return [self.page, self.after, self.total]

    @staticmethod
    def load(value: Any) -> _Pos | None:
        if value is None:
            return None
        page, after, total = value
        return _Pos(int(page), int(after), None if total is None else int(total))


_START = _Pos(1, 0, None)


def _id(record: Mapping[str, Any]) -> int:
    return int(record["id"])


def _numeric(value: str, what: str) -> str:
    if not value.isdigit():
        raise ValueError(f"a WooCommerce {what} id is a number, not {value!r}")
    return value


def _item_path(item_id: str) -> tuple[str, int | None]:
    """``/products/{id}`` or ``/products/{p}/variations/{v}``, and the parent id if any."""
    product, slash, variation = item_id.partition("/")
    if not slash:
        return f"{API}/products/{_numeric(product, 'product')}", None
    _numeric(product, "product")
    return f"{API}/products/{product}/variations/{_numeric(variation, 'variation')}", int(product)


def _as_variation(record: dict[str, Any], parent_id: int) -> dict[str, Any]:
    record.setdefault("type", "variation")
    record.setdefault("parent_id", parent_id)
    return record


def _gmt(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class WooCommerceApi:
    """One WooCommerce store's REST API (its key and secret are never printed)."""

    platform = PLATFORM

    def __init__(
        self,
        store_id: str,
        site_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        requests_per_second: float = 5.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        if requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        self.store_id = store_id
        self.site_url = site_url.rstrip("/")
        self._interval = 1.0 / requests_per_second
        token = base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self.client = ApiClient(
            PLATFORM,
            store_id,
            f"{self.site_url}/wp-json",
            auth_headers={"Authorization": f"Basic {token}"},
            policy=policy,
            pace=self._pace,
        )

    def __repr__(self) -> str:
        return f"WooCommerceApi(store={self.store_id!r}, site={self.site_url!r})"

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> WooCommerceApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pace(self, response: httpx.Response) -> float:
        # No limit is announced in answers: keep to the configured rate.
        return self._interval

    # -- reads ---------------------------------------------------------------------------------

    def shop(self) -> ShopInfo:
        """The site's name, home URL and timezone (the WordPress REST index, ``/wp-json/``) and
        the store currency (``woocommerce_currency``). The reference is ``home_url('/')``, what
        webhooks send in ``X-WC-Webhook-Source``."""
        index = self.client.request(
            "GET",
            "/",
            params={"_fields": "name,home,timezone_string,gmt_offset"},
            call="GET /wp-json/",
        ).json()
        setting = self.client.request("GET", f"{API}/settings/general/woocommerce_currency").json()
        home = str(index.get("home") or self.site_url).rstrip("/") + "/"
        return ShopInfo(
            reference=home,
            name=str(index.get("name") or ""),
            currency=str(setting["value"]),
            timezone=str(index.get("timezone_string") or "") or None,
        )

    def page(
        self,
        resource: Resource,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        page_size: int | None = None,
    ) -> Page:
        size = MAX_PER_PAGE if page_size is None else page_size
        if not 1 <= size <= MAX_PER_PAGE:
            raise ValueError(f"WooCommerce pages hold 1 to {MAX_PER_PAGE} records, not {size}")
        state = self._load_cursor(resource, cursor)
        records: list[dict[str, Any]]
        following: dict[str, Any] | None
        if resource in _LISTINGS:
            server_since = since if resource is not Resource.CUSTOMERS else None
            pos = _Pos.load(state.get("at")) or _START
            records, after = self._list(
                _LISTINGS[resource], {**ORDER, **self._since(server_since)}, pos, size
            )
            if since is not None and resource is Resource.CUSTOMERS:
                records = [r for r in records if self._changed_since(r, since)]
            following = None if after is None else {"at": after.dump()}
        elif resource is Resource.VARIANTS:
            records, following = self._variants(state, since, size, stocked_only=False)
        elif resource is Resource.INVENTORY_LEVELS:
            records, following = self._inventory(state, since, size)
        else:  # pragma: no cover - every Resource is handled above
            raise ValueError(f"unknown resource {resource!r}")
        return Page(tuple(records), self._dump_cursor(resource, following))

    def get(self, resource: Resource, resource_id: str) -> Mapping[str, Any] | None:
        parent: int | None = None
        if resource in _LISTINGS:
            path = f"{_LISTINGS[resource]}/{_numeric(resource_id, resource.value)}"
        else:
            path, parent = _item_path(resource_id)
        try:
            record: dict[str, Any] = self.client.request("GET", path).json()
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _as_variation(record, parent) if parent is not None else record

    def variations(self, product_id: str) -> list[dict[str, Any]] | None:
        """Every variation of one variable product, what hydration completes it with; None
        when the product is gone."""
        parent = int(_numeric(product_id, "product"))
        records: list[dict[str, Any]] = []
        position: _Pos | None = _START
        while position is not None:
            try:
                got, position = self._list(
                    f"{API}/products/{parent}/variations", ORDER, position, MAX_PER_PAGE
                )
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            records.extend(_as_variation(v, parent) for v in got)
        return records

    # -- webhooks and stock ----------------------------------------------------------------------

    def webhooks(self) -> list[Webhook]:
        found: list[Webhook] = []
        pos: _Pos | None = _START
        while pos is not None:
            records, pos = self._list(f"{API}/webhooks", dict(ORDER), pos, MAX_PER_PAGE)
            found.extend(
                Webhook(str(w["id"]), str(w.get("topic", "")), str(w.get("delivery_url", "")))
                for w in records
            )
        return found

    def register_webhook(
        self, topic: str, address: str, *, secret: str | None = None, name: str | None = None
    ) -> Webhook:
        """An active webhook for ``topic`` (``order.created``…) to ``address``; deliveries are
        signed with ``secret`` (WooCommerce makes one up when it is not given)."""
        body: dict[str, str] = {
            "name": name or f"revloop {topic}",
            "topic": topic,
            "delivery_url": address,
            "status": "active",
        }
        if secret is not None:
            body["secret"] = secret
        made = self.client.request(
            "POST", f"{API}/webhooks", json=body, call=f"POST {API}/webhooks {topic}"
        ).json()
        return Webhook(str(made["id"]), str(made.get("topic", topic)), str(made["delivery_url"]))

    def delete_webhook(self, webhook_id: str) -> None:
        """Deleted for good (webhooks cannot be trashed); one already gone counts as deleted."""
        try:
            self.client.request(
                "DELETE",
                f"{API}/webhooks/{_numeric(webhook_id, 'webhook')}",
                params={"force": "true"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise

    def set_inventory(self, item_id: str, location_id: str | None, available: int) -> None:
        """``location_id`` is ignored: WooCommerce keeps one stock per product or variation.
        Stock management is switched on, else WooCommerce ignores ``stock_quantity``."""
        path, _ = _item_path(item_id)
        self.client.request(
            "PUT",
            path,
            json={"manage_stock": True, "stock_quantity": int(available)},
            call=f"PUT {path} stock_quantity",
        )

    def stock_of_sku(self, sku: str) -> list[StockLevel]:
        if not sku.strip():
            return []  # WooCommerce ignores an empty ``sku`` and lists every product
        found: dict[str, StockLevel] = {}
        position: _Pos | None = _START
        while position is not None:
            records, position = self._list(
                f"{API}/products", {**ORDER, "sku": sku}, position, MAX_PER_PAGE
            )
            for record in records:
                if record.get("sku") != sku:
                    continue  # another of a comma-split list, or another case
                level = _stock_level(record)
                found.setdefault(level.item_id, level)
        return list(found.values())

    # -- listings --------------------------------------------------------------------------------

    @staticmethod
    def _since(since: datetime | None) -> dict[str, str]:
        if since is None:
            return {}
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        # Strictly after, at whole seconds: one second earlier keeps "at or after".
        moment = since.astimezone(UTC).replace(microsecond=0) - timedelta(seconds=1)
        return {"modified_after": moment.strftime("%Y-%m-%dT%H:%M:%S"), "dates_are_gmt": "true"}

    @staticmethod
    def _changed_since(record: Mapping[str, Any], since: datetime) -> bool:
        modified = _gmt(record.get("date_modified_gmt")) or _gmt(record.get("date_created_gmt"))
        return modified is None or modified >= since.astimezone(UTC).replace(microsecond=0)

    def _list(
        self, path: str, params: Mapping[str, str], pos: _Pos, size: int
    ) -> tuple[list[dict[str, Any]], _Pos | None]:
        """The records of ``path`` after ``pos`` (id order), one page's worth, and where the
        listing goes on (None: it ended)."""
        page, stepped_back = pos.page, False
        while True:
            response = self.client.request(
                "GET", path, params={**params, "per_page": str(size), "page": str(page)}
            )
            body = response.json()
            if not isinstance(body, list):
                raise ApiError(
                    self.store_id,
                    f"{PLATFORM} GET {path}",
                    "the answer is not a list",
                    status=response.status_code,
                    retryable=False,
                )
            total = _header_int(response, "x-wp-total")
            if (
                not stepped_back
                and page > 1
                and pos.total is not None
                and total is not None
                and total < pos.total
            ):
                # Records before the cursor went away and later ones moved up a page or more.
                page = max(1, page - -(-(pos.total - total) // size))
                stepped_back = True
                continue
            fresh = [r for r in body if _id(r) > pos.after]
            more = _has_next(response, page)
            if not fresh and more:
                page += 1  # read already (after stepping back)
                continue
            last = max((_id(r) for r in fresh), default=pos.after)
            return fresh, (_Pos(page + 1, last, total) if more else None)

    def _variants(
        self, state: Mapping[str, Any], since: datetime | None, size: int, *, stocked_only: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One product's variations (or part of them), and the state to go on from."""
        products = _Pos.load(state["products"]) if "products" in state else _START
        queue = [int(p) for p in state.get("queue", [])]
        inner = _Pos.load(state.get("at"))
        records: list[dict[str, Any]] = []
        for _ in range(PRODUCTS_PER_VARIANTS_PAGE):
            if not queue:
                if products is None:
                    break
                found, products = self._list(
                    f"{API}/products", {**ORDER, "type": "variable"}, products, MAX_PER_PAGE
                )
                queue = [_id(p) for p in found]
                continue
            parent = queue[0]
            try:
                got, inner = self._list(
                    f"{API}/products/{parent}/variations",
                    {**ORDER, **self._since(since)},
                    inner or _START,
                    size,
                )
            except ApiError as exc:
                if exc.status != 404:  # the product was deleted since it was listed
                    raise
                got, inner = [], None
            records.extend(
                _as_variation(v, parent)
                for v in got
                if not stocked_only or v.get("manage_stock") is True
            )
            if inner is None:
                queue.pop(0)
            if records or inner is not None:
                break
        if products is None and not queue and inner is None:
            return records, None
        return records, {
            "products": None if products is None else products.dump(),
            "queue": queue,
            "at": None if inner is None else inner.dump(),
        }

    def _inventory(
        self, state: Mapping[str, Any], since: datetime | None, size: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        if state.get("phase", "products") == "variants":
            records, following = self._variants(state, since, size, stocked_only=True)
            return records, None if following is None else {"phase": "variants", **following}
        pos = _Pos.load(state.get("at")) or _START
        found, after = self._list(f"{API}/products", {**ORDER, **self._since(since)}, pos, size)
        records = [p for p in found if p.get("manage_stock") is True]
        if after is None:
            return records, {"phase": "variants"}
        return records, {"phase": "products", "at": after.dump()}

    # -- cursors ---------------------------------------------------------------------------------

    @staticmethod
    def _dump_cursor(resource: Resource, state: dict[str, Any] | None) -> str | None:
        if state is None:
            return None
        raw = json.dumps({"r": resource.value, **state}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _load_cursor(resource: Resource, cursor: str | None) -> dict[str, Any]:
        if cursor is None:
            return {}
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            state = json.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("not a WooCommerce cursor") from exc
        if not isinstance(state, dict) or state.get("r") != resource.value:
            raise ValueError(f"not a WooCommerce cursor of {resource.value}")
        return state


def _stock_level(record: Mapping[str, Any]) -> StockLevel:
    """A product or variation read from ``/products`` as the item ``set_inventory`` takes."""
    manage, quantity = record.get("manage_stock"), record.get("stock_quantity")
    parent = record.get("parent_id")
    if record.get("type") == "variation" and parent:
        item_id = str(parent) if manage == "parent" else f"{parent}/{record['id']}"
    else:
        item_id = str(record["id"])
    tracked = manage is True or manage == "parent"
    available = int(quantity) if tracked and quantity is not None else None
    return StockLevel(item_id=item_id, location_id=None, available=available)


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _has_next(response: httpx.Response, page: int) -> bool:
    """The ``Link`` header's ``rel="next"``; ``X-WP-TotalPages`` when a proxy dropped it."""
    if response.headers.get("link"):
        return "next" in response.links
    pages = _header_int(response, "x-wp-totalpages")
    return pages is not None and page < pages
