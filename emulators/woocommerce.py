"""A WooCommerce store's REST API v3 (``/wp-json/wc/v3``), as WooCommerce and WordPress document it.

**Auth**: the REST API key as HTTP Basic auth (``consumer_key:consumer_secret``) or as the
``consumer_key``/``consumer_secret`` query parameters. No credentials → 401
``woocommerce_rest_cannot_view`` (``…cannot_create/edit/delete`` for writes); a wrong key or
secret → 401 ``woocommerce_rest_authentication_error``. ``GET /wp-json/`` (the WordPress index:
name, home, timezone) is public.

**Listings** (``/products``, ``/products/{id}/variations``, ``/orders``, ``/customers``,
``/webhooks``): ``per_page`` 1-100 (10 by default; outside → 400 ``rest_invalid_param``),
``page`` from 1 (past the end: an empty list), ``orderby``/``order`` (products, variations,
orders: ``date`` desc by default, also ``id``, ``modified``, ``title``, ``slug``, ties broken by
id; customers: ``name`` asc by default, also ``id``, ``registered_date``), ``modified_after``
with ``dates_are_gmt`` (strictly after; not on customers, which WooCommerce does not filter by
date), ``type`` and ``sku`` on products. ``sku`` is WooCommerce's exact match on ``_sku``: the
value is split at commas (with the whole value kept too when there are several), compared as
MySQL's default collation does (case-insensitively), and the listing then covers variations as
well as products (``post_type`` ``product`` and ``product_variation``). Every listing
answers ``X-WP-Total``, ``X-WP-TotalPages`` and ``Link`` headers (``rel="prev"``/``rel="next"``)
built on the request's own URL.

**Records** are REST v3 dicts as seeded (``add_product``, ``add_order``, ``add_customer``); ids
are assigned when missing (products, variations and orders share WordPress's post ids), and
``date_created(_gmt)``/``date_modified(_gmt)`` are filled in when missing and bumped on every
write through the API. Variations carry ``type: "variation"`` and ``parent_id``, and their
parent lists their ids in ``variations``. ``GET/PUT /products/{id}`` also serves a variation's
own id, as WooCommerce does (``wc_get_product``). A variation whose ``manage_stock`` is
``"parent"`` is read with its parent's ``stock_quantity``, as WooCommerce's view context does.

**Limits**: WooCommerce has none of its own, but hosts do: past ``requests_per_window`` calls in
``window_seconds`` the emulator answers 429 with ``Retry-After`` (whole seconds) and counts a
violation. ``fail_next`` makes the next calls answer a 5xx.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common import Emulator, Window

API = "/wp-json/wc/v3"
TOPIC_RESOURCES = frozenset({"coupon", "customer", "order", "product"})
TOPIC_EVENTS = frozenset({"created", "updated", "deleted", "restored"})
_READ_ONLY = frozenset(
    {
        "id",
        "type",
        "parent_id",
        "variations",
        "date_created",
        "date_created_gmt",
        "date_modified",
        "date_modified_gmt",
    }
)
_FORMAT = "%Y-%m-%dT%H:%M:%S"


_POSTS: Mapping[str, Callable[[dict[str, Any]], Any]] = {
    "date": lambda r: str(r.get("date_created_gmt")),
    "id": lambda r: 0,  # the id breaks every tie
    "modified": lambda r: str(r.get("date_modified_gmt")),
    "title": lambda r: str(r.get("name", "")),
    "slug": lambda r: str(r.get("slug", "")),
}
"""How posts (products, variations, orders, webhooks) may be ordered."""


def error(status: int, code: str, message: str, **data: Any) -> JSONResponse:
    """WordPress's REST error body."""
    return JSONResponse(
        {"code": code, "message": message, "data": {"status": status, **data}},
        status_code=status,
    )


def _invalid(name: str, reason: str) -> JSONResponse:
    return error(400, "rest_invalid_param", f"Invalid parameter(s): {name}", params={name: reason})


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else parsed.astimezone(UTC).replace(tzinfo=None)


class WooCommerceEmulator(Emulator):
    """One WooCommerce store: products and their variations, orders, customers, webhooks."""

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        *,
        site_url: str = "https://woo.example/",
        name: str = "Woo Example",
        currency: str = "USD",
        timezone: str = "UTC",
        requests_per_window: int = 100,
        window_seconds: float = 10.0,
        max_per_page: int = 100,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.site_url = site_url.rstrip("/")
        self.name, self.currency, self.timezone = name, currency, timezone
        self.max_per_page = max_per_page
        self._window = Window(requests_per_window, window_seconds)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._zone = ZoneInfo(timezone)
        self.products: dict[int, dict[str, Any]] = {}
        self.variations: dict[int, dict[str, Any]] = {}
        """Variation id → variation (with ``parent_id``)."""
        self.orders: dict[int, dict[str, Any]] = {}
        self.customers: dict[int, dict[str, Any]] = {}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.webhook_secrets: dict[int, str] = {}
        self._post_ids = itertools.count(100)
        self._user_ids = itertools.count(1)
        self._webhook_ids = itertools.count(1)

    # -- seeding -------------------------------------------------------------------------------

    def add_product(
        self, product: Mapping[str, Any], variations: Iterable[Mapping[str, Any]] = ()
    ) -> dict[str, Any]:
        """A product (REST v3 shape) and its variations; answers the stored product."""
        with self._lock:
            stored = self._store(self.products, product, self._post_ids)
            kids = [self._store(self.variations, v, self._post_ids) for v in variations]
            for kid in kids:
                kid["parent_id"] = stored["id"]
                kid["type"] = "variation"
                kid.setdefault("manage_stock", False)
                kid.setdefault("stock_quantity", None)
            if kids:
                stored.setdefault("type", "variable")
                stored["variations"] = [*stored.get("variations", []), *(k["id"] for k in kids)]
            stored.setdefault("type", "simple")
            stored.setdefault("variations", [])
            stored.setdefault("manage_stock", False)
            stored.setdefault("stock_quantity", None)
            return stored

    def add_order(self, order: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._store(self.orders, order, self._post_ids)

    def add_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._store(self.customers, customer, self._user_ids)

    def update_order(self, order_id: int, **changes: Any) -> dict[str, Any]:
        """An edit made in the shop (not through the API): ``date_modified`` is bumped."""
        with self._lock:
            order = self.orders[order_id]
            order.update(changes)
            self._stamp(order, bump=True)
            return order

    def remove_order(self, order_id: int) -> None:
        """Deleted (or trashed) in the shop: gone from listings."""
        with self._lock:
            del self.orders[order_id]

    def remove_product(self, product_id: int) -> None:
        with self._lock:
            for kid in self.products.pop(product_id).get("variations", []):
                self.variations.pop(int(kid), None)

    def stock(self, item_id: int) -> int | None:
        """A product's or variation's ``stock_quantity``."""
        record = self.products.get(item_id) or self.variations[item_id]
        quantity = record.get("stock_quantity")
        return None if quantity is None else int(quantity)

    def _store(
        self,
        table: dict[int, dict[str, Any]],
        record: Mapping[str, Any],
        ids: Iterator[int],
    ) -> dict[str, Any]:
        stored = dict(record)
        if stored.get("id") is None:
            stored["id"] = next(ids)
            # Posts (products, variations, orders) share one id space, as in WordPress.
            taken = (table,) if table is self.customers else self._posts()
            while any(stored["id"] in t for t in taken):
                stored["id"] = next(ids)
        stored["id"] = int(stored["id"])
        self._stamp(stored, bump=False)
        table[stored["id"]] = stored
        return stored

    def _posts(self) -> tuple[dict[int, dict[str, Any]], ...]:
        return (self.products, self.variations, self.orders)

    def _stamp(self, record: dict[str, Any], *, bump: bool) -> None:
        now = self._clock().astimezone(UTC).replace(microsecond=0, tzinfo=None)
        for name in ("date_created", "date_modified"):
            if name == "date_modified" and bump:
                record[f"{name}_gmt"] = now.strftime(_FORMAT)
                record.pop(name, None)
            if not record.get(f"{name}_gmt"):
                record[f"{name}_gmt"] = now.strftime(_FORMAT)
            if not record.get(name):
                gmt = datetime.strptime(record[f"{name}_gmt"][:19], _FORMAT).replace(tzinfo=UTC)
                record[name] = gmt.astimezone(self._zone).strftime(_FORMAT)

    # -- the app -------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/wp-json", self._index, methods=["GET"]),
                Route("/wp-json/", self._index, methods=["GET"]),
                Route(f"{API}/settings/general", self._settings, methods=["GET"]),
                Route(f"{API}/settings/general/{{setting}}", self._settings, methods=["GET"]),
                Route(f"{API}/products", self._products, methods=["GET"]),
                Route(f"{API}/products/{{id:int}}", self._product, methods=["GET", "PUT"]),
                Route(f"{API}/products/{{id:int}}/variations", self._variations, methods=["GET"]),
                Route(
                    f"{API}/products/{{id:int}}/variations/{{vid:int}}",
                    self._variation,
                    methods=["GET", "PUT"],
                ),
                Route(f"{API}/orders", self._orders, methods=["GET"]),
                Route(f"{API}/orders/{{id:int}}", self._order, methods=["GET"]),
                Route(f"{API}/customers", self._customers, methods=["GET"]),
                Route(f"{API}/customers/{{id:int}}", self._customer, methods=["GET"]),
                Route(f"{API}/webhooks", self._webhooks, methods=["GET", "POST"]),
                Route(f"{API}/webhooks/{{id:int}}", self._webhook, methods=["GET", "DELETE"]),
            ],
            exception_handlers={404: self._no_route, 405: self._no_route},
        )

    @staticmethod
    async def _no_route(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return error(
            status, "rest_no_route", "No route was found matching the URL and request method."
        )

    def _begin(self, request: Request, *, public: bool = False) -> Response | None:
        """Counts the call; a refusal (injected failure, rate limit, credentials) or None."""
        with self._lock:
            self.calls.total += 1
            failure = self.injected()
            if failure is not None:
                return error(failure, "internal_server_error", "Internal Server Error")
            if not self._window.spend(1, time.monotonic()):
                self.calls.violations += 1
                refused = error(429, "too_many_requests", "Too many requests.")
                refused.headers["Retry-After"] = str(max(1, math.ceil(self._window.seconds)))
                return refused
        if public:
            return None
        key, secret = self._credentials(request)
        if key is None:
            verb = {"GET": "view", "POST": "create", "PUT": "edit", "DELETE": "delete"}
            action = verb.get(request.method, "view")
            what = "list resources" if action == "view" else f"{action} this resource"
            return error(401, f"woocommerce_rest_cannot_{action}", f"Sorry, you cannot {what}.")
        if not hmac.compare_digest(key.encode(), self.consumer_key.encode()):
            return error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest((secret or "").encode(), self.consumer_secret.encode()):
            return error(
                401, "woocommerce_rest_authentication_error", "Consumer secret is invalid."
            )
        return None

    @staticmethod
    def _credentials(request: Request) -> tuple[str | None, str | None]:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and encoded:
            try:
                key, _, secret = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            return key, secret
        query = request.query_params
        return query.get("consumer_key"), query.get("consumer_secret")

    # -- listings ------------------------------------------------------------------------------

    def _listing(
        self,
        request: Request,
        records: Iterable[dict[str, Any]],
        *,
        orderings: Mapping[str, Callable[[dict[str, Any]], Any]],
        default: tuple[str, str],
        dated: bool = True,
    ) -> Response:
        query = request.query_params
        numbers: dict[str, int] = {}
        for name, fallback, top in (("per_page", 10, self.max_per_page), ("page", 1, None)):
            raw = query.get(name, str(fallback))
            if not raw.isdigit() or int(raw) < 1 or (top is not None and int(raw) > top):
                reason = (
                    f"{name} must be between 1 (inclusive) and {top} (inclusive)"
                    if top is not None
                    else f"{name} must be greater than or equal to 1"
                )
                return _invalid(name, reason)
            numbers[name] = int(raw)
        orderby = query.get("orderby", default[0])
        if orderby not in orderings:
            return _invalid("orderby", f"orderby is not one of {', '.join(orderings)}.")
        order = query.get("order", default[1])
        if order not in ("asc", "desc"):
            return _invalid("order", "order is not one of asc and desc.")
        rows = list(records)
        if dated and query.get("modified_after"):
            moment = _parse_time(query["modified_after"])
            if moment is None:
                return _invalid("modified_after", "Invalid date.")
            gmt = query.get("dates_are_gmt", "false").lower() in ("true", "1")
            field = "date_modified_gmt" if gmt else "date_modified"
            rows = [r for r in rows if (_parse_time(str(r.get(field))) or moment) > moment]
        key = orderings[orderby]
        rows.sort(key=lambda r: (key(r), int(r["id"])), reverse=order == "desc")
        per_page, page = numbers["per_page"], numbers["page"]
        pages = math.ceil(len(rows) / per_page)
        chunk = rows[(page - 1) * per_page : page * per_page]
        response = JSONResponse(chunk)
        response.headers["X-WP-Total"] = str(len(rows))
        response.headers["X-WP-TotalPages"] = str(pages)
        if page > 1:
            before = min(page - 1, pages)
            link = request.url.include_query_params(page=before)
            response.headers.append("Link", f'<{link}>; rel="prev"')
        if page < pages:
            link = request.url.include_query_params(page=page + 1)
            response.headers.append("Link", f'<{link}>; rel="next"')
        return response

    async def _products(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        kind = request.query_params.get("type")
        sku = request.query_params.get("sku", "").strip()
        with self._lock:
            posts = list(self.products.values())
            if sku:
                # With ``sku`` WooCommerce queries variations too (``product_variation``).
                skus = sku.split(",")
                if len(skus) > 1:
                    skus.append(sku)
                wanted = {s.casefold() for s in skus}
                posts += self.variations.values()
                posts = [p for p in posts if str(p.get("sku") or "").casefold() in wanted]
            rows = [self._view(p) for p in posts if kind in (None, p.get("type"))]
        return self._listing(request, rows, orderings=_POSTS, default=("date", "desc"))

    def _view(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record as read: a variation stocked by its parent shows the parent's stock."""
        shown = dict(record)
        if record.get("type") == "variation" and record.get("manage_stock") == "parent":
            parent = self.products.get(int(record["parent_id"])) or {}
            shown["stock_quantity"] = parent.get("stock_quantity")
        return shown

    async def _variations(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        parent = request.path_params["id"]
        with self._lock:
            if parent not in self.products:
                return error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
            rows = [self._view(v) for v in self.variations.values() if v["parent_id"] == parent]
        return self._listing(request, rows, orderings=_POSTS, default=("date", "desc"))

    async def _orders(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        with self._lock:
            rows = [dict(o) for o in self.orders.values()]
        return self._listing(request, rows, orderings=_POSTS, default=("date", "desc"))

    async def _customers(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        with self._lock:
            rows = [dict(c) for c in self.customers.values()]
        orderings: dict[str, Callable[[dict[str, Any]], Any]] = {
            "id": lambda r: 0,
            "name": lambda r: str(r.get("username") or r.get("first_name") or ""),
            "registered_date": lambda r: str(r.get("date_created_gmt")),
        }
        return self._listing(
            request, rows, orderings=orderings, default=("name", "asc"), dated=False
        )

    # -- single records ------------------------------------------------------------------------

    async def _one(
        self, request: Request, table: dict[int, dict[str, Any]], code: str, message: str
    ) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        with self._lock:
            found = table.get(request.path_params["id"])
            if found is None:
                return error(404, code, message)
            return JSONResponse(dict(found))

    async def _order(self, request: Request) -> Response:
        return await self._one(
            request, self.orders, "woocommerce_rest_shop_order_invalid_id", "Invalid ID."
        )

    async def _customer(self, request: Request) -> Response:
        return await self._one(
            request, self.customers, "woocommerce_rest_invalid_id", "Invalid resource ID."
        )

    async def _product(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        item_id = request.path_params["id"]
        with self._lock:
            found = self.products.get(item_id) or self.variations.get(item_id)
            if found is None:
                return error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
        return await self._read_or_write(request, found)

    async def _variation(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        with self._lock:
            found = self.variations.get(request.path_params["vid"])
            if found is None or found["parent_id"] != request.path_params["id"]:
                return error(404, "woocommerce_rest_product_variation_invalid_id", "Invalid ID.")
        return await self._read_or_write(request, found)

    async def _read_or_write(self, request: Request, record: dict[str, Any]) -> Response:
        if request.method == "GET":
            with self._lock:
                return JSONResponse(self._view(record))
        try:
            body = await request.json()
        except ValueError:
            return error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(body, dict):
            return error(400, "rest_invalid_json", "Invalid JSON body passed.")
        quantity = body.get("stock_quantity")
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            return _invalid("stock_quantity", "stock_quantity is not of type integer.")
        with self._lock:
            record.update({k: v for k, v in body.items() if k not in _READ_ONLY})
            if record.get("manage_stock") is True and record.get("stock_quantity") is not None:
                record["stock_status"] = (
                    "instock" if int(record["stock_quantity"]) > 0 else "outofstock"
                )
            elif record.get("manage_stock") is False:
                record["stock_quantity"] = None  # WooCommerce clears it
            self._stamp(record, bump=True)
            self.calls.writes.append((str(record["id"]), f"stock={record.get('stock_quantity')}"))
            return JSONResponse(dict(record))

    # -- webhooks ------------------------------------------------------------------------------

    async def _webhooks(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            with self._lock:
                rows = [dict(w) for w in self.webhooks.values()]
            return self._listing(
                request, rows, orderings=_POSTS, default=("date", "desc"), dated=False
            )
        try:
            body = await request.json()
        except ValueError:
            return error(400, "rest_invalid_json", "Invalid JSON body passed.")
        topic = str(body.get("topic", ""))
        resource, _, event = topic.partition(".")
        if resource not in TOPIC_RESOURCES or event not in TOPIC_EVENTS:
            return error(
                400,
                "woocommerce_rest_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
            )
        address = str(body.get("delivery_url", ""))
        if not address.startswith(("http://", "https://")):
            return error(
                400,
                "woocommerce_rest_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
            )
        with self._lock:
            webhook_id = next(self._webhook_ids)
            hook: dict[str, Any] = {
                "id": webhook_id,
                "name": str(body.get("name") or f"Webhook created on {self._clock():%b %d, %Y}"),
                "status": str(body.get("status", "active")),
                "topic": topic,
                "resource": resource,
                "event": event,
                "hooks": [f"woocommerce_{'new' if event == 'created' else event}_{resource}"],
                "delivery_url": address,
            }
            self._stamp(hook, bump=False)
            self.webhooks[webhook_id] = hook
            # WooCommerce makes a secret up when none is given.
            self.webhook_secrets[webhook_id] = str(body.get("secret") or f"wh-secret-{webhook_id}")
            return JSONResponse(dict(hook), status_code=201)

    async def _webhook(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        webhook_id = request.path_params["id"]
        with self._lock:
            hook = self.webhooks.get(webhook_id)
            if hook is None:
                return error(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
            if request.method == "GET":
                return JSONResponse(dict(hook))
            if request.query_params.get("force", "false").lower() not in ("true", "1"):
                return error(
                    501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing."
                )
            del self.webhooks[webhook_id]
            self.webhook_secrets.pop(webhook_id, None)
            return JSONResponse(dict(hook))

    # -- site ----------------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        refused = self._begin(request, public=True)
        if refused is not None:
            return refused
        offset = self._clock().astimezone(self._zone).utcoffset()
        index: dict[str, Any] = {
            "name": self.name,
            "description": "",
            "url": self.site_url,
            "home": self.site_url,
            "gmt_offset": (offset.total_seconds() / 3600) if offset is not None else 0,
            "timezone_string": self.timezone,
            "namespaces": ["oembed/1.0", "wc/v3", "wp/v2"],
            "authentication": [],
            "routes": {},
        }
        fields = request.query_params.get("_fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")}
            index = {k: v for k, v in index.items() if k in wanted}
        return JSONResponse(index)

    async def _settings(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        settings = [
            {
                "id": "woocommerce_currency",
                "label": "Currency",
                "description": "This controls what currency prices are listed at in the "
                "catalog and which currency gateways will take payments in.",
                "type": "select",
                "default": "USD",
                "tip": "This controls what currency prices are listed at in the catalog and "
                "which currency gateways will take payments in.",
                "value": self.currency,
                "group_id": "general",
            }
        ]
        wanted = request.path_params.get("setting")
        if wanted is None:
            return JSONResponse(settings)
        for setting in settings:
            if setting["id"] == wanted:
                return JSONResponse(setting)
        return error(404, "rest_setting_setting_invalid", "Invalid setting.")
