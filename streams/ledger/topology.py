"""The ledger entries the worker books (revloop/ledger.py), written to ``billing.ledger-entries.v1``
in the same transaction as what caused them:

- each attribution score's, with the score itself: a score is never without its entries, nor an
  entry without its score;
- each touchpoint's media cost, as ad spend;
- each campaign spend report's difference from the day's standing report (more spend, or a
  restatement down), kept per campaign in a state store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame

from revloop.ledger import (
    DaySpend,
    entry_value,
    score_entries,
    spend_report_entries,
    touch_spend_entries,
)
from revloop.settings import Settings
from schemas.serde import AvroSerde
from streams.runtime.inputs import Inputs, Stored, stateful
from streams.runtime.quix import catalogue_key, output_topic

ENTRY = "dev.revloop.events.LedgerEntry"
TOUCHPOINTS = "marketing.touchpoints.v1"
SPEND_REPORTS = "marketing.campaign-spend.v1"


def entries(score: Stored) -> list[Stored]:
    return [entry_value(entry) for entry in score_entries(score)]


def touch_spend(touchpoint: Stored) -> list[Stored]:
    return [entry_value(entry) for entry in touch_spend_entries(touchpoint)]


def spend_step(report: Stored, stored: dict[str, Any]) -> tuple[dict[str, Any], list[Stored]]:
    """One campaign's spend reports (state: each day's standing report)."""
    day = report["day"].isoformat()
    held = stored.get(day)
    standing = (
        DaySpend(
            datetime.fromisoformat(held["reported_at"]),
            held["amount_minor"],
            held["currency"],
            held["event_id"],
        )
        if held
        else None
    )
    booked, now = spend_report_entries(standing, report)
    if now is not None and now is not standing:
        stored = {
            **stored,
            day: {
                "reported_at": now.reported_at.isoformat(),
                "amount_minor": now.amount_minor,
                "currency": now.currency,
                "event_id": now.event_id,
            },
        }
    return stored, [entry_value(entry) for entry in booked]


def add_ledger(
    app: Application,
    settings: Settings,
    serde: AvroSerde,
    inputs: Inputs,
    scores: StreamingDataFrame,
) -> None:
    out = output_topic(app, settings, ENTRY, serde)
    key = catalogue_key(ENTRY)
    scores.apply(entries, expand=True).to_topic(out, key=key)
    inputs.stream(TOUCHPOINTS).apply(touch_spend, expand=True).to_topic(out, key=key)
    reports = inputs.stream(SPEND_REPORTS)
    reports.apply(stateful(spend_step), stateful=True, expand=True).to_topic(out, key=key)
