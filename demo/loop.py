"""The loop's half of the demo: what `revloop worker` made of this run's events (docs/demo.md).

The worker's pauses and resumes are matched against the simulation's own table of sell-outs and
restocks, and every order of the run must have an attribution score. Pure: records in, an
outcome out; the demo polls the topics and calls :func:`loop_outcome` until nothing is missing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from demo.simulation import StockMoment

ACTIONS: Final = "actions.circuit-breaker.v1"
SCORES: Final = "analytics.attribution-scores.v1"
TRIGGERS: Final = "lifecycle.triggers.v1"
LOOP_TOPICS: Final = (ACTIONS, SCORES, TRIGGERS)

# The inventory webhook's time can trail the order that emptied the shelf by a little.
TOLERANCE: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class StoreScores:
    orders: int
    scored: int
    incremental: int
    currency: str
    incremental_minor: int
    """What stands after reversals (refunds, corrections), in minor units."""
    reversals: int
    holdout: int


@dataclass
class LoopOutcome:
    stock: list[dict[str, Any]]
    """Each stock moment with the action that answered it: ``action_at`` (ISO) or None."""
    whole_products: list[dict[str, Any]]
    """Product-wide pauses and resumes of multi-variant products (every variant sold out)."""
    scores: dict[str, StoreScores]
    triggers: dict[str, int]
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def loop_outcome(
    moments: Sequence[StockMoment],
    orders: Mapping[str, Mapping[str, str]],
    records: Iterable[tuple[str, dict[str, Any]]],
) -> LoopOutcome:
    """``orders``: store id → order id → currency, the run's orders (created or paid).
    ``records``: (topic, value) read from the loop's topics since the run began. Every store's
    stock reaches the canonical topics (BigCommerce's once the hydrator has read it), so every
    moment must be answered."""
    actions, scores, triggers = [], [], []
    for name, value in records:
        if name == ACTIONS:
            actions.append(value)
        elif name == SCORES and value["order_id"] in orders.get(value["envelope"]["store_id"], {}):
            scores.append(value)
        elif name == TRIGGERS and value["envelope"]["store_id"] in orders:
            triggers.append(value)
    run_products = {(m.store_id, m.product_id) for m in moments}
    actions = sorted(
        (a for a in actions if (a["envelope"]["store_id"], a["product_id"]) in run_products),
        key=lambda a: a["envelope"]["occurred_at"],
    )
    outcome = LoopOutcome(
        [], [], _scores(orders, scores), dict(Counter(t["flow"] for t in triggers))
    )
    used: set[str] = set()
    for moment in moments:
        want = "pause" if moment.kind == "sold_out" else "resume"
        match = next(
            (
                a
                for a in actions
                if a["envelope"]["event_id"] not in used
                and a["action"] == want
                and (a["envelope"]["store_id"], a["product_id"], a["variant_id"])
                == (moment.store_id, moment.product_id, moment.variant_id)
                and abs(a["envelope"]["occurred_at"] - moment.at) <= TOLERANCE
            ),
            None,
        )
        if match is not None:
            used.add(match["envelope"]["event_id"])
        else:
            outcome.missing.append(f"no {want} for {moment.product} at {moment.store_id}")
        at: datetime | None = match["envelope"]["occurred_at"] if match else None
        outcome.stock.append(
            {
                "store_id": moment.store_id,
                "product": moment.product,
                "kind": moment.kind,
                "at": moment.at.isoformat(),
                "action_at": at.isoformat() if at else None,
                "campaigns": list(match["campaign_ids"]) if match else [],
            }
        )
    for action in actions:
        if action["envelope"]["event_id"] in used:
            continue
        if action["variant_id"] is None:
            outcome.whole_products.append(
                {
                    "store_id": action["envelope"]["store_id"],
                    "product_id": action["product_id"],
                    "action": action["action"],
                    "at": action["envelope"]["occurred_at"].isoformat(),
                }
            )
        else:
            outcome.problems.append(
                f"{action['envelope']['store_id']}: an unexpected {action['action']} of variant "
                f"{action['variant_id']} at {action['envelope']['occurred_at']:%H:%M}"
            )
    for store_id, ids in orders.items():
        unscored = set(ids) - {
            s["order_id"] for s in scores if s["envelope"]["store_id"] == store_id
        }
        if unscored:
            outcome.missing.append(f"{store_id}: {len(unscored)} orders without a score")
    return outcome


def _scores(
    orders: Mapping[str, Mapping[str, str]], scores: Sequence[dict[str, Any]]
) -> dict[str, StoreScores]:
    by_store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for score in scores:
        by_store[score["envelope"]["store_id"]].append(score)
    reversed_ids = {s["reverses"] for s in scores if s["reverses"]}
    summary = {}
    for store_id, ids in sorted(orders.items()):
        mine = by_store.get(store_id, [])
        standing = [
            s for s in mine if not s["reverses"] and s["envelope"]["event_id"] not in reversed_ids
        ]
        currencies = {s["incremental_revenue"]["currency"] for s in mine} or set(ids.values())
        summary[store_id] = StoreScores(
            orders=len(ids),
            scored=len({s["order_id"] for s in mine}),
            incremental=sum(1 for s in standing if s["is_incremental"]),
            currency="/".join(sorted(currencies)),
            incremental_minor=sum(s["incremental_revenue"]["amount_minor"] for s in mine),
            reversals=sum(1 for s in mine if s["reverses"]),
            holdout=sum(1 for s in standing if s["holdout"]),
        )
    return summary
