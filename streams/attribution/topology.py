"""Attribution on quixstreams: touchpoints, orders and the lines' promotions meet per customer,
and each order's scores go to ``analytics.attribution-scores.v1``.

::

    commerce.orders.v1 ── lines ──────────┐ (store/product)
    marketing.campaign-product-links.v1 ──┴─ meet store/product ─────► promotions ─┐
    commerce.orders.v1 ── placed, refunded, cancelled ─────────────────────────────┤
    marketing.touchpoints.v1 ──────────────────────────────────────────────────────┴─ meet
        store/customer ─► customer book ─► analytics.attribution-scores.v1

Both joins meet their inputs in a topic keyed by the join key, as the circuit breaker's do.
The customer is the salted customer key; a guest order without one is its own customer
(``order/<id>``), scored on its lines' promotions alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame

from revloop.ids import deterministic_id
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.attribution.promotion import promotion_step
from streams.attribution.rules import AttributionRules, Model, TouchKind
from streams.attribution.scoring import (
    Cancelled,
    CustomerBook,
    Input,
    PlacedOrder,
    Promotion,
    Refunded,
    RefundFact,
    Score,
    TouchFact,
    observe,
)
from streams.runtime.inputs import (
    Inputs,
    RulesFor,
    Stored,
    link_record,
    meet,
    product_key,
    stateful,
)
from streams.runtime.quix import catalogue_key, output_topic

SCORE = "dev.revloop.events.AttributionScore"


def rules_from(settings: Settings) -> AttributionRules:
    return AttributionRules(
        lookback={
            TouchKind.AD_CLICK: timedelta(days=settings.attribution_click_days),
            TouchKind.AD_VIEW: timedelta(days=settings.attribution_view_days),
            TouchKind.ENGAGED_VIEW: timedelta(days=settings.attribution_engaged_view_days),
            TouchKind.CONTENT_VIEW: timedelta(days=settings.attribution_content_view_days),
        },
        incremental_at_bp=settings.attribution_incremental_at_bp,
        model=Model(settings.attribution_model),
        time_decay_half_life=timedelta(days=settings.attribution_half_life_days),
        holdout_bp=settings.attribution_holdout_bp,
    )


# -- inputs ----------------------------------------------------------------------------------------


def customer_of(order: Stored) -> str:
    return order.get("customer_key") or f"order/{order['order_id']}"


def touch_record(touchpoint: Stored) -> Stored:
    envelope = touchpoint["envelope"]
    return {
        "kind": "touch",
        "store_id": envelope["store_id"],
        "platform": envelope["platform"],
        "customer": touchpoint["customer_key"],
        "touchpoint_id": touchpoint["touchpoint_id"],
        "event_id": envelope["event_id"],
        "touch_kind": touchpoint["kind"],
        "at": envelope["occurred_at"].isoformat(),
        "campaign_id": touchpoint["campaign_id"],
        "channel": touchpoint["channel"],
    }


def order_records(order: Stored) -> list[Stored]:
    """What of an order event attribution needs: the order as placed (created or paid), a
    refund, or a cancellation. Other kinds (updated, fulfilled) change no score."""
    envelope, kind = order["envelope"], order["kind"]
    base = {
        "store_id": envelope["store_id"],
        "platform": envelope["platform"],
        "customer": customer_of(order),
        "customer_key": order.get("customer_key"),
        "order_id": order["order_id"],
        "event_id": envelope["event_id"],
        "at": envelope["occurred_at"].isoformat(),
    }
    if kind in ("created", "paid") and order.get("total"):
        lines = [[line["line_item_id"], line["product_id"]] for line in order["line_items"]]
        total = order["total"]
        return [
            {
                **base,
                "kind": "placed",
                "total_minor": total["amount_minor"],
                "currency": total["currency"],
                "lines": lines,
            }
        ]
    if kind == "refunded" and order.get("refund"):
        refund = order["refund"]
        return [
            {
                **base,
                "kind": "refunded",
                "refund_id": refund["refund_id"],
                "amount_minor": refund["amount"]["amount_minor"],
                "refund_at": refund["created_at"].isoformat(),
            }
        ]
    if kind == "cancelled":
        return [{**base, "kind": "cancelled"}]
    return []


def line_records(order: Stored) -> list[Stored]:
    """A placed order's product lines, to learn at their product whether a campaign promoted it."""
    placed = order_records(order)
    if not placed or placed[0]["kind"] != "placed":
        return []
    record = placed[0]
    return [
        {
            "kind": "line",
            "store_id": record["store_id"],
            "product_id": product_id,
            "customer": record["customer"],
            "order_id": record["order_id"],
            "line_item_id": line_item_id,
            "at": record["at"],
            "event_id": record["event_id"],
        }
        for line_item_id, product_id in record["lines"]
        if product_id
    ]


def scoring_input(record: Stored) -> Input:
    at = datetime.fromisoformat(record["at"])
    kind = record["kind"]
    if kind == "touch":
        return TouchFact(
            touchpoint_id=record["touchpoint_id"],
            event_id=record["event_id"],
            kind=TouchKind(record["touch_kind"]),
            at=at,
            campaign_id=record["campaign_id"],
            channel=record["channel"],
        )
    if kind == "placed":
        return PlacedOrder(
            order_id=record["order_id"],
            event_id=record["event_id"],
            at=at,
            total_minor=record["total_minor"],
            currency=record["currency"],
            lines=tuple((line, product) for line, product in record["lines"]),
        )
    if kind == "refunded":
        refund = RefundFact(
            refund_id=record["refund_id"],
            event_id=record["event_id"],
            at=datetime.fromisoformat(record["refund_at"]),
            amount_minor=record["amount_minor"],
        )
        return Refunded(order_id=record["order_id"], refund=refund)
    if kind == "cancelled":
        return Cancelled(order_id=record["order_id"], event_id=record["event_id"], at=at)
    return Promotion(
        order_id=record["order_id"],
        line_item_id=record["line_item_id"],
        promoted=record["promoted"],
        event_id=record["event_id"],
        at=at,
    )


# -- per customer: the scores ----------------------------------------------------------------------


def customer_step(
    record: Stored, stored: Stored, rules: RulesFor[AttributionRules], lateness: timedelta
) -> tuple[Stored, list[Stored]]:
    store_id = record["store_id"]
    book = CustomerBook.model_validate(stored["book"]) if "book" in stored else None
    if book is None:
        book = CustomerBook(customer_key=record.get("customer_key") or _touch_key(record))
    platform = record.get("platform") or stored.get("platform", "other")

    def name(what: str) -> str:
        return deterministic_id(f"derived/attribution/{store_id}/{what}")

    book, scores = observe(
        book, scoring_input(record), lambda at: rules(store_id, at), lateness, name
    )
    stored = {"book": book.model_dump(mode="json"), "platform": platform}
    return stored, [_score_value(s, store_id, platform, book.customer_key) for s in scores]


def _touch_key(record: Stored) -> str | None:
    return record["customer"] if record["kind"] == "touch" else None


def _score_value(score: Score, store_id: str, platform: str, customer_key: str | None) -> Stored:
    def money(minor: int) -> Stored:
        return {"amount_minor": minor, "currency": score.currency}

    return {
        "envelope": {
            "event_id": score.event_id,
            "store_id": store_id,
            "platform": platform,
            # Event time: a replay derives the same score, byte for byte.
            "occurred_at": score.at,
            "received_at": score.at,
            "source": "derived",
            "caused_by": list(score.caused_by),
        },
        "order_id": score.order_id,
        "customer_key": customer_key,
        "confidence_bp": score.confidence_bp,
        "is_incremental": score.is_incremental,
        "model": score.model.value,
        "order_total": money(score.order_total_minor),
        "incremental_revenue": money(score.incremental_minor),
        "revenue_change": money(score.revenue_change_minor),
        "credits": [
            {
                "touchpoint_id": c.touchpoint_id,
                "campaign_id": c.campaign_id,
                "channel": c.channel,
                "weight_bp": c.weight_bp,
                "amount": money(c.amount_minor),
            }
            for c in score.credits
        ],
        "signals": list(score.signals),
        "holdout": score.holdout,
        "reverses": score.reverses,
    }


# -- wiring ----------------------------------------------------------------------------------------


def add_attribution(
    app: Application, settings: Settings, serde: AvroSerde, inputs: Inputs
) -> StreamingDataFrame:
    """The attribution stages; returns the stream of scores (the ledger books them)."""

    rules = inputs.rules(rules_from)

    lateness = timedelta(hours=settings.attribution_lateness_hours)
    orders = inputs.stream("commerce.orders.v1")
    lines = meet(
        app,
        settings,
        "attribution-by-product",
        [
            orders.apply(line_records, expand=True),
            inputs.stream("marketing.campaign-product-links.v1").apply(link_record),
        ],
        product_key,
    )
    promotions = lines.apply(
        stateful(lambda r, s: promotion_step(r, s, lateness)), stateful=True, expand=True
    )
    scores = meet(
        app,
        settings,
        "attribution-by-customer",
        [
            inputs.stream("marketing.touchpoints.v1").apply(touch_record),
            orders.apply(order_records, expand=True),
            promotions,
        ],
        lambda r: f"{r['store_id']}/{r['customer']}",
    ).apply(stateful(lambda r, s: customer_step(r, s, rules, lateness)), stateful=True, expand=True)
    out = output_topic(app, settings, SCORE, serde)
    scores.to_topic(out, key=catalogue_key(SCORE))
    return scores
