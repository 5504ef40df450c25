"""Which order lines a running campaign promoted, per product. Pure.

A line is promoted when, at its order's time, some campaign linked to its product was active:
each campaign's latest link change at or before that time decides. Lines are kept for the
lateness, so a link change that arrives late (after orders it covers) promotes or demotes them
again, and the customer's scores are corrected from there (:mod:`streams.attribution.scoring`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

Stored = dict[str, Any]


def promotion_step(
    record: Stored, stored: Stored, lateness: timedelta
) -> tuple[Stored, list[Stored]]:
    """One record for a product: a campaign link or an order line. Out go the lines whose
    promotion is new or changed, keyed (``customer``) for the customer's scores."""
    campaigns: dict[str, list[list[Any]]] = {
        c: list(changes) for c, changes in stored.get("campaigns", {}).items()
    }
    lines: dict[str, Stored] = dict(stored.get("lines", {}))
    newest = max(filter(None, (stored.get("newest"), record["at"])))
    out = []
    if record["kind"] == "link":
        change = [record["at"], record["active"], record["event_id"]]
        history = campaigns.setdefault(record["campaign_id"], [])
        if change not in history:
            history.append(change)
            history.sort()
            for key, line in lines.items():
                promoted = promoted_by(campaigns, line["at"])
                if promoted != line["campaigns"]:
                    lines[key] = {**line, "campaigns": promoted, "event_id": record["event_id"]}
                    out.append(_promotion(lines[key]))
    else:
        key = f"{record['order_id']}/{record['line_item_id']}"
        known = lines.get(key)
        if known is None or record["at"] < known["at"]:  # the order's earliest placed time
            line = {
                "store_id": record["store_id"],
                "customer": record["customer"],
                "order_id": record["order_id"],
                "line_item_id": record["line_item_id"],
                "at": record["at"],
                "campaigns": promoted_by(campaigns, record["at"]),
                "event_id": record["event_id"],
            }
            lines[key] = line
            out.append(_promotion(line))
    horizon = (datetime.fromisoformat(newest) - lateness).isoformat()
    lines = {k: line for k, line in lines.items() if line["at"] >= horizon}
    for history in campaigns.values():
        # What decides any kept line: the changes since the horizon, and the last one before.
        before = [change for change in history if change[0] < horizon]
        history[:] = before[-1:] + [change for change in history if change[0] >= horizon]
    return {"campaigns": campaigns, "lines": lines, "newest": newest}, out


def promoted_by(campaigns: dict[str, list[list[Any]]], at: str) -> list[str]:
    """The campaigns active at ``at`` (ISO time), by id."""
    active = []
    for campaign_id, history in sorted(campaigns.items()):
        decided = [change for change in history if change[0] <= at]
        if decided and decided[-1][1]:
            active.append(campaign_id)
    return active


def _promotion(line: Stored) -> Stored:
    return {
        "kind": "promotion",
        "store_id": line["store_id"],
        "customer": line["customer"],
        "order_id": line["order_id"],
        "line_item_id": line["line_item_id"],
        "promoted": bool(line["campaigns"]),
        "event_id": line["event_id"],
        "at": line["at"],
    }
