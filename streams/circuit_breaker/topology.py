"""The circuit breaker on quixstreams: inventory levels and product variants meet per item, item
totals and campaign links meet per product, and the breaker's decisions go to
``actions.circuit-breaker.v1``.

::

    commerce.inventory-levels.v1 ─┐ (store/item)
    commerce.products.v1 ─────────┴─ meet store/item ─► item stock ─┐ (store/product)
    commerce.products.v1 ── structure ──────────────────────────────┤
    marketing.campaign-product-links.v1 ────────────────────────────┴─ meet store/product
        ─► product and variant breakers (and the dwell timer) ─► actions.circuit-breaker.v1
                                                               └─► alerts.low-stock.v1

Each join writes its inputs, keyed by the join key, to one topic of the worker's own
(:func:`streams.runtime.inputs.meet`), so the sides of a join share a partition and a state
store (docs/streams.md). The steps are
pure functions of (record, stored state); :func:`add_circuit_breaker` wires them to the runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from quixstreams import Application

from revloop.ids import deterministic_id
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.circuit_breaker.breaker import (
    BreakerRules,
    BreakerState,
    Decision,
    Transition,
    advance,
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
from streams.runtime.inputs import (
    Inputs,
    RulesFor,
    Stored,
    event_time_ms,
    link_record,
    meet,
    product_key,
    stateful,
    timer,
)
from streams.runtime.quix import catalogue_key, output_topic

ACTION = "dev.revloop.events.CircuitBreakerAction"
WARNING = "dev.revloop.events.LowStockWarning"


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
    single = len(product["variants"]) == 1
    return [
        {
            "kind": "variant",
            "store_id": envelope["store_id"],
            "item_id": variant["inventory_item_id"],
            "product_id": product["product_id"],
            # A product of one variant has one breaker: the product's.
            "variant_id": None if single else variant["variant_id"],
        }
        for variant in product["variants"]
        if variant.get("inventory_item_id")
    ]


def structure_record(product: Stored) -> list[Stored]:
    """A product's inventory items, for its breakers to wait until each has reported: a total
    summed over some of them would look sold out when it is not."""
    if product.get("record") != "ProductUpsert":
        return []
    items = [v["inventory_item_id"] for v in product["variants"] if v.get("inventory_item_id")]
    if not items:
        return []
    return [
        {
            "kind": "structure",
            "store_id": product["envelope"]["store_id"],
            "product_id": product["product_id"],
            "items": sorted(items),
            "at": product["envelope"]["occurred_at"].isoformat(),
        }
    ]


# -- per item: stock -------------------------------------------------------------------------------


def item_step(record: Stored, stored: Stored, lateness: timedelta) -> tuple[Stored, list[Stored]]:
    """One record for an item: its stock and its owner change; out goes the item's total, keyed
    for its product, whenever it changed and the product is known. Totals from before the
    product was known (the products topic can be read after the levels) are kept, within the
    lateness, and sent in order once it is, so the breaker sees the sell-outs they hold."""
    stock = stock_from_json(stored.get("stock", {}))
    owner = stored.get("owner")
    pending: list[Stored] = list(stored.get("pending", []))
    before = stock.available if stock.locations else None
    if record["kind"] == "variant":
        owner = {"product_id": record["product_id"], "variant_id": record["variant_id"]}
        changed = owner != stored.get("owner")
    else:
        if (
            owner is None
            and record["product_id"]
            and record["variant_id"]
            in (
                None,
                record["product_id"],
            )
        ):
            # A simple product's stock is the product's. A level naming a variant waits for its
            # product's variants instead (kept in ``pending``): until they are known, a product
            # of several variants would look sold out when one of them is, and one of a single
            # variant would get a breaker of its own.
            owner = {"product_id": record["product_id"], "variant_id": None}
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
        if changed and owner is None and stock.updated_at is not None:
            horizon = (stock.updated_at - lateness).isoformat()
            pending = [p for p in pending if p["at"] >= horizon][-MAX_PENDING + 1 :]
            pending.append(
                {
                    "available": stock.available,
                    "at": stock.updated_at.isoformat(),
                    "cause": record["event_id"],
                }
            )
    kept = pending if owner is None else []  # sent below once the owner is known
    stored = {**stored, "stock": stock_to_json(stock), "owner": owner, "pending": kept}
    at = stock.updated_at
    if not changed or owner is None or at is None:
        return stored, []
    history = [p for p in pending if p["at"] < at.isoformat()]
    now = {"available": stock.available, "at": at.isoformat(), "cause": stored.get("cause")}
    return stored, [_item_total(record, stored, owner, entry) for entry in [*history, now]]


MAX_PENDING = 100
"""Totals kept for an item whose product is not known yet, at most."""


def _item_total(record: Stored, stored: Stored, owner: Stored, entry: Stored) -> Stored:
    return {
        "kind": "item_total",
        "store_id": record["store_id"],
        "platform": stored.get("platform", "other"),
        "item_id": record["item_id"],
        "product_id": owner["product_id"],
        "variant_id": owner["variant_id"],
        "available": entry["available"],
        "at": entry["at"],
        "cause": entry["cause"],
    }


# -- per product: the breaker ----------------------------------------------------------------------


def product_step(
    record: Stored, stored: Stored, rules_for: RulesFor[BreakerRules]
) -> tuple[Stored, list[Stored]]:
    """One record for a product: an item's total or a campaign link. Out go the pauses and
    resumes of the product's breaker and of the breaker of the item's variant, as
    CircuitBreakerAction values (``variant_id`` null for the product's), and their low-stock
    warnings as LowStockWarning values. Each observation
    uses the store's rules in effect at its time."""
    at = datetime.fromisoformat(record["at"])
    if record["kind"] == "structure":
        known = stored.get("structure")
        if known is None or known["at"] <= record["at"]:
            stored = {**stored, "structure": {"items": record["items"], "at": record["at"]}}
        return stored, []
    if record["kind"] == "link":
        campaigns = dict(stored.get("campaigns", {}))
        known = campaigns.get(record["campaign_id"])
        if known is None or (known["at"], known["event_id"]) < (record["at"], record["event_id"]):
            campaigns[record["campaign_id"]] = {
                "active": record["active"],
                "channel": record.get("channel", ""),
                "at": record["at"],
                "event_id": record["event_id"],
            }
        return {**stored, "campaigns": campaigns}, []
    items = dict(stored.get("items", {}))
    known = items.get(record["item_id"])
    if known is not None and datetime.fromisoformat(known["at"]) > at:
        return stored, []  # an older total of this item
    variant_id = record.get("variant_id")
    items[record["item_id"]] = {
        "available": record["available"],
        "at": record["at"],
        "variant_id": variant_id,
    }
    stored = {
        **stored,
        "items": items,
        "store_id": record["store_id"],
        "product_id": record["product_id"],
        "platform": record["platform"],
        "cause": record.get("cause"),
    }
    breakers = dict(stored.get("breakers", {}))
    actions = []
    scopes = [PRODUCT] + ([variant_id] if variant_id else [])
    waiting = set(stored.get("structure", {}).get("items", ())) - set(items)
    if waiting:
        scopes.remove(PRODUCT)  # not every item of the product has reported yet
    for scope in scopes:
        total = sum(
            int(item["available"])
            for item in items.values()
            if scope == PRODUCT or item.get("variant_id") == scope
        )
        breaker = state_from_json(breakers[scope]) if scope in breakers else BreakerState()
        as_of = max(at, breaker.as_of) if breaker.as_of else at
        rules = rules_for(record["store_id"], as_of)
        breaker, decisions = observe(breaker, total, as_of, rules)
        breakers[scope] = state_to_json(breaker)
        actions += _actions(stored, scope, decisions, rules)
    return {**stored, "breakers": breakers}, actions


def dwell_timer_step(
    now: datetime, stored: Stored, rules_for: RulesFor[BreakerRules]
) -> tuple[Stored, list[Stored]]:
    """The product's timer fired: stream time is ``now``, its last update plus the deployment's
    dwell. A restock that came inside a pause's dwell resumes, as of the dwell's end, even if no
    further update of this product arrives."""
    if "breakers" not in stored:
        return stored, []
    rules = rules_for(stored["store_id"], now)
    breakers = dict(stored["breakers"])
    actions = []
    for scope, state in sorted(breakers.items()):
        breaker, decisions = advance(state_from_json(state), now, rules)
        breakers[scope] = state_to_json(breaker)
        actions += _actions(stored, scope, decisions, rules)
    return {**stored, "breakers": breakers}, actions


PRODUCT = "*"
"""The product-wide breaker's scope (the others are variant ids)."""


def _actions(
    stored: Stored, scope: str, decisions: list[Decision], rules: BreakerRules
) -> list[Stored]:
    running = sorted(
        (c, link.get("channel", ""))
        for c, link in stored.get("campaigns", {}).items()
        if link["active"]
    )
    return [_output(stored, scope, d, running, rules) for d in decisions]


def _output(
    stored: Stored,
    scope: str,
    decision: Decision,
    campaigns: list[tuple[str, str]],
    rules: BreakerRules,
) -> Stored:
    """A CircuitBreakerAction value, or a LowStockWarning one (see :func:`is_warning`)."""
    store_id, product_id, at = stored["store_id"], stored["product_id"], decision.at
    name = (
        f"derived/circuit-breaker/{store_id}/{product_id}/{scope}/{decision.transition}/"
        f"{at.isoformat()}"
    )
    value: Stored = {
        "envelope": {
            "event_id": deterministic_id(name),
            "store_id": store_id,
            "platform": stored["platform"],
            # Derived in event time: a replay derives the same action, byte for byte.
            "occurred_at": at,
            "received_at": at,
            "source": "derived",
            "caused_by": [stored["cause"]] if stored.get("cause") else [],
        },
        "product_id": product_id,
        "variant_id": None if scope == PRODUCT else scope,
        "campaign_ids": [campaign for campaign, _ in campaigns],
        "campaigns": [{"campaign_id": c, "channel": channel} for c, channel in campaigns],
        "available": decision.available,
        "previous_available": decision.previous_available,
        "reason": decision.reason,
    }
    if decision.transition is Transition.LOW_STOCK:
        assert rules.low_stock_below is not None  # no warning without a threshold
        # A warning names the campaigns by id only (LowStockWarning has no channels).
        warning = {k: v for k, v in value.items() if k != "campaigns"}
        return {**warning, "threshold": rules.low_stock_below}
    return {**value, "action": decision.transition.value}


def is_warning(value: Stored) -> bool:
    """Whether a breaker output is a LowStockWarning (it has no ``action``)."""
    return "action" not in value


# -- wiring ----------------------------------------------------------------------------------------


def add_circuit_breaker(
    app: Application, settings: Settings, serde: AvroSerde, inputs: Inputs
) -> None:
    rules = inputs.rules(rules_from)

    lateness = timedelta(hours=settings.inventory_lateness_hours)
    levels = inputs.stream("commerce.inventory-levels.v1")
    products = inputs.stream("commerce.products.v1")
    links = inputs.stream("marketing.campaign-product-links.v1")
    per_item = meet(
        app,
        settings,
        "circuit-breaker-by-item",
        [levels.apply(level_record), products.apply(variant_records, expand=True)],
        lambda r: f"{r['store_id']}/{r['item_id']}",
    )
    totals = per_item.apply(
        stateful(lambda r, s: item_step(r, s, lateness)), stateful=True, expand=True
    )
    # Item totals, links and product structures meet per product.
    by_product = meet(
        app,
        settings,
        "circuit-breaker-by-product",
        [totals, links.apply(link_record), products.apply(structure_record, expand=True)],
        product_key,
    )
    per_product = by_product.set_timestamp(
        lambda value, key, ts, headers: event_time_ms(value["at"])
    )
    out, key = output_topic(app, settings, ACTION, serde), catalogue_key(ACTION)
    decided = per_product.apply(
        stateful(lambda r, s: product_step(r, s, rules)), stateful=True, expand=True
    )
    counted = inputs.metrics.breaker_action
    decided.filter(lambda v: not is_warning(v)).update(counted).to_topic(out, key=key)
    warnings = output_topic(app, settings, WARNING, serde)
    decided.filter(is_warning).to_topic(warnings, key=catalogue_key(WARNING))
    dwell = timedelta(seconds=settings.breaker_dwell_seconds)
    if dwell > timedelta(0):
        # A restock inside the dwell resumes when it ends, even if no update of the product
        # follows: the timer fires the (deployment's) dwell after its last update. Its span
        # shapes the topology, so a store's own dwell does not change it (docs/streams.md).
        timer(
            per_product,
            "dwell",
            dwell,
            timedelta(0),
            lambda now, s: dwell_timer_step(now, s, rules),
        ).update(counted).to_topic(out, key=key)
