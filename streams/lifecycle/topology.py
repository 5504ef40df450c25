"""Lifecycle on quixstreams: orders per customer, and the triggers their state calls for, to
``lifecycle.triggers.v1``.

::

    commerce.orders.v1 ─ placed ─ meet store/customer ─────┬─► customer state ─► post_purchase,
                                                           │                    repeat_customer
                                                           ├─ session timer (churn check) ─┐
                                                           └─ session timer (win back) ────┴─►
                                                                 customer state ─► churn_risk,
                                                                                   win_back

The time-driven flows need a timer per customer that fires without that customer's next event.
quixstreams has no punctuation, but its session windows close on the *partition's* stream time
(``closing_strategy="partition"``): a session with an inactivity gap of half a span, closed
``last order + 2 * gap`` later, is a timer due exactly a span after the customer's last order.
When it fires, the customer's state decides (:func:`streams.lifecycle.rules.advance`): a later
order since then has moved the due time, and that order's own timer fires instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from quixstreams import Application

from revloop.ids import deterministic_id
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.lifecycle.rules import (
    CustomerState,
    LifecycleRules,
    Order,
    Trigger,
    advance,
    record_order,
)
from streams.runtime.inputs import Inputs, Stored, event_time_ms, meet, stateful, timer
from streams.runtime.quix import catalogue_key, output_topic

TRIGGER = "dev.revloop.events.LifecycleTrigger"


def rules_from(settings: Settings) -> LifecycleRules:
    return LifecycleRules(
        win_back_after=timedelta(days=settings.lifecycle_win_back_days),
        churn_factor=settings.lifecycle_churn_factor,
        churn_after=timedelta(days=settings.lifecycle_churn_after_days),
    )


def placed_record(order: Stored) -> list[Stored]:
    """A created or paid order of a known customer (guests have no lifecycle)."""
    envelope = order["envelope"]
    if order["kind"] not in ("created", "paid") or not order["customer_id"] or not order["total"]:
        return []
    return [
        {
            "store_id": envelope["store_id"],
            "platform": envelope["platform"],
            "customer_id": order["customer_id"],
            "customer_key": order["customer_key"],
            "order_id": order["order_id"],
            "event_id": envelope["event_id"],
            "at": envelope["occurred_at"].isoformat(),
            "total_minor": order["total"]["amount_minor"],
            "currency": order["total"]["currency"],
        }
    ]


def order_step(
    record: Stored, stored: Stored, rules: LifecycleRules
) -> tuple[Stored, list[Stored]]:
    state = state_from_json(stored.get("state", {}))
    order = Order(
        record["order_id"],
        datetime.fromisoformat(record["at"]),
        record["total_minor"],
        record["currency"],
    )
    state, triggers = record_order(state, order, rules)
    who = {k: record[k] for k in ("store_id", "platform", "customer_id", "customer_key")}
    # A trigger names the order event it follows: this one, or the last order before it.
    causes = {**stored.get("causes", {}), record["order_id"]: record["event_id"]}
    stored = {**stored, **who, "state": state_to_json(state), "causes": causes}
    outputs = [_trigger(t, stored) for t in triggers]
    last = state.last_order_id
    stored["causes"] = {last: causes[last]} if last in causes else {}
    return stored, outputs


def timer_step(now: datetime, stored: Stored, rules: LifecycleRules) -> tuple[Stored, list[Stored]]:
    """A customer's timer fired: the partition's stream time is ``now``, a span (and the
    lateness) after their last order. What fell due by then is triggered."""
    if "state" not in stored:
        return stored, []
    state, triggers = advance(state_from_json(stored["state"]), now, rules)
    stored = {**stored, "state": state_to_json(state)}
    return stored, [_trigger(t, stored) for t in triggers]


def _trigger(trigger: Trigger, stored: Stored) -> Stored:
    store_id, customer_id = stored["store_id"], stored["customer_id"]
    anchor = trigger.order_id or ""
    trigger_id = deterministic_id(
        f"derived/lifecycle/{store_id}/{customer_id}/{trigger.flow}/{anchor}"
    )
    cause = stored.get("causes", {}).get(anchor)
    return {
        "envelope": {
            "event_id": trigger_id,
            "store_id": store_id,
            "platform": stored["platform"],
            "occurred_at": trigger.due_at,
            "received_at": trigger.due_at,
            "source": "derived",
            "caused_by": [cause] if cause else [],
        },
        "trigger_id": trigger_id,
        "flow": trigger.flow.value,
        "customer_id": customer_id,
        "customer_key": stored["customer_key"],
        "order_id": trigger.order_id,
        "product_id": None,
        "due_at": trigger.due_at,
    }


def state_to_json(state: CustomerState) -> Stored:
    def iso(at: datetime | None) -> str | None:
        return at.isoformat() if at else None

    return {
        "order_ids": list(state.order_ids),
        "spent": [list(pair) for pair in state.spent],
        "first_order_at": iso(state.first_order_at),
        "last_order_at": iso(state.last_order_at),
        "last_order_id": state.last_order_id,
        "win_back_sent_for": iso(state.win_back_sent_for),
        "churn_risk_sent_for": iso(state.churn_risk_sent_for),
    }


def state_from_json(stored: Stored) -> CustomerState:
    def at(name: str) -> datetime | None:
        value = stored.get(name)
        return datetime.fromisoformat(value) if value else None

    return CustomerState(
        order_ids=tuple(stored.get("order_ids", ())),
        spent=tuple((currency, int(minor)) for currency, minor in stored.get("spent", ())),
        first_order_at=at("first_order_at"),
        last_order_at=at("last_order_at"),
        last_order_id=stored.get("last_order_id"),
        win_back_sent_for=at("win_back_sent_for"),
        churn_risk_sent_for=at("churn_risk_sent_for"),
    )


def add_lifecycle(app: Application, settings: Settings, serde: AvroSerde, inputs: Inputs) -> None:
    rules = rules_from(settings)
    grace = timedelta(hours=settings.lifecycle_lateness_hours)
    placed = inputs.stream("commerce.orders.v1").apply(placed_record, expand=True)
    per_customer = meet(
        app,
        settings,
        "lifecycle-by-customer",
        [placed],
        lambda r: f"{r['store_id']}/{r['customer_id']}",
    ).set_timestamp(lambda value, key, ts, headers: event_time_ms(value["at"]))
    out, key = output_topic(app, settings, TRIGGER, serde), catalogue_key(TRIGGER)
    per_customer.apply(
        stateful(lambda r, s: order_step(r, s, rules)), stateful=True, expand=True
    ).to_topic(out, key=key)
    for name, span in (("churn-check", rules.churn_after), ("win-back", rules.win_back_after)):
        due = timer(
            per_customer, f"lifecycle-{name}", span, grace, lambda now, s: timer_step(now, s, rules)
        )
        due.to_topic(out, key=key)
