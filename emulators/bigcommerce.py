"""BigCommerce's store API, for one store: the V3 catalog, customers, inventory and webhooks,
and the V2 orders and store information.

Paths are under ``/stores/{store_hash}/``; the ``X-Auth-Token`` header must be the store's token
(else 401, nothing served). V3 answers ``{"data", "meta"}`` with ``meta.pagination`` ``{total,
count, per_page, current_page, total_pages, links{previous, current, next}}``, the links as
query strings (``?page=2&limit=50``); V3 errors are ``{"status", "title", "type", "errors"}``.
V2 answers bare arrays with no totals, ``204 No Content`` for an empty page, and errors as
``[{"status", "message"}]``. ``limit`` is 50 by default and at most 250 (a larger one gets 413,
"the limit parameter exceeded the maximum").

Rate limit: a quota of requests per fixed window, as BigCommerce refreshes the store's quota
every window. Every answer carries ``X-Rate-Limit-Requests-Left``, ``-Requests-Quota``,
``-Time-Window-Ms`` and ``-Time-Reset-Ms``; a request past the quota gets 429 (with
``X-Retry-After`` in seconds too) and is counted in ``calls.violations``. ``fail_next`` answers
the next calls with a 5xx.

Dates are BigCommerce's: V2 RFC 2822 (``Tue, 20 Nov 2012 00:00:00 +0000``), V3 ISO 8601, whole
seconds. Seeding assigns ids, ``date_created`` and ``date_modified`` where missing; every write
(seeding updates, stock adjustments) moves ``date_modified`` on, by at least a second, so each
state of a record has its own version. Stock is kept per variant and location (location 1 is
the default one); a variant's ``inventory_level`` is its sum over locations, and a product's
the sum over its variants. ``/v3/catalog/variants`` filters on ``id``/``id:in``, ``sku`` (exact)
and ``sku:in`` (a comma-separated list), and ``product_id:in``.
"""

from __future__ import annotations

import copy
import email.utils
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common import Emulator

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
STATUS_TYPE = "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"
ORDER_STATUSES = {
    0: "Incomplete",
    1: "Pending",
    2: "Shipped",
    3: "Partially Shipped",
    4: "Refunded",
    5: "Cancelled",
    6: "Declined",
    7: "Awaiting Payment",
    8: "Awaiting Pickup",
    9: "Awaiting Shipment",
    10: "Completed",
    11: "Awaiting Fulfillment",
    12: "Manual Verification Required",
    13: "Disputed",
    14: "Partially Refunded",
}
Handler = Callable[[Request], Awaitable[Response]]


def v2_date(when: datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC))


def v3_date(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def parse_date(value: str) -> datetime:
    """A filter or seeded date: ISO 8601 (a bare date is midnight UTC) or RFC 2822."""
    value = value.strip()
    if value[:1].isdigit():
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        parsed = email.utils.parsedate_to_datetime(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # a JSON number, as BigCommerce writes money in V3
    raise TypeError(f"{type(value).__name__} is not JSON")


class BigJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_plain, separators=(",", ":")).encode()


class FixedWindow:
    """A quota of requests per window; the window starts at its first request."""

    def __init__(self, quota: int, seconds: float) -> None:
        self.quota, self.seconds = quota, seconds
        self.started: float | None = None
        self.used = 0

    def _roll(self, now: float) -> None:
        if self.started is None or now >= self.started + self.seconds:
            self.started, self.used = now, 0

    def spend(self, now: float) -> bool:
        self._roll(now)
        if self.used >= self.quota:
            return False
        self.used += 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        self._roll(now)
        assert self.started is not None
        reset = max(0.0, self.started + self.seconds - now)
        return {
            "X-Rate-Limit-Requests-Left": str(self.quota - self.used),
            "X-Rate-Limit-Requests-Quota": str(self.quota),
            "X-Rate-Limit-Time-Window-Ms": str(round(self.seconds * 1000)),
            "X-Rate-Limit-Time-Reset-Ms": str(math.ceil(reset * 1000)),
        }


class BigCommerceEmulator(Emulator):
    """One store's catalog, customers, orders, stock and webhooks."""

    def __init__(
        self,
        store_hash: str,
        token: str,
        *,
        requests_per_window: int = 150,
        window_ms: int = 30_000,
        name: str = "Emulated Store",
        currency: str = "USD",
        timezone: str = "America/Chicago",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.store_hash, self.token = store_hash, token
        self.name, self.currency, self.timezone = name, currency, timezone
        self._clock = clock or (lambda: datetime.now(UTC))
        self._window = FixedWindow(requests_per_window, window_ms / 1000)
        self.products: dict[int, dict[str, Any]] = {}
        """Product id → the V3 product, its ``variants`` included."""
        self.orders: dict[int, dict[str, Any]] = {}
        """Order id → the V2 order (``products`` is the V2 link to them)."""
        self.order_products: dict[int, list[dict[str, Any]]] = {}
        self.refunds: dict[int, list[dict[str, Any]]] = {}
        self.customers: dict[int, dict[str, Any]] = {}
        self.hooks: dict[int, dict[str, Any]] = {}
        self.locations: dict[int, str] = {1: "Default location"}
        self.stock: dict[tuple[int, int], int] = {}
        """(variant id, location id) → units on hand."""
        self._versions: dict[tuple[str, int], datetime] = {}
        self._next = {"product": 100, "variant": 500, "order": 1000, "order_product": 5000}
        self._next.update({"refund": 1, "customer": 3000, "hook": 9000, "transaction": 1})
        self.app_credentials: tuple[str, str] | None = None
        """(client id, client secret) of the app whose codes the login service grants."""
        self._codes: set[str] = set()

    # -- seeding -------------------------------------------------------------------------------

    def _id(self, kind: str, given: Any) -> int:
        if given is not None:
            number = int(given)
            self._next[kind] = max(self._next[kind], number + 1)
            return number
        number = self._next[kind]
        self._next[kind] += 1
        return number

    def _version(self, kind: str, record_id: int, given: Any = None) -> datetime:
        """The record's next date_modified: the one given, else now, and always later than the
        last (whole seconds, as BigCommerce writes them)."""
        when = parse_date(str(given)) if given else self._clock().replace(microsecond=0)
        last = self._versions.get((kind, record_id))
        if given is None and last is not None and when <= last:
            when = last + timedelta(seconds=1)
        self._versions[(kind, record_id)] = when
        return when

    def add_product(self, product: Mapping[str, Any]) -> dict[str, Any]:
        """A V3 product, with ``variants`` (a base variant is made when there are none); each
        variant's ``inventory_level`` becomes its stock at location 1."""
        with self._lock:
            record = copy.deepcopy(dict(product))
            product_id = self._id("product", record.get("id"))
            record["id"] = product_id
            now = self._version("product", product_id, record.get("date_modified"))
            record.setdefault("date_created", v3_date(now))
            record["date_modified"] = v3_date(now)
            record.setdefault("name", f"Product {product_id}")
            record.setdefault("type", "physical")
            record.setdefault("price", 0)
            record.setdefault("availability", "available")
            record.setdefault("is_visible", True)
            record.setdefault("inventory_tracking", "variant")
            variants = record.get("variants") or [
                {"sku": record.get("sku", ""), "inventory_level": record.get("inventory_level", 0)}
            ]
            record["variants"] = []
            for given in variants:
                variant = copy.deepcopy(dict(given))
                variant["id"] = self._id("variant", variant.get("id"))
                variant["product_id"] = product_id
                variant.setdefault("sku", "")
                variant.setdefault("price", None)
                variant.setdefault("option_values", [])
                self.stock[(variant["id"], 1)] = int(variant.get("inventory_level") or 0)
                record["variants"].append(variant)
            record["base_variant_id"] = record["variants"][0]["id"]
            self.products[product_id] = record
            return self._product(product_id, variants=True)

    def add_order(
        self,
        order: Mapping[str, Any],
        products: Iterable[Mapping[str, Any]] = (),
        refunds: Iterable[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A V2 order, its V2 order products and its V3 refunds. ``refunded_amount`` is the sum
        of the refunds unless given."""
        with self._lock:
            record = copy.deepcopy(dict(order))
            order_id = self._id("order", record.get("id"))
            record["id"] = order_id
            now = self._version("order", order_id, record.get("date_modified"))
            record.setdefault("date_created", v2_date(now))
            record["date_modified"] = v2_date(now)
            record.setdefault("status_id", 11)
            record.setdefault("status", ORDER_STATUSES.get(int(record["status_id"]), "Custom"))
            record.setdefault("customer_id", 0)
            record.setdefault("currency_code", self.currency)
            record.setdefault("default_currency_code", record["currency_code"])
            record.setdefault("is_deleted", False)
            record["products"] = {
                "url": f"https://api.bigcommerce.com/stores/{self.store_hash}/v2/orders/"
                f"{order_id}/products",
                "resource": f"/orders/{order_id}/products",
            }
            self.orders[order_id] = record
            self.order_products[order_id] = []
            for line in products:
                item = copy.deepcopy(dict(line))
                item["id"] = self._id("order_product", item.get("id"))
                item["order_id"] = order_id
                self.order_products[order_id].append(item)
            self.refunds[order_id] = []
            for refund in refunds:
                self._add_refund(order_id, refund, now)
            if "refunded_amount" not in order:
                self._sum_refunds(order_id)
            return copy.deepcopy(record)

    def add_refund(self, order_id: int, refund: Mapping[str, Any]) -> dict[str, Any]:
        """A refund on an existing order (a write: the order's date_modified moves on)."""
        with self._lock:
            now = self._version("order", order_id)
            self.orders[order_id]["date_modified"] = v2_date(now)
            added = self._add_refund(order_id, refund, now)
            self._sum_refunds(order_id)
            return added

    def _add_refund(
        self, order_id: int, refund: Mapping[str, Any], now: datetime
    ) -> dict[str, Any]:
        record = copy.deepcopy(dict(refund))
        record["id"] = self._id("refund", record.get("id"))
        record["order_id"] = order_id
        record.setdefault("created", v3_date(now))
        record.setdefault("items", [])
        record.setdefault("payments", [])
        self.refunds[order_id].append(record)
        return copy.deepcopy(record)

    def _sum_refunds(self, order_id: int) -> None:
        total = sum(Decimal(str(r.get("total_amount") or 0)) for r in self.refunds[order_id])
        self.orders[order_id]["refunded_amount"] = f"{total:.4f}"

    def add_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = copy.deepcopy(dict(customer))
            customer_id = self._id("customer", record.get("id"))
            record["id"] = customer_id
            now = self._version("customer", customer_id, record.get("date_modified"))
            record.setdefault("date_created", v3_date(now))
            record["date_modified"] = v3_date(now)
            self.customers[customer_id] = record
            return copy.deepcopy(record)

    def update_order(self, order_id: int, **changes: Any) -> dict[str, Any]:
        """Change an order's fields (``status_id`` renames ``status``); date_modified moves."""
        with self._lock:
            record = self.orders[order_id]
            record.update(copy.deepcopy(changes))
            if "status_id" in changes and "status" not in changes:
                record["status"] = ORDER_STATUSES.get(int(changes["status_id"]), "Custom")
            record["date_modified"] = v2_date(self._version("order", order_id))
            return copy.deepcopy(record)

    def update_product(self, product_id: int, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self.products[product_id].update(copy.deepcopy(changes))
            self._touch_product(product_id)
            return self._product(product_id, variants=True)

    def update_customer(self, customer_id: int, **changes: Any) -> dict[str, Any]:
        with self._lock:
            record = self.customers[customer_id]
            record.update(copy.deepcopy(changes))
            record["date_modified"] = v3_date(self._version("customer", customer_id))
            return copy.deepcopy(record)

    def add_location(self, location_id: int, name: str) -> None:
        with self._lock:
            self.locations[location_id] = name

    def level(self, variant_id: int, location_id: int = 1) -> int:
        """Units of a variant on hand at a location."""
        with self._lock:
            return self.stock.get((variant_id, location_id), 0)

    def _touch_product(self, product_id: int) -> None:
        self.products[product_id]["date_modified"] = v3_date(self._version("product", product_id))

    # -- rendering -----------------------------------------------------------------------------

    def _variant(self, variant: Mapping[str, Any]) -> dict[str, Any]:
        rendered = copy.deepcopy(dict(variant))
        rendered["inventory_level"] = sum(
            units for (v, _), units in self.stock.items() if v == variant["id"]
        )
        return rendered

    def _product(self, product_id: int, *, variants: bool) -> dict[str, Any]:
        record = copy.deepcopy(self.products[product_id])
        rendered = [self._variant(v) for v in record.pop("variants")]
        record["inventory_level"] = sum(v["inventory_level"] for v in rendered)
        if variants:
            record["variants"] = rendered
        return record

    def _inventory_item(self, variant: Mapping[str, Any]) -> dict[str, Any]:
        variant_id = int(variant["id"])
        return {
            "identity": {
                "sku": variant.get("sku", ""),
                "variant_id": variant_id,
                "product_id": variant["product_id"],
                "sku_id": variant.get("sku_id"),
            },
            "locations": [
                {
                    "location_id": location_id,
                    "location_code": f"BC-LOCATION-{location_id}",
                    "location_name": name,
                    "available_to_sell": self.stock.get((variant_id, location_id), 0),
                    "total_inventory_onhand": self.stock.get((variant_id, location_id), 0),
                    "location_enabled": True,
                    "settings": {
                        "safety_stock": 0,
                        "is_in_stock": self.stock.get((variant_id, location_id), 0) > 0,
                        "warning_level": 0,
                        "bin_picking_number": "",
                    },
                }
                for location_id, name in sorted(self.locations.items())
            ],
        }

    # -- the HTTP side -------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        base = "/stores/{store_hash}"
        routes = [
            ("/v2/store", self._store, ["GET"]),
            ("/v2/orders", self._orders, ["GET"]),
            ("/v2/orders/{order_id:int}", self._order, ["GET"]),
            ("/v2/orders/{order_id:int}/products", self._order_lines, ["GET"]),
            ("/v3/orders/{order_id:int}/payment_actions/refunds", self._order_refunds, ["GET"]),
            ("/v3/catalog/products", self._products, ["GET"]),
            ("/v3/catalog/products/{product_id:int}", self._one_product, ["GET"]),
            ("/v3/catalog/variants", self._variants, ["GET"]),
            ("/v3/customers", self._customers, ["GET"]),
            ("/v3/inventory/items", self._inventory_items, ["GET"]),
            ("/v3/inventory/adjustments/absolute", self._adjust, ["PUT"]),
            ("/v3/hooks", self._hooks, ["GET", "POST"]),
            ("/v3/hooks/{hook_id:int}", self._hook, ["GET", "DELETE"]),
            ("/{rest:path}", self._unknown, ["GET", "POST", "PUT", "DELETE"]),
        ]
        return Starlette(
            routes=[
                Route("/oauth2/token", self._token, methods=["POST"]),
                *(Route(base + path, self._guarded(fn), methods=m) for path, fn, m in routes),
            ]
        )

    def grant(self, code: str, client_id: str, client_secret: str) -> None:
        """The store owner installed the app: ``code`` may be exchanged once for the token (the
        login service, login.bigcommerce.com, served here too)."""
        self.app_credentials = (client_id, client_secret)
        self._codes.add(code)

    async def _token(self, request: Request) -> Response:
        self.calls.total += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = {}
        fields = body if isinstance(body, dict) else {}
        code, context = fields.get("code"), fields.get("context")
        if (
            (fields.get("client_id"), fields.get("client_secret")) != self.app_credentials
            or code not in self._codes
            or fields.get("grant_type") != "authorization_code"
            or context != f"stores/{self.store_hash}"
        ):
            return JSONResponse({"error": "Invalid client id or secret, or code"}, 400)
        self._codes.discard(code)
        return JSONResponse(
            {
                "access_token": self.token,
                "scope": fields.get("scope", ""),
                "user": {"id": 24654, "username": "owner", "email": "owner@example.com"},
                "owner": {"id": 24654, "username": "owner", "email": "owner@example.com"},
                "context": context,
                "account_uuid": "5a3b6e4c-0000-4000-8000-000000000001",
            }
        )

    def _guarded(self, handler: Handler) -> Handler:
        """Counted, failed on demand, authenticated and rate limited, with the rate headers on
        every answer."""

        async def guarded(request: Request) -> Response:
            v2 = "/v2/" in request.url.path
            now = time.monotonic()
            with self._lock:
                self.calls.total += 1
                failure = self.injected()
                spent = False
                if failure is None and self._authentic(request):
                    spent = self._window.spend(now)
                    if not spent:
                        self.calls.violations += 1
            if failure is not None:
                answer = _error(v2, failure, "Internal error. Please try again later.")
            elif not self._authentic(request):
                answer = _error(
                    v2,
                    401,
                    "Unauthorized - the token in the request is not valid for this store."
                    if v2
                    else "Unauthorized - the v3 Auth client ID or token in the request are not "
                    "a valid combination for this store.",
                )
            elif not spent:
                answer = _error(v2, 429, "Too many requests.")
            else:
                answer = await handler(request)
            with self._lock:
                headers = self._window.headers(now)
            answer.headers.update(headers)
            if answer.status_code == 429:
                reset_ms = int(headers["X-Rate-Limit-Time-Reset-Ms"])
                answer.headers["X-Retry-After"] = str(math.ceil(reset_ms / 1000))
            return answer

        return guarded

    def _authentic(self, request: Request) -> bool:
        return (
            request.path_params.get("store_hash") == self.store_hash
            and request.headers.get("x-auth-token") == self.token
        )

    async def _unknown(self, request: Request) -> Response:
        return _error("/v2/" in request.url.path, 404, "The requested resource was not found.")

    async def _store(self, request: Request) -> Response:
        return BigJSON(
            {
                "id": self.store_hash,
                "domain": f"{self.store_hash}.mybigcommerce.com",
                "secure_url": f"https://{self.store_hash}.mybigcommerce.com",
                "name": self.name,
                "currency": self.currency,
                "currency_symbol": "$" if self.currency == "USD" else self.currency,
                "decimal_places": 2,
                "timezone": {"name": self.timezone, "raw_offset": 0, "dst_offset": 0},
                "language": "en",
                "plan_name": "Emulated",
            }
        )

    # V2 orders

    async def _orders(self, request: Request) -> Response:
        query = request.query_params
        paging = _paging(query, v2=True)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        with self._lock:
            found = [o for o in self.orders.values() if not o.get("is_deleted")]
            if "min_date_modified" in query:
                since = parse_date(query["min_date_modified"])
                found = [o for o in found if parse_date(o["date_modified"]) >= since]
            if "min_id" in query:
                found = [o for o in found if o["id"] >= int(query["min_id"])]
            field, _, direction = query.get("sort", "id:asc").partition(":")
            key = {
                "id": lambda o: (o["id"],),
                "date_modified": lambda o: (parse_date(o["date_modified"]), o["id"]),
                "date_created": lambda o: (parse_date(o["date_created"]), o["id"]),
            }.get(field)
            if key is None:
                return _error(True, 400, "The sort field is not supported.")
            found.sort(key=key, reverse=direction == "desc")
            chunk = copy.deepcopy(found[(page - 1) * limit : page * limit])
        return BigJSON(chunk) if chunk else Response(status_code=204)

    async def _order(self, request: Request) -> Response:
        with self._lock:
            order = self.orders.get(request.path_params["order_id"])
            if order is None:
                return _error(True, 404, "The requested resource was not found.")
            return BigJSON(copy.deepcopy(order))

    async def _order_lines(self, request: Request) -> Response:
        paging = _paging(request.query_params, v2=True)
        if isinstance(paging, Response):
            return paging
        page, limit = paging
        with self._lock:
            lines = self.order_products.get(request.path_params["order_id"])
            if lines is None:
                return _error(True, 404, "The requested resource was not found.")
            chunk = copy.deepcopy(lines[(page - 1) * limit : page * limit])
        return BigJSON(chunk) if chunk else Response(status_code=204)

    async def _order_refunds(self, request: Request) -> Response:
        with self._lock:
            refunds = self.refunds.get(request.path_params["order_id"])
            if refunds is None:
                return _error(False, 404, "Order not found.")
            return BigJSON({"data": copy.deepcopy(refunds), "meta": {}})

    # V3 catalog and customers

    async def _products(self, request: Request) -> Response:
        query = request.query_params
        with_variants = "variants" in query.get("include", "").split(",")
        with self._lock:
            found = list(self.products.values())
            found = _by_ids(found, query.get("id:in"))
            if "date_modified:min" in query:
                since = parse_date(query["date_modified:min"])
                found = [p for p in found if parse_date(p["date_modified"]) >= since]
            field = query.get("sort", "id")
            if field not in ("id", "date_modified", "name"):
                return _error(False, 400, "The sort field is not supported.")
            found.sort(
                key=lambda p: (
                    (p[field], p["id"])
                    if field != "date_modified"
                    else (parse_date(p["date_modified"]), p["id"])
                ),
                reverse=query.get("direction") == "desc",
            )
            rendered = [self._product(p["id"], variants=with_variants) for p in found]
        return _listing(request, rendered)

    async def _one_product(self, request: Request) -> Response:
        with_variants = "variants" in request.query_params.get("include", "").split(",")
        with self._lock:
            product_id = request.path_params["product_id"]
            if product_id not in self.products:
                return _error(False, 404, "The requested product was not found.")
            return BigJSON({"data": self._product(product_id, variants=with_variants), "meta": {}})

    async def _variants(self, request: Request) -> Response:
        query = request.query_params
        with self._lock:
            found = [
                self._variant(v)
                for p in sorted(self.products)
                for v in self.products[p]["variants"]
            ]
        found.sort(key=lambda v: v["id"])
        found = _by_ids(found, query.get("id:in") or query.get("id"))
        if "sku" in query:
            found = [v for v in found if v.get("sku") == query["sku"]]
        if "sku:in" in query:
            skus = set(query["sku:in"].split(","))
            found = [v for v in found if v.get("sku") in skus]
        if "product_id:in" in query:
            wanted = {int(i) for i in query["product_id:in"].split(",") if i.strip()}
            found = [v for v in found if v["product_id"] in wanted]
        return _listing(request, found)

    async def _customers(self, request: Request) -> Response:
        query = request.query_params
        with self._lock:
            found = _by_ids(list(self.customers.values()), query.get("id:in"))
            if "date_modified:min" in query:
                since = parse_date(query["date_modified:min"])
                found = [c for c in found if parse_date(c["date_modified"]) >= since]
            field, _, direction = query.get("sort", "id:asc").partition(":")
            if field not in ("id", "date_created", "date_modified"):
                return _error(False, 400, "The sort field is not supported.")
            found.sort(
                key=lambda c: (parse_date(c[field]) if field != "id" else c["id"], c["id"]),
                reverse=direction == "desc",
            )
            found = copy.deepcopy(found)
        return _listing(request, found)

    # V3 inventory

    async def _inventory_items(self, request: Request) -> Response:
        query = request.query_params
        with self._lock:
            variants = sorted(
                (v for p in self.products.values() for v in p["variants"]),
                key=lambda v: v["id"],
            )
            if "variant_id:in" in query:
                wanted = {int(i) for i in query["variant_id:in"].split(",") if i.strip()}
                variants = [v for v in variants if v["id"] in wanted]
            found = [self._inventory_item(v) for v in variants]
        return _listing(request, found)

    async def _adjust(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(False, 400, "The request body is not JSON.")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or not body.get("reason"):
            return _error(False, 422, "JSON data is missing or invalid", items="required")
        with self._lock:
            by_variant = {v["id"]: v for p in self.products.values() for v in p["variants"]}
            by_sku = {v["sku"]: v for v in by_variant.values() if v.get("sku")}
            changes = []
            for item in items:
                quantity, location = item.get("quantity"), item.get("location_id")
                variant = by_variant.get(item.get("variant_id")) or by_sku.get(item.get("sku"))
                if variant is None or location not in self.locations:
                    return _error(False, 422, "The item or location does not exist.")
                if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                    return _error(False, 422, "quantity must be a whole number, 0 or more.")
                changes.append((variant, location, quantity))
            for variant, location, quantity in changes:  # all or nothing
                self.stock[(variant["id"], location)] = quantity
                self._touch_product(variant["product_id"])
                self.calls.writes.append((str(variant["id"]), str(quantity)))
            transaction = self._next["transaction"]
            self._next["transaction"] += 1
        return BigJSON({"transaction_id": f"emulated-{transaction:08d}"})

    # V3 webhooks

    async def _hooks(self, request: Request) -> Response:
        if request.method == "GET":
            with self._lock:
                found = [copy.deepcopy(self.hooks[h]) for h in sorted(self.hooks)]
            return _listing(request, found)
        try:
            body = await request.json()
        except ValueError:
            return _error(False, 400, "The request body is not JSON.")
        scope = body.get("scope") if isinstance(body, dict) else None
        destination = body.get("destination") if isinstance(body, dict) else None
        if not isinstance(scope, str) or not scope.startswith("store/"):
            return _error(False, 422, "JSON data is missing or invalid", scope="invalid")
        # BigCommerce wants https on port 443; loopback http is let through for the demo.
        if not isinstance(destination, str) or not re.match(r"https?://", destination):
            return _error(False, 422, "JSON data is missing or invalid", destination="invalid")
        with self._lock:
            hook_id = self._id("hook", None)
            stamp = int(self._clock().timestamp())
            hook = {
                "id": hook_id,
                "client_id": "emulated-client",
                "store_hash": self.store_hash,
                "scope": scope,
                "destination": destination,
                "headers": body.get("headers") or None,
                "is_active": body.get("is_active", True) is True,
                "created_at": stamp,
                "updated_at": stamp,
            }
            self.hooks[hook_id] = hook
        return BigJSON({"data": copy.deepcopy(hook), "meta": {}})

    async def _hook(self, request: Request) -> Response:
        hook_id = request.path_params["hook_id"]
        with self._lock:
            hook = (
                self.hooks.pop(hook_id, None)
                if request.method == "DELETE"
                else self.hooks.get(hook_id)
            )
        if hook is None:
            return _error(False, 404, f"Webhook with id [{hook_id}] not found")
        return BigJSON({"data": copy.deepcopy(hook), "meta": {}})


def _error(v2: bool, status: int, message: str, **errors: str) -> Response:
    if v2:
        return BigJSON([{"status": status, "message": message}], status_code=status)
    body = {"status": status, "title": message, "type": STATUS_TYPE, "errors": errors}
    return BigJSON(body, status_code=status)


def _paging(query: Mapping[str, str], *, v2: bool) -> tuple[int, int] | Response:
    try:
        page = int(query.get("page", "1"))
        limit = int(query.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        return _error(v2, 400, "page and limit are whole numbers.")
    if limit > MAX_LIMIT:
        return _error(v2, 413, "The limit parameter exceeded the maximum.")
    if page < 1 or limit < 1:
        return _error(v2, 400, "page and limit start at 1.")
    return page, limit


def _by_ids(records: list[dict[str, Any]], ids: str | None) -> list[dict[str, Any]]:
    if ids is None:
        return records
    wanted = {int(i) for i in ids.split(",") if i.strip().isdigit()}
    return [r for r in records if r["id"] in wanted]


def _listing(request: Request, records: list[dict[str, Any]]) -> Response:
    """One page of a V3 list, with ``meta.pagination`` as BigCommerce writes it."""
    paging = _paging(request.query_params, v2=False)
    if isinstance(paging, Response):
        return paging
    page, limit = paging
    total = len(records)
    pages = math.ceil(total / limit)
    chunk = records[(page - 1) * limit : page * limit]
    links = {"current": f"?page={page}&limit={limit}"}
    if page > 1:
        links["previous"] = f"?page={page - 1}&limit={limit}"
    if page < pages:
        links["next"] = f"?page={page + 1}&limit={limit}"
    pagination = {
        "total": total,
        "count": len(chunk),
        "per_page": limit,
        "current_page": page,
        "total_pages": pages,
        "links": links,
    }
    return BigJSON({"data": chunk, "meta": {"pagination": pagination}})
