"""Shopify's GraphQL Admin API for one store, as documented (shopify.dev, "GraphQL Admin API
rate limits", "Shopify API limits"), for the operations revloop sends.

``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token`` (a wrong or missing
token: 401 and nothing served). The query is parsed and validated against a small subset of the
Admin schema with graphql-core, so a field the subset lacks fails as Shopify fails an unknown
field (``Field 'x' doesn't exist on type 'Y'``, code ``undefinedField``).

Cost and throttling: the requested cost is computed before running (a leaf 0, an object or list
of objects 1 plus its selections, a connection 2 plus ``first`` times one node, a list with
``first`` that many objects, a mutation 10); the actual cost after, from what was returned. A
leaky bucket of ``maximum_available`` points refills at ``restore_rate`` a second; a query is
run only if the bucket holds its requested cost, and the difference to the actual cost is
refunded. A query the bucket cannot pay is answered HTTP 200 with ``THROTTLED`` (no data), one
costing more than 1000 with ``MAX_COST_EXCEEDED``; both count in ``calls.violations``. Every
answer carries ``extensions.cost``.

Connections take ``first`` (1 to 250; ``first`` or ``last`` is required) and ``after``;
cursors are opaque (base64 of the last id and sort value, as Shopify's are), so a cursor stays
valid when its record changes. ``query`` is read by Shopify's search syntax (terms
``name:value`` separated by whitespace, ``AND`` between them optional; a value bare, with a
backslash escaping any character, or in single or double quotes, a backslash escaping any
character inside): it takes ``updated_at`` comparisons (``>=``, ``>``, ``<=``, ``<``), and on
``productVariants`` ``sku:`` equality (case-insensitive, as Shopify's search is); ``OR``,
negation and parentheses are refused. ``sortKey`` ``UPDATED_AT`` or ``ID``. Only forward paging
is emulated.

Seeding takes the REST/webhook JSON shapes (``add_product``, ``add_order``, ``add_customer``,
``set_level``) and the GraphQL nodes are built from them. Times the seed leaves out are taken
from a deterministic clock (``start`` plus one second per use), which also stamps writes.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    build_schema,
    execute_sync,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common import Emulator

MAX_QUERY_COST = 1000
MAX_PAGE = 250
MUTATION_COST = 10
_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
_UNKNOWN_FIELD = re.compile(r"Cannot query field '(\w+)' on type '(\w+)'")
_FIELD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*):(>=|<=|>|<)?")
_RATE_DOCS = "https://shopify.dev/api/usage/rate-limits"


def _connection_types(*names: str) -> str:
    return "\n".join(
        f"type {n}Connection {{ nodes: [{n}!]! edges: [{n}Edge!]! pageInfo: PageInfo! }}\n"
        f"type {n}Edge {{ cursor: String! node: {n}! }}"
        for n in names
    )


_PAGING = "first: Int, after: String, last: Int, before: String, reverse: Boolean"

SDL = f"""
scalar DateTime
scalar Decimal
scalar Money
scalar URL
scalar UnsignedInt64
directive @idempotent(key: String!) on FIELD

enum ProductSortKeys {{ ID UPDATED_AT CREATED_AT TITLE }}
enum ProductVariantSortKeys {{ ID UPDATED_AT SKU }}
enum OrderSortKeys {{ ID UPDATED_AT CREATED_AT PROCESSED_AT }}
enum CustomerSortKeys {{ ID UPDATED_AT CREATED_AT NAME }}
enum LocationSortKeys {{ ID NAME }}
enum WebhookSubscriptionTopic {{
  ORDERS_CREATE ORDERS_UPDATED ORDERS_PAID ORDERS_CANCELLED ORDERS_FULFILLED REFUNDS_CREATE
  PRODUCTS_CREATE PRODUCTS_UPDATE PRODUCTS_DELETE INVENTORY_LEVELS_UPDATE
  CUSTOMERS_CREATE CUSTOMERS_UPDATE CUSTOMERS_DELETE APP_UNINSTALLED
}}

type PageInfo {{
  hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String
}}
type MoneyV2 {{ amount: Decimal! currencyCode: String! }}
type MoneyBag {{ shopMoney: MoneyV2! presentmentMoney: MoneyV2! }}
type Attribute {{ key: String! value: String }}

type Shop {{
  id: ID! name: String! myshopifyDomain: String! currencyCode: String! ianaTimezone: String!
}}
type Product {{
  id: ID! title: String! handle: String! status: String! vendor: String! productType: String!
  tags: [String!]! createdAt: DateTime! updatedAt: DateTime!
  variants({_PAGING}): ProductVariantConnection!
}}
type ProductVariant {{
  id: ID! title: String! sku: String price: Money! inventoryQuantity: Int
  createdAt: DateTime! updatedAt: DateTime! product: Product! inventoryItem: InventoryItem!
}}
type InventoryItem {{
  id: ID! sku: String tracked: Boolean! createdAt: DateTime! updatedAt: DateTime!
  inventoryLevels({_PAGING}, query: String): InventoryLevelConnection!
  inventoryLevel(locationId: ID!): InventoryLevel
}}
type Location {{
  id: ID! name: String! isActive: Boolean!
  inventoryLevels({_PAGING}, query: String): InventoryLevelConnection!
}}
type InventoryLevel {{
  id: ID! createdAt: DateTime! updatedAt: DateTime! item: InventoryItem! location: Location!
  quantities(names: [String!]!): [InventoryQuantity!]!
}}
type InventoryQuantity {{ id: ID! name: String! quantity: Int! updatedAt: DateTime }}
type CustomerEmailAddress {{ emailAddress: String marketingState: String! }}
type Customer {{
  id: ID! email: String firstName: String lastName: String
  defaultEmailAddress: CustomerEmailAddress numberOfOrders: UnsignedInt64!
  amountSpent: MoneyV2! tags: [String!]! createdAt: DateTime! updatedAt: DateTime!
}}
type CustomerVisit {{ landingPage: URL referrerUrl: URL source: String }}
type CustomerJourneySummary {{ firstVisit: CustomerVisit lastVisit: CustomerVisit }}
type LineItem {{
  id: ID! name: String! title: String! sku: String quantity: Int!
  variant: ProductVariant product: Product
  originalUnitPriceSet: MoneyBag! totalDiscountSet: MoneyBag!
}}
type OrderTransaction {{
  id: ID! kind: String! status: String! processedAt: DateTime createdAt: DateTime!
  amountSet: MoneyBag!
}}
type RefundLineItem {{
  id: ID! quantity: Int! lineItem: LineItem! subtotalSet: MoneyBag! totalTaxSet: MoneyBag!
}}
type Refund {{
  id: ID! createdAt: DateTime note: String
  transactions({_PAGING}): OrderTransactionConnection!
  refundLineItems({_PAGING}): RefundLineItemConnection!
}}
type Order {{
  id: ID! name: String! email: String currencyCode: String! createdAt: DateTime!
  updatedAt: DateTime! processedAt: DateTime! cancelledAt: DateTime cancelReason: String
  displayFinancialStatus: String displayFulfillmentStatus: String! sourceName: String
  note: String tags: [String!]! customAttributes: [Attribute!]! customer: Customer
  customerJourneySummary: CustomerJourneySummary
  subtotalPriceSet: MoneyBag totalPriceSet: MoneyBag! totalTaxSet: MoneyBag
  totalDiscountsSet: MoneyBag totalShippingPriceSet: MoneyBag!
  lineItems({_PAGING}): LineItemConnection!
  refunds(first: Int): [Refund!]!
}}
type WebhookSubscription {{
  id: ID! topic: WebhookSubscriptionTopic! uri: String! callbackUrl: URL!
  format: String! createdAt: DateTime! updatedAt: DateTime!
}}
type UserError {{ field: [String!] message: String! }}
type InventorySetQuantitiesUserError {{ code: String field: [String!] message: String! }}
type InventoryChange {{ name: String! delta: Int! quantityAfterChange: Int }}
type InventoryAdjustmentGroup {{
  id: ID! reason: String! createdAt: DateTime! changes: [InventoryChange!]!
}}
type WebhookSubscriptionCreatePayload {{
  userErrors: [UserError!]! webhookSubscription: WebhookSubscription
}}
type WebhookSubscriptionDeletePayload {{
  deletedWebhookSubscriptionId: ID userErrors: [UserError!]!
}}
type InventorySetQuantitiesPayload {{
  inventoryAdjustmentGroup: InventoryAdjustmentGroup
  userErrors: [InventorySetQuantitiesUserError!]!
}}
input WebhookSubscriptionInput {{
  uri: String callbackUrl: URL format: String includeFields: [String!] filter: String
}}
input InventoryQuantityInput {{
  inventoryItemId: ID! locationId: ID! quantity: Int! compareQuantity: Int changeFromQuantity: Int
}}
input InventorySetQuantitiesInput {{
  name: String! reason: String! referenceDocumentUri: String ignoreCompareQuantity: Boolean
  quantities: [InventoryQuantityInput!]!
}}

{
    _connection_types(
        "Product",
        "ProductVariant",
        "Order",
        "Customer",
        "Location",
        "InventoryLevel",
        "LineItem",
        "OrderTransaction",
        "RefundLineItem",
        "WebhookSubscription",
    )
}

type QueryRoot {{
  shop: Shop!
  products({_PAGING}, query: String, sortKey: ProductSortKeys): ProductConnection!
  product(id: ID!): Product
  productVariants({_PAGING}, query: String, sortKey: ProductVariantSortKeys):
    ProductVariantConnection!
  productVariant(id: ID!): ProductVariant
  orders({_PAGING}, query: String, sortKey: OrderSortKeys): OrderConnection!
  order(id: ID!): Order
  customers({_PAGING}, query: String, sortKey: CustomerSortKeys): CustomerConnection!
  customer(id: ID!): Customer
  locations({_PAGING}, query: String, sortKey: LocationSortKeys): LocationConnection!
  location(id: ID!): Location
  inventoryItem(id: ID!): InventoryItem
  webhookSubscriptions({_PAGING}, topics: [WebhookSubscriptionTopic!]):
    WebhookSubscriptionConnection!
}}
type Mutation {{
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!, webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
  webhookSubscriptionDelete(id: ID!): WebhookSubscriptionDeletePayload
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
}}
schema {{ query: QueryRoot mutation: Mutation }}
"""

SCHEMA: GraphQLSchema = build_schema(SDL)

Node = dict[str, Any]
Key = tuple[float, int]


def gid(kind: str, resource_id: Any) -> str:
    return f"gid://shopify/{kind}/{resource_id}"


def _id_of(value: Any, kind: str) -> str | None:
    """The numeric id of ``gid://shopify/{kind}/123`` (None if it names another type)."""
    text = str(value)
    prefix = f"gid://shopify/{kind}/"
    if not text.startswith(prefix):
        return None
    tail = text.removeprefix(prefix).split("?", 1)[0]
    return tail if tail.isdigit() else None


def _instant(value: Any) -> datetime:
    when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _utc(value: Any) -> str | None:
    if value is None:
        return None
    return _instant(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(t) for t in value]
    return [t.strip() for t in str(value or "").split(",") if t.strip()]


def _money(amount: Any, currency: str) -> Node:
    return {"amount": str(amount), "currencyCode": currency}


def _bag(money_set: Any, plain: Any, currency: str) -> Node | None:
    """A MoneyBag from a REST ``*_set`` (or the plain amount in the order's currency)."""
    if isinstance(money_set, Mapping) and money_set.get("shop_money"):
        shop = money_set["shop_money"]
        presentment = money_set.get("presentment_money") or shop
        return {
            "shopMoney": _money(shop["amount"], str(shop.get("currency_code") or currency)),
            "presentmentMoney": _money(
                presentment["amount"], str(presentment.get("currency_code") or currency)
            ),
        }
    if plain is None:
        return None
    return {"shopMoney": _money(plain, currency), "presentmentMoney": _money(plain, currency)}


def _cursor(key: Key) -> str:
    raw = json.dumps({"last_id": key[1], "last_value": key[0]}).encode()
    return base64.b64encode(raw).decode()


def _uncursor(cursor: str) -> Key:
    try:
        raw = json.loads(base64.b64decode(cursor.encode(), validate=True))
        return float(raw["last_value"]), int(raw["last_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphQLError(
            "Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}
        ) from exc


def _bad_search(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_REQUEST"})


def _search_value(query: str, at: int) -> tuple[str, int]:
    """The value starting at ``at`` (bare or quoted, backslash escapes undone) and where the
    term ends."""
    quote = query[at] if at < len(query) and query[at] in "'\"" else None
    if quote:
        at += 1
    chars: list[str] = []
    while at < len(query):
        char = query[at]
        if char == "\\" and at + 1 < len(query):
            chars.append(query[at + 1])
            at += 2
            continue
        if quote and char == quote:
            return "".join(chars), at + 1
        if not quote and char.isspace():
            break
        if not quote and char in "()":
            raise _bad_search("The emulator does not group search terms.")
        chars.append(char)
        at += 1
    if quote:
        raise _bad_search("Unterminated quoted string in the search query.")
    return "".join(chars), at


def search_terms(query: str | None) -> list[tuple[str, str, str]]:
    """The ``(field, comparator, value)`` terms of a search query (all ANDed)."""
    text, at, terms = query or "", 0, []
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        field = _FIELD.match(text, at)
        if field is None:
            word, at = _search_value(text, at)
            if word == "AND":
                continue
            raise _bad_search(f"The emulator searches by field only, not {word!r}.")
        value, at = _search_value(text, field.end())
        terms.append((field.group(1), field.group(2) or "", value))
    return terms


Test = Callable[[Mapping[str, Any]], bool]
_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "": lambda t, b: t >= b,  # a date equality reads as "from then on"
    ">=": lambda t, b: t >= b,
    ">": lambda t, b: t > b,
    "<=": lambda t, b: t <= b,
    "<": lambda t, b: t < b,
}


def _when(bound: datetime, compare: Callable[[datetime, datetime], bool]) -> Test:
    def test(record: Mapping[str, Any]) -> bool:
        at = record.get("updated_at")
        return bool(at) and compare(_instant(at), bound)

    return test


def _equal(field: str, wanted: str) -> Test:
    def test(record: Mapping[str, Any]) -> bool:
        return str(record.get(field) or "").casefold() == wanted.casefold()

    return test


def _filter(query: str | None, fields: tuple[str, ...] = ()) -> Test:
    """The search query as a test on a REST record: ``updated_at`` comparisons, and equality
    on the text ``fields`` allowed (``sku``)."""
    tests: list[Test] = []
    for field, op, value in search_terms(query):
        if field == "updated_at":
            try:
                bound = _instant(value)
            except ValueError as exc:
                raise _bad_search(f"Invalid date {value!r} in the search query.") from exc
            tests.append(_when(bound, _COMPARE[op]))
        elif field in fields and not op:
            tests.append(_equal(field, value))
        else:
            allowed = ", ".join(("updated_at", *fields))
            raise _bad_search(f"The emulator filters on {allowed} only, not {field!r}.")
    return lambda record: all(test(record) for test in tests)


def connection(entries: list[tuple[Key, Any]], args: Mapping[str, Any]) -> Node:
    """One page of ``entries`` (sorted by key) as a Shopify connection."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError(
            "you must provide one of first or last", extensions={"code": "BAD_REQUEST"}
        )
    if last is not None or args.get("before") or args.get("reverse"):
        raise GraphQLError(
            "The emulator pages forward only (first/after).", extensions={"code": "BAD_REQUEST"}
        )
    assert first is not None
    if not 0 <= first <= MAX_PAGE:
        raise GraphQLError(
            f"The first argument must be between 0 and {MAX_PAGE}.",
            extensions={"code": "BAD_REQUEST"},
        )
    if args.get("after"):
        after = _uncursor(str(args["after"]))
        entries = [e for e in entries if e[0] > after]
    page = entries[:first]
    edges = [{"cursor": _cursor(key), "node": node} for key, node in page]
    return {
        "nodes": [node for _, node in page],
        "edges": edges,
        "pageInfo": {
            "hasNextPage": len(entries) > first,
            "hasPreviousPage": bool(args.get("after")),
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _nullable(type_: GraphQLType) -> GraphQLType:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


class Bucket:
    """Shopify's leaky bucket of query cost."""

    def __init__(self, maximum: float, rate: float) -> None:
        self.maximum, self.rate = maximum, rate
        self._available, self._at = maximum, time.monotonic()

    def available(self, now: float) -> float:
        self._available = min(self.maximum, self._available + self.rate * (now - self._at))
        self._at = now
        return self._available

    def take(self, points: float, now: float) -> bool:
        if points > self.available(now):
            return False
        self._available -= points
        return True

    def refund(self, points: float) -> None:
        self._available = min(self.maximum, self._available + points)

    def status(self, now: float) -> Node:
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": float(int(self.available(now))),
            "restoreRate": float(self.rate),
        }


class ShopifyEmulator(Emulator):
    """One Shopify store's GraphQL Admin API."""

    def __init__(
        self,
        shop_domain: str,
        token: str,
        *,
        maximum_available: int = 1000,
        restore_rate: float = 50.0,
        shop_name: str = "Emulated Shop",
        currency: str = "USD",
        timezone: str = "America/New_York",
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        retry_after_seconds: int = 1,
    ) -> None:
        super().__init__()
        self.shop_domain, self.token = shop_domain, token
        self.shop_name, self.currency, self.timezone = shop_name, currency, timezone
        self.retry_after_seconds = retry_after_seconds
        self.bucket = Bucket(maximum_available, restore_rate)
        self._clock, self._ids = start, 900_000_000
        self.products: dict[str, Node] = {}
        self.orders: dict[str, Node] = {}
        self.customers: dict[str, Node] = {}
        self.locations: dict[str, str] = {}
        """Location id → name."""
        self.levels: dict[tuple[str, str], Node] = {}
        """(inventory item id, location id) → {available, created_at, updated_at, id}."""
        self.webhooks: dict[str, Node] = {}
        """Subscription id → {topic (enum), uri, created_at}."""
        self._idempotent: dict[str, Node] = {}
        self.costs: list[tuple[int, int]] = []
        """(requested, actual) cost of every query run, in order."""
        self.app_credentials: tuple[str, str] | None = None
        """(client id, client secret) of the app whose OAuth codes this shop grants."""
        self._codes: set[str] = set()

    # -- seeding ------------------------------------------------------------------------------

    def tick(self) -> str:
        """The emulator's next instant (one second after the last), ISO in UTC."""
        self._clock += timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _new_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    def _seen(self, stamp: Any) -> str:
        # The clock never runs behind a seeded time, so a write is always the latest change.
        self._clock = max(self._clock, _instant(stamp).astimezone(UTC))
        return str(stamp)

    def _stamp(self, record: Mapping[str, Any]) -> Node:
        copy = json.loads(json.dumps(dict(record)))
        copy["id"] = str(copy.get("id") or self._new_id())
        if copy.get("updated_at"):
            self._seen(copy["updated_at"])
        else:
            copy["updated_at"] = self.tick()
        copy.setdefault("created_at", copy["updated_at"])
        return dict(copy)

    def add_product(self, product: Mapping[str, Any]) -> str:
        """A product as products/create carries it (with variants); returns its id. Missing
        ids (product, variants, inventory items) and times are assigned."""
        with self._lock:
            record = self._stamp(product)
            for variant in record.setdefault("variants", []):
                variant["id"] = str(variant.get("id") or self._new_id())
                variant["product_id"] = record["id"]
                variant["inventory_item_id"] = str(
                    variant.get("inventory_item_id") or self._new_id()
                )
                variant.setdefault("created_at", record["created_at"])
                variant.setdefault("updated_at", record["updated_at"])
            self.products[record["id"]] = record
            return str(record["id"])

    def add_order(self, order: Mapping[str, Any]) -> str:
        """An order as orders/create carries it; again with the same id to update it."""
        with self._lock:
            record = self._stamp(order)
            self.orders[record["id"]] = record
            return str(record["id"])

    def add_customer(self, customer: Mapping[str, Any]) -> str:
        with self._lock:
            record = self._stamp(customer)
            self.customers[record["id"]] = record
            return str(record["id"])

    def add_location(self, location_id: str, name: str | None = None) -> None:
        with self._lock:
            self.locations[str(location_id)] = name or f"Location {location_id}"

    def set_level(self, level: Mapping[str, Any]) -> None:
        """An inventory level as inventory_levels/update carries it."""
        with self._lock:
            item, location = str(level["inventory_item_id"]), str(level["location_id"])
            self.locations.setdefault(location, f"Location {location}")
            self._write_level(item, location, level.get("available"), level.get("updated_at"))

    def _write_level(self, item: str, location: str, available: Any, at: Any = None) -> None:
        old = self.levels.get((item, location))
        stamp = self._seen(at) if at else self.tick()
        self.levels[(item, location)] = {
            "id": old["id"] if old else self._new_id(),
            "available": None if available is None else int(available),
            "created_at": old["created_at"] if old else stamp,
            "updated_at": stamp,
        }
        for product in self.products.values():
            for variant in product.get("variants", []):
                if str(variant.get("inventory_item_id")) == item:
                    variant["inventory_quantity"] = sum(
                        int(lv["available"] or 0) for (i, _), lv in self.levels.items() if i == item
                    )

    def level(self, item_id: str, location_id: str) -> int | None:
        found = self.levels.get((str(item_id), str(location_id)))
        return None if found is None else found["available"]

    # -- GraphQL nodes from the REST records --------------------------------------------------

    def _keyed(
        self,
        records: list[Node],
        args: Mapping[str, Any],
        build: Callable[[Node], Node],
        fields: tuple[str, ...] = (),
    ) -> Node:
        matches = _filter(args.get("query"), fields)
        by_update = args.get("sortKey") == "UPDATED_AT"
        entries: list[tuple[Key, Any]] = []
        for record in records:
            if not matches(record):
                continue
            value = _instant(record["updated_at"]).timestamp() if by_update else 0.0
            entries.append(((value, int(record["id"])), record))
        entries.sort(key=lambda e: e[0])
        page = connection(entries, args)
        # Nodes are built only for the page.
        nodes = [build(r) for r in page["nodes"]]
        page["nodes"] = nodes
        page["edges"] = [{**e, "node": n} for e, n in zip(page["edges"], nodes, strict=True)]
        return page

    def _indexed(self, nodes: list[Node], args: Mapping[str, Any]) -> Node:
        return connection([((float(i), i), n) for i, n in enumerate(nodes)], args)

    def _variant_node(self, variant: Node) -> Node:
        product_id = str(variant["product_id"])
        return {
            "id": gid("ProductVariant", variant["id"]),
            "title": variant.get("title") or "Default Title",
            "sku": variant.get("sku"),
            "price": str(variant.get("price") or "0.00"),
            "inventoryQuantity": variant.get("inventory_quantity"),
            "createdAt": _utc(variant.get("created_at")),
            "updatedAt": _utc(variant.get("updated_at")),
            "product": lambda info, **_: self._product_node(self.products[product_id]),
            "inventoryItem": lambda info, **_: self._item_node(
                str(variant["inventory_item_id"]), variant
            ),
        }

    def _product_node(self, product: Node) -> Node:
        variants = [self._variant_node(v) for v in product.get("variants", [])]
        return {
            "id": gid("Product", product["id"]),
            "title": product.get("title") or "",
            "handle": product.get("handle") or "",
            "status": str(product.get("status") or "active").upper(),
            "vendor": product.get("vendor") or "",
            "productType": product.get("product_type") or "",
            "tags": _tags(product.get("tags")),
            "createdAt": _utc(product.get("created_at")),
            "updatedAt": _utc(product.get("updated_at")),
            "variants": lambda info, **a: self._indexed(variants, a),
        }

    def _item_node(self, item: str, variant: Node | None = None) -> Node:
        if variant is None:
            variant = next(
                (
                    v
                    for p in self.products.values()
                    for v in p.get("variants", [])
                    if str(v.get("inventory_item_id")) == item
                ),
                {},
            )
        levels = sorted(
            ((loc, lv) for (i, loc), lv in self.levels.items() if i == item),
            key=lambda e: int(e[0]),
        )

        def one(info: Any, locationId: str) -> Node | None:
            location = _id_of(locationId, "Location")
            found = self.levels.get((item, location or ""))
            return None if found is None else self._level_node(item, str(location), found)

        return {
            "id": gid("InventoryItem", item),
            "sku": variant.get("sku"),
            # REST: ``inventory_management`` null means Shopify does not track the stock.
            "tracked": variant.get("inventory_management", "shopify") is not None,
            "createdAt": _utc(variant.get("created_at") or self._clock.isoformat()),
            "updatedAt": _utc(variant.get("updated_at") or self._clock.isoformat()),
            "inventoryLevels": lambda info, **a: self._levels_connection(
                [((float(loc), int(lv["id"])), (item, loc, lv)) for loc, lv in levels], a
            ),
            "inventoryLevel": one,
        }

    def _levels_connection(
        self, entries: list[tuple[Key, tuple[str, str, Node]]], args: Mapping[str, Any]
    ) -> Node:
        matches = _filter(args.get("query"))
        kept = [e for e in entries if matches(e[1][2])]
        page = connection(kept, args)
        nodes = [self._level_node(*triple) for triple in page["nodes"]]
        page["nodes"] = nodes
        page["edges"] = [{**e, "node": n} for e, n in zip(page["edges"], nodes, strict=True)]
        return page

    def _level_node(self, item: str, location: str, level: Node) -> Node:
        def quantities(info: Any, names: list[str]) -> list[Node]:
            return [
                {
                    "id": f"gid://shopify/InventoryQuantity/{level['id']}?name={name}",
                    "name": name,
                    "quantity": int(level["available"] or 0)
                    if name in ("available", "on_hand")
                    else 0,
                    "updatedAt": _utc(level["updated_at"]),
                }
                for name in names
            ]

        return {
            "id": f"gid://shopify/InventoryLevel/{level['id']}?inventory_item_id={item}",
            "createdAt": _utc(level["created_at"]),
            "updatedAt": _utc(level["updated_at"]),
            "item": lambda info, **_: self._item_node(item),
            "location": lambda info, **_: self._location_node(location),
            "quantities": quantities,
        }

    def _location_node(self, location: str) -> Node:
        levels = sorted(
            ((item, lv) for (item, loc), lv in self.levels.items() if loc == location),
            key=lambda e: int(e[1]["id"]),
        )
        return {
            "id": gid("Location", location),
            "name": self.locations.get(location, f"Location {location}"),
            "isActive": True,
            "inventoryLevels": lambda info, **a: self._levels_connection(
                [((float(lv["id"]), int(lv["id"])), (item, location, lv)) for item, lv in levels],
                a,
            ),
        }

    def _customer_node(self, customer: Node) -> Node:
        email = customer.get("email")
        consent = (customer.get("email_marketing_consent") or {}).get("state")
        state = str(consent).upper() if consent else None
        if state is None:
            state = "SUBSCRIBED" if customer.get("accepts_marketing") else "NOT_SUBSCRIBED"
        return {
            "id": gid("Customer", customer["id"]),
            "email": email,
            "firstName": customer.get("first_name"),
            "lastName": customer.get("last_name"),
            "defaultEmailAddress": {"emailAddress": email, "marketingState": state}
            if email
            else None,
            "numberOfOrders": str(customer.get("orders_count") or 0),
            "amountSpent": _money(
                customer.get("total_spent") or "0.00", customer.get("currency") or self.currency
            ),
            "tags": _tags(customer.get("tags")),
            "createdAt": _utc(customer.get("created_at") or customer.get("updated_at")),
            "updatedAt": _utc(customer.get("updated_at")),
        }

    def _line_node(self, line: Node, currency: str) -> Node:
        discount = line.get("total_discount")
        if discount is None:
            discount = str(
                sum(float(a.get("amount", 0)) for a in line.get("discount_allocations") or [])
            )
        variant_id, product_id = line.get("variant_id"), line.get("product_id")
        return {
            "id": gid("LineItem", line["id"]),
            "name": line.get("name") or line.get("title") or "",
            "title": line.get("title") or line.get("name") or "",
            "sku": line.get("sku"),
            "quantity": int(line.get("quantity") or 0),
            "variant": {"id": gid("ProductVariant", variant_id)} if variant_id else None,
            "product": {"id": gid("Product", product_id)} if product_id else None,
            "originalUnitPriceSet": _bag(line.get("price_set"), line.get("price", "0"), currency),
            "totalDiscountSet": _bag(line.get("total_discount_set"), discount, currency),
        }

    def _refund_node(self, refund: Node, lines: Mapping[str, Node], currency: str) -> Node:
        transactions = [
            {
                "id": gid("OrderTransaction", t.get("id") or 0),
                "kind": str(t.get("kind") or "refund").upper(),
                "status": str(t.get("status") or "success").upper(),
                "processedAt": _utc(t.get("processed_at")),
                "createdAt": _utc(t.get("created_at") or refund.get("created_at")),
                "amountSet": _bag(None, t.get("amount", "0"), str(t.get("currency") or currency)),
            }
            for t in refund.get("transactions") or []
        ]
        refund_lines = [
            {
                "id": gid("RefundLineItem", r.get("id") or 0),
                "quantity": int(r.get("quantity") or 0),
                "lineItem": lines.get(str(r.get("line_item_id")))
                or {"id": gid("LineItem", r.get("line_item_id"))},
                "subtotalSet": _bag(r.get("subtotal_set"), r.get("subtotal", "0"), currency),
                "totalTaxSet": _bag(r.get("total_tax_set"), r.get("total_tax", "0"), currency),
            }
            for r in refund.get("refund_line_items") or []
        ]
        return {
            "id": gid("Refund", refund["id"]),
            "createdAt": _utc(refund.get("created_at")),
            "note": refund.get("note"),
            "transactions": lambda info, **a: self._indexed(transactions, a),
            "refundLineItems": lambda info, **a: self._indexed(refund_lines, a),
        }

    def _order_node(self, order: Node) -> Node:
        currency = str(order.get("currency") or self.currency)
        lines = [self._line_node(line, currency) for line in order.get("line_items") or []]
        by_id = {str(line["id"]).rsplit("/", 1)[-1]: line for line in lines}
        refunds = [self._refund_node(r, by_id, currency) for r in order.get("refunds") or []]
        customer = order.get("customer")
        if customer:
            customer = self.customers.get(str(customer.get("id")), customer)
        shipping = _bag(
            order.get("total_shipping_price_set"),
            f"{sum(float(s.get('price', 0)) for s in order.get('shipping_lines') or []):.2f}",
            currency,
        )
        fulfillment = {
            "fulfilled": "FULFILLED",
            "partial": "PARTIALLY_FULFILLED",
            "restocked": "RESTOCKED",
        }.get(str(order.get("fulfillment_status")), "UNFULFILLED")
        landing, referrer = order.get("landing_site"), order.get("referring_site")

        def some_refunds(info: Any, first: int | None = None) -> list[Node]:
            return refunds if first is None else refunds[:first]

        def plain(name: str) -> Node | None:
            return _bag(order.get(f"{name}_set"), order.get(name), currency)

        return {
            "id": gid("Order", order["id"]),
            "name": order.get("name") or f"#{order.get('order_number') or order['id']}",
            "email": order.get("email") or order.get("contact_email"),
            "currencyCode": currency,
            "createdAt": _utc(order.get("created_at")),
            "updatedAt": _utc(order.get("updated_at")),
            "processedAt": _utc(order.get("processed_at") or order.get("created_at")),
            "cancelledAt": _utc(order.get("cancelled_at")),
            "cancelReason": str(order["cancel_reason"]).upper()
            if order.get("cancel_reason")
            else None,
            "displayFinancialStatus": str(order.get("financial_status") or "pending").upper(),
            "displayFulfillmentStatus": fulfillment,
            "sourceName": order.get("source_name"),
            "note": order.get("note"),
            "tags": _tags(order.get("tags")),
            "customAttributes": [
                {"key": str(a.get("name")), "value": a.get("value")}
                for a in order.get("note_attributes") or []
            ],
            "customer": self._customer_node(customer) if customer else None,
            "customerJourneySummary": {
                "firstVisit": {"landingPage": landing, "referrerUrl": referrer, "source": None}
            }
            if landing or referrer
            else None,
            "subtotalPriceSet": plain("subtotal_price"),
            "totalPriceSet": plain("total_price") or _bag(None, "0.00", currency),
            "totalTaxSet": plain("total_tax"),
            "totalDiscountsSet": plain("total_discounts"),
            "totalShippingPriceSet": shipping,
            "lineItems": lambda info, **a: self._indexed(lines, a),
            "refunds": some_refunds,
        }

    def _webhook_node(self, webhook_id: str, webhook: Node) -> Node:
        return {
            "id": gid("WebhookSubscription", webhook_id),
            "topic": webhook["topic"],
            "uri": webhook["uri"],
            "callbackUrl": webhook["uri"],
            "format": "JSON",
            "createdAt": webhook["created_at"],
            "updatedAt": webhook["created_at"],
        }

    # -- root fields --------------------------------------------------------------------------

    def _root(self) -> Node:
        def by_id(table: dict[str, Node], kind: str, build: Callable[[Node], Node]) -> Any:
            def resolve(info: Any, id: str) -> Node | None:
                found = table.get(_id_of(id, kind) or "")
                return None if found is None else build(found)

            return resolve

        def variants() -> list[Node]:
            return [v for p in self.products.values() for v in p.get("variants", [])]

        def variant(info: Any, id: str) -> Node | None:
            wanted = _id_of(id, "ProductVariant")
            found = next((v for v in variants() if str(v["id"]) == wanted), None)
            return None if found is None else self._variant_node(found)

        def locations(info: Any, **args: Any) -> Node:
            entries = [
                ((float(loc), int(loc)), loc)
                for loc in sorted(self.locations, key=int)
                if args.get("sortKey") in (None, "ID", "NAME")
            ]
            page = connection(entries, args)
            nodes = [self._location_node(loc) for loc in page["nodes"]]
            page["nodes"] = nodes
            page["edges"] = [{**e, "node": n} for e, n in zip(page["edges"], nodes, strict=True)]
            return page

        def location(info: Any, id: str) -> Node | None:
            found = _id_of(id, "Location")
            return self._location_node(found) if found in self.locations else None

        def item(info: Any, id: str) -> Node | None:
            found = _id_of(id, "InventoryItem") or ""
            known = any(i == found for i, _ in self.levels) or any(
                str(v.get("inventory_item_id")) == found for v in variants()
            )
            return self._item_node(found) if known else None

        def webhooks(info: Any, **args: Any) -> Node:
            topics = args.get("topics")
            entries = [
                ((0.0, int(w)), self._webhook_node(w, hook))
                for w, hook in sorted(self.webhooks.items(), key=lambda e: int(e[0]))
                if not topics or hook["topic"] in topics
            ]
            return connection(entries, args)

        return {
            "shop": {
                "id": gid("Shop", 1),
                "name": self.shop_name,
                "myshopifyDomain": self.shop_domain,
                "currencyCode": self.currency,
                "ianaTimezone": self.timezone,
            },
            "products": lambda info, **a: self._keyed(
                list(self.products.values()), a, self._product_node
            ),
            "product": by_id(self.products, "Product", self._product_node),
            "productVariants": lambda info, **a: self._keyed(
                variants(), a, self._variant_node, ("sku",)
            ),
            "productVariant": variant,
            "orders": lambda info, **a: self._keyed(
                list(self.orders.values()), a, self._order_node
            ),
            "order": by_id(self.orders, "Order", self._order_node),
            "customers": lambda info, **a: self._keyed(
                list(self.customers.values()), a, self._customer_node
            ),
            "customer": by_id(self.customers, "Customer", self._customer_node),
            "locations": locations,
            "location": location,
            "inventoryItem": item,
            "webhookSubscriptions": webhooks,
            "webhookSubscriptionCreate": self._webhook_create,
            "webhookSubscriptionDelete": self._webhook_delete,
            "inventorySetQuantities": self._set_quantities,
        }

    # -- mutations ----------------------------------------------------------------------------

    def _webhook_create(self, info: Any, topic: str, webhookSubscription: Node) -> Node:
        uri = webhookSubscription.get("uri") or webhookSubscription.get("callbackUrl") or ""
        field = "uri" if webhookSubscription.get("uri") else "callbackUrl"
        if not re.match(r"^https?://[^\s/]+", str(uri)):
            return {
                "webhookSubscription": None,
                "userErrors": [
                    {"field": ["webhookSubscription", field], "message": "Address is invalid"}
                ],
            }
        if any(h["topic"] == topic and h["uri"] == uri for h in self.webhooks.values()):
            return {
                "webhookSubscription": None,
                "userErrors": [
                    {
                        "field": ["webhookSubscription", field],
                        "message": "Address for this topic has already been taken",
                    }
                ],
            }
        webhook_id = self._new_id()
        self.webhooks[webhook_id] = {"topic": topic, "uri": uri, "created_at": self.tick()}
        self.calls.writes.append((webhook_id, f"webhook {topic}"))
        return {
            "webhookSubscription": self._webhook_node(webhook_id, self.webhooks[webhook_id]),
            "userErrors": [],
        }

    def _webhook_delete(self, info: Any, id: str) -> Node:
        found = _id_of(id, "WebhookSubscription")
        if found is None or found not in self.webhooks:
            return {
                "deletedWebhookSubscriptionId": None,
                "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}],
            }
        del self.webhooks[found]
        self.calls.writes.append((found, "webhook deleted"))
        return {"deletedWebhookSubscriptionId": id, "userErrors": []}

    def _set_quantities(self, info: Any, input: Node) -> Node:
        key = _directive_key(info, "idempotent")
        if key is None:
            raise GraphQLError(
                "The @idempotent directive is required for this mutation.",
                extensions={"code": "BAD_REQUEST"},
            )
        if key in self._idempotent:
            return self._idempotent[key]
        errors: list[Node] = []
        if input["name"] not in ("available", "on_hand"):
            errors.append(
                {
                    "code": "INVALID_NAME",
                    "field": ["input", "name"],
                    "message": "The quantity name must be either 'available' or 'on_hand'.",
                }
            )
        changes: list[tuple[str, str, int]] = []
        for n, quantity in enumerate(input["quantities"]):
            where = ["input", "quantities", str(n)]
            if "changeFromQuantity" not in quantity:
                errors.append(
                    {
                        "code": "CHANGE_FROM_QUANTITY_REQUIRED",
                        "field": [*where, "changeFromQuantity"],
                        "message": "changeFromQuantity is required (null opts out).",
                    }
                )
                continue
            item = _id_of(quantity["inventoryItemId"], "InventoryItem") or ""
            location = _id_of(quantity["locationId"], "Location") or ""
            current = self.levels.get((item, location))
            if current is None:
                errors.append(
                    {
                        "code": "ITEM_NOT_STOCKED_AT_LOCATION",
                        "field": [*where, "locationId"],
                        "message": "The specified inventory item is not stocked at the location.",
                    }
                )
                continue
            expected = quantity.get("changeFromQuantity")
            if expected is not None and expected != current["available"]:
                errors.append(
                    {
                        "code": "CHANGE_FROM_QUANTITY_STALE",
                        "field": [*where, "changeFromQuantity"],
                        "message": "The changeFromQuantity does not match the persisted value.",
                    }
                )
                continue
            changes.append((item, location, int(quantity["quantity"])))
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        deltas = []
        for item, location, value in changes:  # all or nothing
            before = int(self.levels[(item, location)]["available"] or 0)
            self._write_level(item, location, value)
            self.calls.writes.append((f"{item}@{location}", str(value)))
            deltas.append(
                {"name": input["name"], "delta": value - before, "quantityAfterChange": value}
            )
        result = {
            "inventoryAdjustmentGroup": {
                "id": gid("InventoryAdjustmentGroup", self._new_id()),
                "reason": input["reason"],
                "createdAt": _utc(self._clock.isoformat()),
                "changes": deltas,
            },
            "userErrors": [],
        }
        self._idempotent[key] = result
        return result

    # -- HTTP ---------------------------------------------------------------------------------

    def grant(self, code: str, client_id: str, client_secret: str) -> None:
        """The merchant approved the app: ``code`` may be exchanged once for :attr:`token`."""
        self.app_credentials = (client_id, client_secret)
        self._codes.add(code)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/admin/api/{version}/graphql.json", self._graphql, methods=["POST"]),
                Route("/admin/oauth/access_token", self._access_token, methods=["POST"]),
            ]
        )

    async def _access_token(self, request: Request) -> Response:
        """The authorization code grant: a granted code, once, with the app's credentials."""
        self.calls.total += 1
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = {}
        code = body.get("code") if isinstance(body, dict) else None
        credentials = (body.get("client_id"), body.get("client_secret")) if code else None
        if credentials is None or credentials != self.app_credentials or code not in self._codes:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "The authorization code was "
                 "not found or was already used"},
                status_code=400,
            )  # fmt: skip
        self._codes.discard(code)
        return JSONResponse({"access_token": self.token, "scope": "read_products,read_orders"})

    def _cost(self, now: float, requested: int, actual: int | None) -> Node:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(now),
            }
        }

    async def _graphql(self, request: Request) -> Response:
        if request.headers.get("x-shopify-access-token") != self.token:
            return JSONResponse(
                {
                    "errors": "[API] Invalid API key or access token "
                    "(unrecognized login or wrong password)"
                },
                status_code=401,
            )
        with self._lock:
            self.calls.total += 1
            failure = self.injected()
        if failure is not None:
            headers = {"Retry-After": str(self.retry_after_seconds)} if failure == 429 else {}
            message = "Exceeded rate limit" if failure == 429 else "Internal Server Error"
            return JSONResponse({"errors": message}, status_code=failure, headers=headers)
        if not _VERSION.match(request.path_params["version"]):
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        try:
            body = json.loads(await request.body())
            query = str(body["query"])
            variables = dict(body.get("variables") or {})
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        try:
            document = parse(query)
        except GraphQLError as syntax:
            return JSONResponse({"errors": [_shopify_error(syntax)]})
        invalid = validate(SCHEMA, document)
        if invalid:
            return JSONResponse({"errors": [_shopify_error(e) for e in invalid]})
        requested = requested_cost(document, variables, body.get("operationName"))
        with self._lock:
            now = time.monotonic()
            if requested > MAX_QUERY_COST:
                self.calls.violations += 1
                message = (
                    f"Query cost is {requested}, which exceeds the single query max cost limit "
                    f"({MAX_QUERY_COST})."
                )
                refusal: Node = {
                    "message": message,
                    "extensions": {
                        "code": "MAX_COST_EXCEEDED",
                        "cost": requested,
                        "maxCost": MAX_QUERY_COST,
                        "documentation": _RATE_DOCS,
                    },
                }
                return JSONResponse(
                    {"errors": [refusal], "extensions": self._cost(now, requested, None)}
                )
            if not self.bucket.take(requested, now):
                self.calls.violations += 1
                refusal = {
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": _RATE_DOCS},
                }
                return JSONResponse(
                    {"errors": [refusal], "extensions": self._cost(now, requested, None)}
                )
            result = execute_sync(
                SCHEMA,
                document,
                root_value=self._root(),
                context_value={"variables": variables},
                variable_values=variables,
                operation_name=body.get("operationName"),
            )
            actual = (
                requested_cost(document, variables, body.get("operationName"), result.data)
                if result.data is not None
                else 0
            )
            actual = min(actual, requested)
            self.bucket.refund(requested - actual)
            self.costs.append((requested, actual))
            answer: Node = {"data": result.data}
            if result.errors:
                answer["errors"] = [_shopify_error(e) for e in result.errors]
            answer["extensions"] = self._cost(now, requested, actual)
        return JSONResponse(answer)


def _shopify_error(error: GraphQLError) -> Node:
    formatted: Node = dict(error.formatted)
    unknown = _UNKNOWN_FIELD.match(error.message)
    if unknown:
        field, type_name = unknown.groups()
        formatted["message"] = f"Field '{field}' doesn't exist on type '{type_name}'"
        formatted["extensions"] = {
            "code": "undefinedField",
            "typeName": type_name,
            "fieldName": field,
        }
    return formatted


def _directive_key(info: Any, name: str) -> str | None:
    variables = info.context["variables"]
    for node in info.field_nodes:
        for directive in node.directives or ():
            if directive.name.value != name:
                continue
            for argument in directive.arguments:
                if argument.name.value != "key":
                    continue
                value = argument.value
                if isinstance(value, StringValueNode):
                    return str(value.value)
                if isinstance(value, VariableNode) and variables.get(value.name.value):
                    return str(variables[value.name.value])
    return None


# -- cost ---------------------------------------------------------------------------------------


def requested_cost(
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None = None,
    data: Any = None,
) -> int:
    """The requested cost of the operation (``data`` None), or its actual cost on ``data``."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        return 0
    operation = operations[0]
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * len(operation.selection_set.selections)
    root = SCHEMA.query_type
    assert root is not None
    costing = _Costing(variables, fragments)
    return costing.selections(operation.selection_set, root, data, measure=data is not None)


class _Costing:
    def __init__(
        self, variables: Mapping[str, Any], fragments: Mapping[str, FragmentDefinitionNode]
    ) -> None:
        self.variables, self.fragments = variables, fragments

    def _count(self, field: FieldNode) -> int | None:
        for argument in field.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                return int(self.variables.get(value.name.value) or 0)
        return None

    def selections(
        self, selection_set: SelectionSetNode | None, parent: GraphQLObjectType, data: Any,
        *, measure: bool,
    ) -> int:  # fmt: skip
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    total += self.selections(fragment.selection_set, parent, data, measure=measure)
            elif isinstance(selection, InlineFragmentNode):
                total += self.selections(selection.selection_set, parent, data, measure=measure)
            elif isinstance(selection, FieldNode):
                definition = parent.fields.get(selection.name.value)
                if definition is None:
                    continue
                key = selection.alias.value if selection.alias else selection.name.value
                value = data.get(key) if isinstance(data, Mapping) else None
                total += self.field(selection, definition.type, value, measure=measure)
        return total

    def field(self, node: FieldNode, type_: GraphQLOutputType, value: Any, *, measure: bool) -> int:
        named = get_named_type(type_)
        if is_leaf_type(named) or not isinstance(named, GraphQLObjectType):
            return 0
        count = self._count(node)
        if named.name.endswith("Connection"):
            node_type = get_named_type(named.fields["nodes"].type)
            assert isinstance(node_type, GraphQLObjectType)
            one = self._node_selection(node, node_type)
            if not measure:
                return 2 + (count or 0) * (1 + self.selections(one, node_type, None, measure=False))
            found = _connection_nodes(value)
            return 2 + sum(1 + self.selections(one, node_type, n, measure=True) for n in found)
        if isinstance(_nullable(type_), GraphQLList):
            if not measure:
                each = 1 + self.selections(node.selection_set, named, None, measure=False)
                return each * count if count is not None else each
            return sum(
                1 + self.selections(node.selection_set, named, v, measure=True) for v in value or []
            )
        if measure and value is None:
            return 0
        return 1 + self.selections(node.selection_set, named, value, measure=measure)

    @staticmethod
    def _node_selection(node: FieldNode, node_type: GraphQLObjectType) -> SelectionSetNode | None:
        # The costlier of `nodes { … }` and `edges { node { … } }` (usually only one is asked).
        assert node.selection_set is not None
        for child in node.selection_set.selections:
            if isinstance(child, FieldNode) and child.name.value == "nodes":
                return child.selection_set
            if isinstance(child, FieldNode) and child.name.value == "edges" and child.selection_set:
                for grand in child.selection_set.selections:
                    if isinstance(grand, FieldNode) and grand.name.value == "node":
                        return grand.selection_set
        return None


def _connection_nodes(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        return []
    if value.get("nodes") is not None:
        return list(value["nodes"])
    return [e.get("node") for e in value.get("edges") or []]
