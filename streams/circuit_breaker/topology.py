"""The circuit breaker on quixstreams: inventory levels and product variants meet per item, item
totals and campaign links meet per product, and the breaker's decisions go to
``actions.circuit-breaker.v1``.

::

    commerce.inventory-levels.v1 ─┐ (store/item)
    commerce.products.v1 ─────────┴─ group_by store/item ─► item stock ─┐ (store/product)
    marketing.campaign-product-links.v1 ────────────────────────────────┴─ group_by store/product
        ─► product breaker ─► actions.circuit-breaker.v1

Both joins merge the two inputs into one stream and repartition it by the join key, so the two
sides of each join always share a partition and a state store (docs/streams.md). The steps are
pure functions of (record, stored state); :func:`add_circuit_breaker` wires them to the runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from quixstreams import Application

from revloop.ids import deterministic_id
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.circuit_breaker.breaker import (
    BreakerRules,
    BreakerState,
    Decision,
    Transition,
    observe,
    state_from_json,
    state_to_json,
)
from streams.inventory.item_stock import (
    LevelUpdate,
    Method,
    apply,
    settle,
    stock_from_json,
    stock_to_json,
)
from streams.runtime.inputs import Inputs, link_record, stateful
from streams.runtime.quix import output_topic

ACTION = "dev.revloop.events.CircuitBreakerAction"
Stored = dict[str, Any]


def rules_from(settings: Settings) -> BreakerRules:
    return BreakerRules(
        out_of_stock_at=settings.breaker_out_of_stock_at,
        restock_at=settings.breaker_restock_at,
        low_stock_below=settings.breaker_low_stock_below,
        dwell=timedelta(seconds=settings.breaker_dwell_seconds),
    )


# -- inputs, as JSON records keyed for their join --------------------------------------------------


def level_record(level: Stored) -> Stored:
    envelope = level["envelope"]
    return {
        "kind": "level",
        "store_id": envelope["store_id"],
        "platform": envelope["platform"],
        "item_id": level["inventory_item_id"],
        "event_id": envelope["event_id"],
        "location_id": level["location_id"],
        "method": level["method"],
        "quantity": level["quantity"],
        "at": envelope["occurred_at"].isoformat(),
        "product_id": level["product_id"],
        "variant_id": level["variant_id"],
    }


def variant_records(product: Stored) -> list[Stored]:
    """Which product and variant each inventory item belongs to (a ProductDelete: none)."""
    if product.get("record") != "ProductUpsert":
        return []
    envelope = product["envelope"]
    return [
        {
            "kind": "variant",
            "store_id": envelope["store_id"],
            "item_id": variant["inventory_item_id"],
            "product_id": product["product_id"],
            "variant_id": variant["variant_id"],
        }
        for variant in product["variants"]
        if variant.get("inventory_item_id")
    ]


# -- per item: stock -------------------------------------------------------------------------------


def item_step(record: Stored, stored: Stored, lateness: timedelta) -> tuple[Stored, list[Stored]]:
    """One record for an item: its stock and its owner change; out goes the item's total, keyed
    for its product, whenever it changed and the product is known."""
    stock = stock_from_json(stored.get("stock", {}))
    owner = stored.get("owner")
    before = stock.available if stock.locations else None
    if record["kind"] == "variant":
        owner = {"product_id": record["product_id"], "variant_id": record["variant_id"]}
        changed = owner != stored.get("owner")
    else:
        if owner is None and record["product_id"]:
            owner = {"product_id": record["product_id"], "variant_id": record["variant_id"]}
        update = LevelUpdate(
            record["event_id"],
            record["location_id"],
            Method(record["method"]),
            int(record["quantity"]),
            datetime.fromisoformat(record["at"]),
        )
        stock = apply(stock, update)
        stock = settle(stock, (stock.updated_at or update.at) - lateness)
        changed = stock.available != before
        stored = {**stored, "platform": record["platform"], "cause": record["event_id"]}
    stored = {**stored, "stock": stock_to_json(stock), "owner": owner}
    at = stock.updated_at
    if not changed or owner is None or at is None:
        return stored, []
    total = {
        "kind": "item_total",
        "store_id": record["store_id"],
        "platform": stored.get("platform", "other"),
        "item_id": record["item_id"],
        "product_id": owner["product_id"],
        "variant_id": owner["variant_id"],
        "available": stock.available,
        "at": at.isoformat(),
        "cause": stored.get("cause"),
    }
    return stored, [total]


# -- per product: the breaker ----------------------------------------------------------------------


def product_step(
    record: Stored, stored: Stored, rules: BreakerRules
) -> tuple[Stored, list[Stored]]:
    """One record for a product: an item's total or a campaign link. Out go the breaker's
    pauses and resumes, as CircuitBreakerAction values."""
    at = datetime.fromisoformat(record["at"])
    if record["kind"] == "link":
        campaigns = dict(stored.get("campaigns", {}))
        known = campaigns.get(record["campaign_id"])
        if known is None or (known["at"], known["event_id"]) < (record["at"], record["event_id"]):
            campaigns[record["campaign_id"]] = {
                "active": record["active"],
                "at": record["at"],
                "event_id": record["event_id"],
            }
        return {**stored, "campaigns": campaigns}, []
    items = dict(stored.get("items", {}))
    known = items.get(record["item_id"])
    if known is not None and datetime.fromisoformat(known["at"]) > at:
        return stored, []  # an older total of this item
    items[record["item_id"]] = {"available": record["available"], "at": record["at"]}
    breaker = state_from_json(stored["breaker"]) if "breaker" in stored else None
    total = sum(int(item["available"]) for item in items.values())
    as_of = max(at, breaker.as_of) if breaker and breaker.as_of else at
    breaker, decisions = observe(breaker or BreakerState(), total, as_of, rules)
    stored = {**stored, "items": items, "breaker": state_to_json(breaker)}
    running = sorted(c for c, link in stored.get("campaigns", {}).items() if link["active"])
    actions = [
        _action(record, d, running)
        for d in decisions
        if d.transition is not Transition.LOW_STOCK  # the contract has no symbol for it yet
    ]
    return stored, actions


def _action(record: Stored, decision: Decision, campaigns: list[str]) -> Stored:
    store_id, product_id, at = record["store_id"], record["product_id"], decision.at
    name = f"derived/circuit-breaker/{store_id}/{product_id}/{decision.transition}/{at.isoformat()}"
    return {
        "envelope": {
            "event_id": deterministic_id(name),
            "store_id": store_id,
            "platform": record["platform"],
            # Derived in event time: a replay derives the same action, byte for byte.
            "occurred_at": at,
            "received_at": at,
            "source": "derived",
            "caused_by": [record["cause"]] if record.get("cause") else [],
        },
        "action": decision.transition.value,
        "product_id": product_id,
        "campaign_ids": campaigns,
        "available": decision.available,
        "previous_available": decision.previous_available,
        "reason": decision.reason,
    }


# -- wiring ----------------------------------------------------------------------------------------


def add_circuit_breaker(
    app: Application, settings: Settings, serde: AvroSerde, inputs: Inputs
) -> None:
    rules = rules_from(settings)
    lateness = timedelta(hours=settings.inventory_lateness_hours)
    levels = inputs.stream("commerce.inventory-levels.v1")
    products = inputs.stream("commerce.products.v1")
    links = inputs.stream("marketing.campaign-product-links.v1")
    per_item = (
        levels.apply(level_record)
        .concat(products.apply(variant_records, expand=True))
        .group_by(lambda r: f"{r['store_id']}/{r['item_id']}", name="by-item")
        .apply(stateful(lambda r, s: item_step(r, s, lateness)), stateful=True, expand=True)
    )
    actions = (
        per_item.concat(links.apply(link_record))
        .group_by(lambda r: f"{r['store_id']}/{r['product_id']}", name="by-product")
        .apply(stateful(lambda r, s: product_step(r, s, rules)), stateful=True, expand=True)
    )
    out = output_topic(app, settings, ACTION, serde)
    actions.to_topic(out, key=lambda a: f"{a['envelope']['store_id']}/{a['product_id']}".encode())
