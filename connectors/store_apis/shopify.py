"""Shopify's GraphQL Admin API as a StoreApi (docs/connectors.md, "Store APIs").

Every call is ``POST /admin/api/{version}/graphql.json`` with the app's token in
``X-Shopify-Access-Token``. Facts relied on (shopify.dev, "GraphQL Admin API rate limits",
"Shopify API limits", the 2026-04 changelog):

- Rate limits are a leaky bucket of query cost per app and store: ``maximumAvailable`` points
  refilling at ``restoreRate`` a second (plan dependent). Before a query runs the bucket must
  hold its *requested* cost; afterwards the difference to the *actual* cost is refunded. Every
  answer reports ``extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus}``.
- Requested cost: scalars and enums 0, objects 1, a connection 2 plus ``first`` times the cost
  of one node, a mutation 10. One query may cost at most 1000 (``MAX_COST_EXCEEDED``).
- A query the bucket cannot pay is answered HTTP 200 with ``errors[].extensions.code ==
  "THROTTLED"`` and no data.
- Connections page by cursor: ``first`` (at most 250) and ``after``, and ``pageInfo
  {hasNextPage endCursor}``. ``query: "updated_at:>='<iso>'"`` with ``sortKey: UPDATED_AT``
  reads what changed since an instant, oldest change first.
- Since 2026-04, ``inventorySetQuantities`` takes ``changeFromQuantity`` on each quantity
  (``null`` opts out of compare-and-set) and needs an ``@idempotent(key:)`` directive.
- Search syntax ("Shopify API search syntax"): a term is ``name:value``; a value is a bare word
  or a string in single or double quotes; ``: \\ ( )`` are special and a backslash escapes a
  character. ``productVariants`` filters on ``sku``. An ``InventoryItem`` says whether it is
  ``tracked``, and lists its ``inventoryLevels`` (a location and its quantities) by location.

The client keeps its own copy of the bucket from each answer's ``throttleStatus`` and, before a
query, waits until the bucket has refilled enough for the query's requested cost (which it
computes by the same rules), so it is not throttled in normal use; a THROTTLED answer (another
client of the same app on the same store) is retried once the bucket has refilled. Page sizes
are cut to what one query may cost.

Reads come back in the REST/webhook shape ``platforms.shopify`` normalizes (ids as digit
strings parsed from ``gid://shopify/Type/123``, snake_case fields, money as decimal strings).
``stock_of_sku`` searches ``productVariants`` with ``sku:"<value>"`` (the value quoted, a
backslash before any ``\\`` or ``"`` in it, so spaces, quotes, colons and parentheses are one
literal value) and keeps only the variants whose SKU is exactly the one asked (the search may
match more loosely: case, tokens); each variant's inventory item comes with its levels, and an
item stocked at more locations than one query reads has the rest read by itself.
Inventory levels are listed per location (``locations`` one at a time, each with its
``inventoryLevels`` filtered by ``updated_at``), because a level's change does not touch its
inventory item's ``updatedAt``; the page cursor holds both positions. Nested lists longer than
one query reads (an order's line items, a product's variants, an order's refunds) are completed
with follow-up queries for that record.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import httpx
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
)

from connectors.http import ApiClient, ApiError, RetryPolicy
from connectors.store_apis.base import Page, Resource, ShopInfo, StockLevel, Webhook

PLATFORM = "shopify"
API_VERSION = "2026-07"
MAX_QUERY_COST = 1000
MAX_PAGE = 250
MUTATION_COST = 10
LINES = 10
"""Line items read with each order in a listing; more are fetched for that order alone."""
VARIANTS = 20
SKU_VARIANTS, SKU_LEVELS = 5, 10
"""Variants per ``stock_of_sku`` query and levels read with each (more are read after)."""
REFUNDS, REFUND_TRANSACTIONS, REFUND_LINES = 2, 2, 5

# -- queries ----------------------------------------------------------------------------------

_MONEY = "{ shopMoney { amount currencyCode } }"
_VARIANT = "id title sku price inventoryQuantity createdAt updatedAt inventoryItem { id }"
_PRODUCT = (
    "id title handle status vendor productType tags createdAt updatedAt "
    f"variants(first: {VARIANTS}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {_VARIANT} }} }}"
)
_LINE = (
    "id name title sku quantity variant { id } product { id } "
    f"originalUnitPriceSet {_MONEY} totalDiscountSet {_MONEY}"
)


def _refund_fields(transactions: int, lines: int) -> str:
    return (
        "id createdAt note "
        f"transactions(first: {transactions}) {{ pageInfo {{ hasNextPage }} "
        f"nodes {{ kind status processedAt amountSet {_MONEY} }} }} "
        f"refundLineItems(first: {lines}) {{ pageInfo {{ hasNextPage }} "
        f"nodes {{ id quantity lineItem {{ id }} subtotalSet {_MONEY} totalTaxSet {_MONEY} }} }}"
    )


_ORDER = (
    "id name email currencyCode createdAt updatedAt processedAt cancelledAt cancelReason "
    "displayFinancialStatus displayFulfillmentStatus sourceName tags "
    "customAttributes { key value } customer { id } "
    "customerJourneySummary { firstVisit { landingPage referrerUrl } } "
    f"subtotalPriceSet {_MONEY} totalPriceSet {_MONEY} totalTaxSet {_MONEY} "
    f"totalDiscountsSet {_MONEY} totalShippingPriceSet {_MONEY} "
    f"lineItems(first: {LINES}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {_LINE} }} }} "
    f"refunds(first: {REFUNDS}) {{ {_refund_fields(REFUND_TRANSACTIONS, REFUND_LINES)} }}"
)
_CUSTOMER = (
    "id createdAt updatedAt tags numberOfOrders amountSpent { amount currencyCode } "
    "defaultEmailAddress { emailAddress marketingState }"
)
_VARIANT_ALONE = f"{_VARIANT} product {{ id }}"
_LEVEL = 'updatedAt item { id } quantities(names: ["available"]) { name quantity }'

_LISTS: dict[Resource, tuple[str, str, bool]] = {
    Resource.PRODUCTS: ("products", _PRODUCT, True),
    Resource.VARIANTS: ("productVariants", _VARIANT_ALONE, True),
    Resource.ORDERS: ("orders", _ORDER, True),
    Resource.CUSTOMERS: ("customers", _CUSTOMER, True),
}
_GETS: dict[Resource, tuple[str, str, str]] = {
    Resource.PRODUCTS: ("product", "Product", _PRODUCT),
    Resource.VARIANTS: ("productVariant", "ProductVariant", _VARIANT_ALONE),
    Resource.ORDERS: ("order", "Order", _ORDER),
    Resource.CUSTOMERS: ("customer", "Customer", _CUSTOMER),
}


def list_query(root: str, fields: str) -> str:
    return (
        f"query List($first: Int!, $after: String, $query: String) {{ {root}(first: $first, "
        "after: $after, query: $query, sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } "
        f"nodes {{ {fields} }} }} }}"
    )


LEVELS_QUERY = (
    "query Levels($first: Int!, $after: String, $levelsAfter: String, $query: String) { "
    "locations(first: 1, after: $after, sortKey: ID) { pageInfo { hasNextPage endCursor } "
    "nodes { id inventoryLevels(first: $first, after: $levelsAfter, query: $query) { "
    f"pageInfo {{ hasNextPage endCursor }} nodes {{ {_LEVEL} }} }} }} }} }}"
)
_STOCK_LEVELS = (
    "pageInfo { hasNextPage endCursor } edges { node { location { id } "
    'quantities(names: ["available"]) { name quantity } } }'
)
SKU_QUERY = (
    "query StockOfSku($first: Int!, $after: String, $query: String!, $levels: Int!) { "
    "productVariants(first: $first, after: $after, query: $query) { "
    "pageInfo { hasNextPage endCursor } nodes { id sku inventoryItem { id tracked "
    f"inventoryLevels(first: $levels) {{ {_STOCK_LEVELS} }} }} }} }} }}"
)
ITEM_LEVELS_QUERY = (
    "query ItemLevels($id: ID!, $after: String) { inventoryItem(id: $id) { "
    f"inventoryLevels(first: 100, after: $after) {{ {_STOCK_LEVELS} }} }} }}"
)
SHOP_QUERY = "query Shop { shop { myshopifyDomain name currencyCode ianaTimezone } }"
WEBHOOKS_QUERY = (
    "query Webhooks($after: String) { webhookSubscriptions(first: 100, after: $after) { "
    "pageInfo { hasNextPage endCursor } nodes { id topic uri } } }"
)
WEBHOOK_CREATE = (
    "mutation WebhookCreate($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) "
    "{ webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) { "
    "webhookSubscription { id topic uri } userErrors { field message } } }"
)
WEBHOOK_DELETE = (
    "mutation WebhookDelete($id: ID!) { webhookSubscriptionDelete(id: $id) { "
    "deletedWebhookSubscriptionId userErrors { field message } } }"
)
SET_QUANTITIES = (
    "mutation SetInventory($input: InventorySetQuantitiesInput!, $key: String!) { "
    "inventorySetQuantities(input: $input) @idempotent(key: $key) { "
    "inventoryAdjustmentGroup { id } userErrors { code field message } } }"
)

# -- ids --------------------------------------------------------------------------------------


def numeric_id(gid: Any) -> str | None:
    """``gid://shopify/Order/123`` (or ``...?inventory_item_id=…``) → ``"123"``."""
    if gid is None:
        return None
    tail = str(gid).rsplit("/", 1)[-1].split("?", 1)[0]
    return tail if tail.isdigit() else None


def to_gid(kind: str, resource_id: str) -> str:
    text = str(resource_id)
    if text.startswith("gid://"):
        return text
    if not text.isdigit():
        raise ValueError(f"a Shopify {kind} id is digits or a gid")
    return f"gid://shopify/{kind}/{text}"


def sku_search(sku: str) -> str:
    """The search query for variants whose SKU is ``sku``: ``sku:"…"``, the value quoted and
    its backslashes and double quotes escaped, so nothing in it reads as syntax."""
    escaped = sku.replace("\\", "\\\\").replace('"', '\\"')
    return f'sku:"{escaped}"'


def topic_enum(topic: str) -> str:
    """``orders/create`` → ``ORDERS_CREATE``."""
    return topic.replace("/", "_").upper()


def topic_name(enum: str) -> str:
    """``INVENTORY_LEVELS_UPDATE`` → ``inventory_levels/update`` (the action has no ``_``)."""
    resource, _, action = enum.lower().rpartition("_")
    return f"{resource}/{action}"


# -- GraphQL nodes → REST/webhook shapes (pure) ------------------------------------------------


def _shop_money(bag: Any) -> dict[str, Any] | None:
    money = (bag or {}).get("shopMoney") if isinstance(bag, Mapping) else None
    if not money:
        return None
    return {"amount": str(money.get("amount")), "currency_code": money.get("currencyCode")}


def _amount(bag: Any) -> str | None:
    money = _shop_money(bag)
    return money["amount"] if money else None


def _set(bag: Any) -> dict[str, Any] | None:
    money = _shop_money(bag)
    return {"shop_money": money} if money else None


def _lower(value: Any) -> str | None:
    return str(value).lower() if value else None


def _nodes(connection: Any) -> list[Mapping[str, Any]]:
    if not isinstance(connection, Mapping):
        return []
    if "nodes" in connection:
        return list(connection["nodes"] or [])
    return [edge["node"] for edge in connection.get("edges") or []]


_FULFILLMENT = {
    "FULFILLED": "fulfilled",
    "PARTIALLY_FULFILLED": "partial",
    "RESTOCKED": "restocked",
    "UNFULFILLED": None,
}


def line_item_from_node(node: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": numeric_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "title": node.get("title"),
        "sku": node.get("sku"),
        "quantity": node.get("quantity"),
        "product_id": numeric_id((node.get("product") or {}).get("id")),
        "variant_id": numeric_id((node.get("variant") or {}).get("id")),
        "price": _amount(node.get("originalUnitPriceSet")),
        "price_set": _set(node.get("originalUnitPriceSet")),
        "total_discount": _amount(node.get("totalDiscountSet")) or "0.00",
        "total_discount_set": _set(node.get("totalDiscountSet")),
    }


def refund_from_node(node: Mapping[str, Any], order_id: str | None) -> dict[str, Any]:
    transactions = []
    for t in _nodes(node.get("transactions")):
        money = _shop_money(t.get("amountSet")) or {}
        transactions.append(
            {
                "kind": _lower(t.get("kind")),
                "status": _lower(t.get("status")),
                "amount": money.get("amount"),
                "currency": money.get("currency_code"),
                "processed_at": t.get("processedAt"),
            }
        )
    return {
        "id": numeric_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "order_id": order_id,
        "created_at": node.get("createdAt"),
        "processed_at": node.get("createdAt"),
        "note": node.get("note"),
        "refund_line_items": [
            {
                "id": numeric_id(line.get("id")),
                "line_item_id": numeric_id((line.get("lineItem") or {}).get("id")),
                "quantity": line.get("quantity"),
                "subtotal_set": _set(line.get("subtotalSet")),
                "total_tax_set": _set(line.get("totalTaxSet")),
            }
            for line in _nodes(node.get("refundLineItems"))
        ],
        "transactions": transactions,
    }


def order_from_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """An Order node as the orders/* webhooks carry it."""
    order_id = numeric_id(node.get("id"))
    visit = (node.get("customerJourneySummary") or {}).get("firstVisit") or {}
    customer = node.get("customer")
    return {
        "id": order_id,
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "email": node.get("email"),
        "currency": node.get("currencyCode"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "cancel_reason": _lower(node.get("cancelReason")),
        "financial_status": _lower(node.get("displayFinancialStatus")),
        "fulfillment_status": _FULFILLMENT.get(
            str(node.get("displayFulfillmentStatus")), _lower(node.get("displayFulfillmentStatus"))
        ),
        "source_name": node.get("sourceName"),
        "landing_site": visit.get("landingPage"),
        "referring_site": visit.get("referrerUrl"),
        "tags": ", ".join(node.get("tags") or []),
        "note_attributes": [
            {"name": a.get("key"), "value": a.get("value")}
            for a in node.get("customAttributes") or []
        ],
        "customer": {"id": numeric_id(customer.get("id"))} if customer else None,
        "total_price": _amount(node.get("totalPriceSet")),
        "subtotal_price": _amount(node.get("subtotalPriceSet")) or "0.00",
        "total_tax": _amount(node.get("totalTaxSet")) or "0.00",
        "total_discounts": _amount(node.get("totalDiscountsSet")) or "0.00",
        "total_price_set": _set(node.get("totalPriceSet")),
        "subtotal_price_set": _set(node.get("subtotalPriceSet")),
        "total_tax_set": _set(node.get("totalTaxSet")),
        "total_discounts_set": _set(node.get("totalDiscountsSet")),
        "total_shipping_price_set": _set(node.get("totalShippingPriceSet")),
        "line_items": [line_item_from_node(n) for n in _nodes(node.get("lineItems"))],
        "refunds": [refund_from_node(r, order_id) for r in node.get("refunds") or []],
    }


def variant_from_node(node: Mapping[str, Any], product_id: str | None = None) -> dict[str, Any]:
    return {
        "id": numeric_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "product_id": product_id or numeric_id((node.get("product") or {}).get("id")),
        "title": node.get("title"),
        "sku": node.get("sku"),
        "price": None if node.get("price") is None else str(node["price"]),
        "inventory_item_id": numeric_id((node.get("inventoryItem") or {}).get("id")),
        "inventory_quantity": node.get("inventoryQuantity"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }


def product_from_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Product node as products/update carries it."""
    product_id = numeric_id(node.get("id"))
    return {
        "id": product_id,
        "admin_graphql_api_id": node.get("id"),
        "title": node.get("title"),
        "handle": node.get("handle"),
        "status": _lower(node.get("status")),
        "vendor": node.get("vendor"),
        "product_type": node.get("productType"),
        "tags": ", ".join(node.get("tags") or []),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "variants": [variant_from_node(v, product_id) for v in _nodes(node.get("variants"))],
    }


def customer_from_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Customer node as customers/update carries it (no names or addresses: not needed)."""
    email = node.get("defaultEmailAddress") or {}
    spent = node.get("amountSpent") or {}
    orders = node.get("numberOfOrders")
    subscribed = email.get("marketingState") == "SUBSCRIBED"
    return {
        "id": numeric_id(node.get("id")),
        "admin_graphql_api_id": node.get("id"),
        "email": email.get("emailAddress"),
        "email_marketing_consent": {"state": _lower(email.get("marketingState"))}
        if email
        else None,
        "accepts_marketing": subscribed,
        "orders_count": int(orders) if orders is not None else None,
        "total_spent": None if spent.get("amount") is None else str(spent["amount"]),
        "currency": spent.get("currencyCode"),
        "tags": ", ".join(node.get("tags") or []),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }


def inventory_level_from_node(node: Mapping[str, Any], location_gid: str) -> dict[str, Any]:
    """An InventoryLevel node as inventory_levels/update carries it."""
    available = next(
        (q.get("quantity") for q in node.get("quantities") or [] if q.get("name") == "available"),
        None,
    )
    return {
        "inventory_item_id": numeric_id((node.get("item") or {}).get("id")),
        "location_id": numeric_id(location_gid),
        "available": available,
        "updated_at": node.get("updatedAt"),
    }


# -- requested cost ---------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _document(query: str) -> DocumentNode:
    return parse(query)


def requested_cost(query: str, variables: Mapping[str, Any] | None = None) -> int:
    """The requested cost Shopify will charge ``query``, by its documented rules: a leaf 0, an
    object (or a list of objects) 1 plus its selections, a connection 2 plus ``first`` (or
    ``last``) times one node, a list with ``first`` that many objects, a mutation field 10."""
    document = _document(query)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    values = dict(variables or {})
    total = 0
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if definition.operation == OperationType.MUTATION:
            total += MUTATION_COST * len(definition.selection_set.selections)
        else:
            total += _selection_cost(definition.selection_set, values, fragments)
    return total


def _count(field: FieldNode, values: Mapping[str, Any]) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value not in ("first", "last"):
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            return int(values.get(value.name.value) or 0)
    return None


def _selection_cost(
    selection_set: SelectionSetNode | None,
    values: Mapping[str, Any],
    fragments: Mapping[str, FragmentDefinitionNode],
) -> int:
    if selection_set is None:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            total += _selection_cost(
                fragment.selection_set if fragment else None, values, fragments
            )
        elif isinstance(selection, InlineFragmentNode):
            total += _selection_cost(selection.selection_set, values, fragments)
        elif isinstance(selection, FieldNode) and selection.selection_set is not None:
            total += _field_cost(selection, values, fragments)
    return total


def _field_cost(
    field: FieldNode, values: Mapping[str, Any], fragments: Mapping[str, FragmentDefinitionNode]
) -> int:
    assert field.selection_set is not None
    count = _count(field, values)
    children = field.selection_set.selections
    names = {c.name.value for c in children if isinstance(c, FieldNode)}
    if count is not None and names & {"nodes", "edges"}:
        node = 0
        for child in children:
            if not isinstance(child, FieldNode) or child.selection_set is None:
                continue
            if child.name.value == "nodes":
                node = max(node, 1 + _selection_cost(child.selection_set, values, fragments))
            elif child.name.value == "edges":
                for grand in child.selection_set.selections:
                    if isinstance(grand, FieldNode) and grand.name.value == "node":
                        cost = 1 + _selection_cost(grand.selection_set, values, fragments)
                        node = max(node, cost)
        return 2 + count * node
    one = 1 + _selection_cost(field.selection_set, values, fragments)
    return one * count if count is not None else one


# -- the client -------------------------------------------------------------------------------


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_codes(errors: Any) -> list[str]:
    codes = []
    for error in errors if isinstance(errors, list) else [errors]:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        codes.append(str((extensions or {}).get("code") or "error"))
    return codes


def throttle_status(body: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """(currentlyAvailable, maximumAvailable, restoreRate) of an answer, if it says."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        return (
            float(status["currentlyAvailable"]),
            float(status["maximumAvailable"]),
            float(status["restoreRate"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def throttled_wait(response: httpx.Response) -> float | None:
    """Seconds until the bucket holds the cost a THROTTLED answer asked for, or None."""
    if response.status_code != 200:
        return None
    body = _body(response)
    if "THROTTLED" not in _error_codes(body.get("errors") or []):
        return None
    status = throttle_status(body)
    requested = ((body.get("extensions") or {}).get("cost") or {}).get("requestedQueryCost")
    if status is None or not status[2]:
        return 1.0
    available, maximum, rate = status
    needed = min(float(requested or maximum), maximum) - available
    return max(0.0, needed / rate) + 0.05


class ShopifyApi:
    """One Shopify store through the GraphQL Admin API."""

    platform = PLATFORM

    def __init__(
        self,
        store_id: str,
        shop_domain: str,
        token: str,
        *,
        base_url: str | None = None,
        api_version: str = API_VERSION,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.store_id, self.shop_domain = store_id, shop_domain
        self._path = f"/admin/api/{api_version}/graphql.json"
        self._bucket: tuple[float, float, float, float] | None = None
        """(available, maximum, restore rate, monotonic time) from the last answer."""
        self.client = ApiClient(
            PLATFORM,
            store_id,
            (base_url or f"https://{shop_domain}").rstrip("/"),
            auth_headers={"X-Shopify-Access-Token": token},
            policy=policy,
            throttle=self._throttled,
            pace=self._observe,
        )

    def __repr__(self) -> str:
        return f"ShopifyApi({self.client!r})"

    def close(self) -> None:
        self.client.close()

    # -- the bucket ---------------------------------------------------------------------------

    def _observe(self, response: httpx.Response) -> float:
        status = throttle_status(_body(response)) if response.status_code == 200 else None
        if status is not None:
            self._bucket = (*status, time.monotonic())
        return 0.0  # the wait is judged before each query, knowing its cost

    def _throttled(self, response: httpx.Response) -> float | None:
        return throttled_wait(response)

    def available(self) -> float | None:
        """Points the bucket holds now, by the last answer and the restore rate."""
        if self._bucket is None:
            return None
        available, maximum, rate, at = self._bucket
        return min(maximum, available + rate * (time.monotonic() - at))

    def _budget(self) -> float:
        maximum = self._bucket[1] if self._bucket else MAX_QUERY_COST
        return min(MAX_QUERY_COST, maximum)

    def _wait_for(self, cost: int) -> None:
        have = self.available()
        if have is None or self._bucket is None or cost <= have:
            return
        time.sleep((cost - have) / self._bucket[2])

    # -- calls --------------------------------------------------------------------------------

    def _graphql(self, operation: str, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        self._wait_for(requested_cost(query, variables))
        response = self.client.request(
            "POST",
            self._path,
            json={"query": query, "variables": dict(variables)},
            call=operation,
        )
        body = _body(response)
        errors = body.get("errors")
        data = body.get("data")
        if errors or not isinstance(data, dict):
            # Codes only: messages may echo inputs (addresses, ids).
            reason = (
                "GraphQL errors: " + ", ".join(sorted(set(_error_codes(errors))))
                if errors
                else "GraphQL answer without data"
            )
            raise ApiError(
                self.store_id, f"{PLATFORM} {operation}", reason, status=200, retryable=False
            )
        return data

    def _mutate(self, operation: str, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        data = self._graphql(operation, query, variables)
        payload = next(iter(data.values())) or {}
        user_errors = payload.get("userErrors") or []
        if user_errors:
            fields = sorted(
                {
                    ".".join(map(str, e.get("field") or []))
                    + (f" {e['code']}" if e.get("code") else "")
                    for e in user_errors
                }
            )
            raise ApiError(
                self.store_id,
                f"{PLATFORM} {operation}",
                "userErrors on " + "; ".join(f or "input" for f in fields),
                status=200,
                retryable=False,
            )
        return dict(payload)

    def _page_size(self, query: str, variables: Mapping[str, Any], asked: int | None) -> int:
        # Cost is linear in $first: fit as many as one query (and the bucket) may cost.
        fixed = requested_cost(query, {**variables, "first": 0})
        each = max(1, requested_cost(query, {**variables, "first": 1}) - fixed)
        fits = int((self._budget() - fixed) // each)
        return max(1, min(asked or MAX_PAGE, MAX_PAGE, fits))

    # -- StoreApi -----------------------------------------------------------------------------

    def shop(self) -> ShopInfo:
        shop = self._graphql("shop", SHOP_QUERY, {})["shop"]
        return ShopInfo(
            reference=str(shop["myshopifyDomain"]),
            name=str(shop["name"]),
            currency=str(shop["currencyCode"]),
            timezone=shop.get("ianaTimezone"),
        )

    def page(
        self,
        resource: Resource,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        page_size: int | None = None,
    ) -> Page:
        search = _since_query(since)
        if resource == Resource.INVENTORY_LEVELS:
            return self._levels_page(search, cursor, page_size)
        root, fields, _ = _LISTS[resource]
        query = list_query(root, fields)
        variables: dict[str, Any] = {"after": cursor, "query": search}
        variables["first"] = self._page_size(query, variables, page_size)
        connection = self._graphql(f"{root} page", query, variables)[root]
        nodes = _nodes(connection)
        records = tuple(self._record(resource, n) for n in nodes)
        info = connection.get("pageInfo") or {}
        return Page(records, info.get("endCursor") if info.get("hasNextPage") else None)

    def _levels_page(self, search: str | None, cursor: str | None, page_size: int | None) -> Page:
        location_after, levels_after = _split_cursor(cursor)
        variables: dict[str, Any] = {
            "after": location_after,
            "levelsAfter": levels_after,
            "query": search,
        }
        variables["first"] = self._page_size(LEVELS_QUERY, variables, page_size)
        locations = self._graphql("inventory levels page", LEVELS_QUERY, variables)["locations"]
        found = _nodes(locations)
        if not found:
            return Page((), None)
        location = found[0]
        levels = location.get("inventoryLevels") or {}
        records = tuple(inventory_level_from_node(n, location["id"]) for n in _nodes(levels))
        level_info = levels.get("pageInfo") or {}
        location_info = locations.get("pageInfo") or {}
        if level_info.get("hasNextPage"):
            following = _join_cursor(location_after, level_info.get("endCursor"))
        elif location_info.get("hasNextPage"):
            following = _join_cursor(location_info.get("endCursor"), None)
        else:
            following = None
        return Page(records, following)

    def _record(self, resource: Resource, node: Mapping[str, Any]) -> dict[str, Any]:
        if resource == Resource.ORDERS:
            return order_from_node(self._complete_order(node))
        if resource == Resource.PRODUCTS:
            return product_from_node(self._complete_product(node))
        if resource == Resource.VARIANTS:
            return variant_from_node(node)
        return customer_from_node(node)

    def _complete_order(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        node = dict(node)
        lines = node.get("lineItems") or {}
        if (lines.get("pageInfo") or {}).get("hasNextPage"):
            node["lineItems"] = {
                "nodes": _nodes(lines)
                + self._rest_of(node["id"], "order", "lineItems", _LINE, lines["pageInfo"])
            }
        refunds = node.get("refunds") or []
        truncated = len(refunds) >= REFUNDS or any(
            (r.get(k) or {}).get("pageInfo", {}).get("hasNextPage")
            for r in refunds
            for k in ("transactions", "refundLineItems")
        )
        if truncated:
            query = (
                "query Refunds($id: ID!) { order(id: $id) { refunds { "
                f"{_refund_fields(50, 100)} }} }} }}"
            )
            found = self._graphql("order refunds", query, {"id": node["id"]})["order"]
            node["refunds"] = (found or {}).get("refunds") or refunds
        return node

    def _complete_product(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        variants = node.get("variants") or {}
        if not (variants.get("pageInfo") or {}).get("hasNextPage"):
            return node
        rest = self._rest_of(node["id"], "product", "variants", _VARIANT, variants["pageInfo"])
        return {**node, "variants": {"nodes": _nodes(variants) + rest}}

    def _rest_of(
        self, gid: str, root: str, field: str, fields: str, info: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        query = (
            f"query Rest($id: ID!, $after: String) {{ {root}(id: $id) {{ {field}(first: 100, "
            f"after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {fields} }} }} }} }}"
        )
        found: list[Mapping[str, Any]] = []
        after = info.get("endCursor")
        while after:
            owner = self._graphql(f"{root} {field}", query, {"id": gid, "after": after})[root]
            connection = (owner or {}).get(field) or {}
            found.extend(_nodes(connection))
            page = connection.get("pageInfo") or {}
            after = page.get("endCursor") if page.get("hasNextPage") else None
        return found

    def get(self, resource: Resource, resource_id: str) -> Mapping[str, Any] | None:
        if resource not in _GETS:
            raise ValueError(f"Shopify {resource} are read by listing, not one by id")
        root, kind, fields = _GETS[resource]
        query = f"query Get($id: ID!) {{ {root}(id: $id) {{ {fields} }} }}"
        node = self._graphql(f"{root} get", query, {"id": to_gid(kind, resource_id)})[root]
        return None if node is None else self._record(resource, node)

    def webhooks(self) -> list[Webhook]:
        found: list[Webhook] = []
        after: str | None = None
        while True:
            connection = self._graphql("webhookSubscriptions", WEBHOOKS_QUERY, {"after": after})[
                "webhookSubscriptions"
            ]
            found.extend(_webhook(n) for n in _nodes(connection))
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return found
            after = info.get("endCursor")

    def register_webhook(self, topic: str, address: str) -> Webhook:
        payload = self._mutate(
            f"webhookSubscriptionCreate {topic}",
            WEBHOOK_CREATE,
            {"topic": topic_enum(topic), "sub": {"uri": address, "format": "JSON"}},
        )
        return _webhook(payload["webhookSubscription"])

    def delete_webhook(self, webhook_id: str) -> None:
        self._mutate(
            "webhookSubscriptionDelete",
            WEBHOOK_DELETE,
            {"id": to_gid("WebhookSubscription", webhook_id)},
        )

    def set_inventory(self, item_id: str, location_id: str | None, available: int) -> None:
        if location_id is None:
            raise ValueError("Shopify keeps stock per location: a location id is needed")
        quantity = {
            "inventoryItemId": to_gid("InventoryItem", item_id),
            "locationId": to_gid("Location", location_id),
            "quantity": available,
            "changeFromQuantity": None,  # absolute set, no compare-and-set
        }
        self._mutate(
            "inventorySetQuantities",
            SET_QUANTITIES,
            {
                "input": {"name": "available", "reason": "correction", "quantities": [quantity]},
                # One key per intent: the ApiClient's retries resend the same body.
                "key": str(uuid.uuid4()),
            },
        )

    def stock_of_sku(self, sku: str) -> list[StockLevel]:
        if not sku:
            return []  # an empty SKU is no product's
        levels: list[StockLevel] = []
        after: str | None = None
        while True:
            variables: dict[str, Any] = {
                "after": after,
                "query": sku_search(sku),
                "levels": SKU_LEVELS,
            }
            variables["first"] = self._page_size(SKU_QUERY, variables, SKU_VARIANTS)
            found = self._graphql("productVariants by sku", SKU_QUERY, variables)
            connection = found["productVariants"]
            for variant in _nodes(connection):
                if variant.get("sku") != sku:
                    continue
                levels.extend(self._item_stock(variant.get("inventoryItem") or {}))
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return levels
            after = info.get("endCursor")

    def _item_stock(self, item: Mapping[str, Any]) -> list[StockLevel]:
        item_id = numeric_id(item.get("id"))
        if item_id is None:
            return []
        connection = item.get("inventoryLevels") or {}
        nodes = list(_nodes(connection))
        info = connection.get("pageInfo") or {}
        while info.get("hasNextPage"):
            more = self._graphql(
                "inventoryItem levels",
                ITEM_LEVELS_QUERY,
                {"id": item["id"], "after": info.get("endCursor")},
            )["inventoryItem"]
            connection = (more or {}).get("inventoryLevels") or {}
            nodes.extend(_nodes(connection))
            info = connection.get("pageInfo") or {}
        tracked = item.get("tracked") is not False
        found = []
        for node in nodes:
            location_id = numeric_id((node.get("location") or {}).get("id"))
            if location_id is None:
                continue
            available = next(
                (
                    q.get("quantity")
                    for q in node.get("quantities") or []
                    if q.get("name") == "available"
                ),
                None,
            )
            found.append(
                StockLevel(
                    item_id=item_id,
                    location_id=location_id,
                    available=int(available) if tracked and available is not None else None,
                )
            )
        return found


def _webhook(node: Mapping[str, Any]) -> Webhook:
    return Webhook(
        webhook_id=str(numeric_id(node.get("id")) or node.get("id")),
        topic=topic_name(str(node.get("topic"))),
        address=str(node.get("uri") or node.get("callbackUrl") or ""),
    )


def _since_query(since: datetime | None) -> str | None:
    if since is None:
        return None
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    instant = since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"updated_at:>='{instant}'"


def _join_cursor(location: str | None, level: str | None) -> str:
    raw = json.dumps([location, level]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _split_cursor(cursor: str | None) -> tuple[str | None, str | None]:
    if not cursor:
        return None, None
    try:
        location, level = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise ValueError("not an inventory levels cursor of this client") from exc
    return location, level
