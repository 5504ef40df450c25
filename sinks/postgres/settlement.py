"""`revloop settle`: a store's month, billed from its ledger (docs/ledger.md).

Settling reads the entries booked in the period, computes the attributed-incremental plan
(:func:`revloop.ledger.settle`: the net incremental revenue, the fee rounded once, each order's
share), and, in one transaction under the store's ledger lock:

- appends the fee entry (success fee, or a credit note) to the store's chain;
- stores the invoice per currency;
- closes the period: an entry of it that arrives later is booked in the next open period.

Settling a settled period changes nothing and gives the same invoice. The invoice and its proof
are recomputed from the ledger alone by :func:`recompute`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from revloop.ledger import Booked, Code, Settlement, entry_value, fee_entry, settle
from revloop.settings import Settings
from revloop.stores.store_settings import StoreSettings, settings_histories
from sinks.postgres.ledger import append_entries
from sinks.postgres.rows import ledger_rows

PLAN = "attributed_incremental"


class SettlementError(ValueError):
    """The period cannot be settled (not over yet, malformed, nothing to read)."""


@dataclass(frozen=True)
class Invoice:
    document: dict[str, Any]
    """The invoice JSON."""
    proof_csv: str
    """One row per billed order; its amounts sum to the invoice's."""


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The period's first instant and the next period's (UTC)."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise SettlementError(f"{period!r} is not a month like 2026-11") from None
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following


def settle_period(
    conn: psycopg.Connection[Any], settings: Settings, store_id: str, period: str, now: datetime
) -> list[Invoice]:
    """Settle ``period`` of ``store_id`` (once; again gives the stored invoices)."""
    _, end = period_bounds(period)
    if now < end:
        raise SettlementError(f"{period} is not over yet (it ends {end.isoformat()})")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ledger:' || %s))", (store_id,))
        closed = conn.execute(
            "SELECT 1 FROM billing_periods WHERE store_id = %s AND period = %s",
            (store_id, period),
        ).fetchone()
        if closed:
            return _stored(conn, store_id, period)
        # The store's fee as its settings say at the period's last instant.
        fee_bp = _fee_bp(settings, store_id, end - timedelta(microseconds=1))
        settled = settle(_booked(conn, store_id, period), fee_bp)
        platform = _platform(conn, store_id)
        fees = [
            fee_entry(store_id, platform, s.currency, period, s.fee_minor, end) for s in settled
        ]
        append_entries(
            conn, [row for e in fees if e is not None for row in ledger_rows(entry_value(e))]
        )
        invoices = [_invoice(conn, store_id, period, fee_bp, s) for s in settled]
        for invoice, s in zip(invoices, settled, strict=True):
            conn.execute(
                "INSERT INTO invoices (store_id, period, currency, plan, document, settled_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (store_id, period, s.currency, PLAN, Jsonb(invoice.document), now),
            )
        conn.execute(
            "INSERT INTO billing_periods (store_id, period, closed_at) VALUES (%s, %s, %s)",
            (store_id, period, now),
        )
    return invoices


def preview(
    conn: psycopg.Connection[Any], settings: Settings, store_id: str, period: str, now: datetime
) -> list[Invoice]:
    """The invoices the period would get if settled now (it may still be running): nothing is
    posted, stored or closed."""
    _, end = period_bounds(period)
    fee_bp = _fee_bp(settings, store_id, min(now, end - timedelta(microseconds=1)))
    settled = settle(_booked(conn, store_id, period), fee_bp)
    return [_invoice(conn, store_id, period, fee_bp, s) for s in settled]


def _stored(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Invoice]:
    """A settled period's invoices as stored, with their proofs from the ledger."""
    documents = stored_invoices(conn, store_id, period)
    if not documents:
        return []  # settled with nothing booked
    proofs = {i.document["currency"]: i.proof_csv for i in recompute(conn, store_id, period)}
    return [Invoice(d, proofs.get(d["currency"], "")) for d in documents]


def recompute(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Invoice]:
    """The period's invoices from its ledger entries alone (its fee entry aside), at the fee
    the stored invoice names: what an auditor does to check one."""
    stored = conn.execute(
        "SELECT currency, document FROM invoices WHERE store_id = %s AND period = %s"
        " ORDER BY currency",
        (store_id, period),
    ).fetchall()
    if not stored:
        closed = conn.execute(
            "SELECT 1 FROM billing_periods WHERE store_id = %s AND period = %s",
            (store_id, period),
        ).fetchone()
        if closed:
            return []  # settled with nothing booked: nothing to recompute
        raise SettlementError(f"{store_id} {period} has no invoice (not settled)")
    fee_bp = int(stored[0][1]["fee_bp"])
    settled = settle(_booked(conn, store_id, period), fee_bp)
    return [_invoice(conn, store_id, period, fee_bp, s) for s in settled]


def stored_invoices(
    conn: psycopg.Connection[Any], store_id: str, period: str
) -> list[dict[str, Any]]:
    return [
        document
        for (document,) in conn.execute(
            "SELECT document FROM invoices WHERE store_id = %s AND period = %s ORDER BY currency",
            (store_id, period),
        )
    ]


def _fee_bp(settings: Settings, store_id: str, at: datetime) -> int:
    """The store's success fee as its settings say at ``at``."""
    stores = StoreSettings(settings, settings_histories(settings.stores_file))
    return stores.at(store_id, at).billing_fee_bp


def _booked(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Booked]:
    return [
        Booked(entry_id, code, amount, currency, order_id, tuple(caused_by))
        for entry_id, code, amount, currency, order_id, caused_by in conn.execute(
            "SELECT entry_id, code, amount_minor, currency, order_id, caused_by"
            " FROM ledger_entries"
            " WHERE store_id = %s AND booked_period = %s AND code = ANY(%s) ORDER BY seq",
            (
                store_id,
                period,
                [Code.ATTRIBUTED_REVENUE.value, Code.ATTRIBUTED_REVENUE_REVERSAL.value],
            ),
        )
    ]


def _platform(conn: psycopg.Connection[Any], store_id: str) -> str:
    found = conn.execute("SELECT platform FROM stores WHERE store_id = %s", (store_id,)).fetchone()
    return str(found[0]) if found else "other"


def _invoice(
    conn: psycopg.Connection[Any], store_id: str, period: str, fee_bp: int, s: Settlement
) -> Invoice:
    scores = _scores_of(conn, s)
    billed = [line for line in s.lines if line.incremental_minor > 0]
    confidences = [scores[o]["confidence_bp"] for o in (b.order_id for b in billed) if o in scores]
    document = {
        "store_id": store_id,
        "period": period,
        "plan": PLAN,
        "currency": s.currency,
        "fee_bp": fee_bp,
        "baseline": None,
        "incremental_revenue_minor": s.incremental_minor,
        "gained_minor": sum(x.incremental_minor for x in s.lines if x.incremental_minor > 0),
        "reversed_minor": -sum(x.incremental_minor for x in s.lines if x.incremental_minor < 0),
        "fee_minor": s.fee_minor,
        "attributed_orders": len(billed),
        "adjusted_orders": len(s.lines) - len(billed),
        "average_confidence_bp": round(sum(confidences) / len(confidences))
        if confidences
        else None,
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "order_id",
            "incremental_minor",
            "fee_minor",
            "currency",
            "confidence_bp",
            "campaigns",
            "touchpoint_ids",
            "ledger_entry_ids",
        ]
    )
    for line in s.lines:
        score = scores.get(line.order_id, {})
        credits = score.get("credits") or []
        writer.writerow(
            [
                line.order_id,
                line.incremental_minor,
                line.fee_minor,
                s.currency,
                score.get("confidence_bp", ""),
                " ".join(sorted({c["campaign_id"] for c in credits if c.get("campaign_id")})),
                " ".join(sorted({c["touchpoint_id"] for c in credits})),
                " ".join(line.entry_ids),
            ]
        )
    return Invoice(document, out.getvalue())


def _scores_of(conn: psycopg.Connection[Any], s: Settlement) -> dict[str, dict[str, Any]]:
    """Each order's latest score among those its entries in the period book (found through the
    entries' ``caused_by``, so a later correction of the order changes no settled proof)."""
    ids = sorted({score for line in s.lines for score in line.scores})
    return {
        order_id: {"confidence_bp": confidence, "credits": credits}
        for order_id, confidence, credits in conn.execute(
            """
            SELECT DISTINCT ON (order_id) order_id, confidence_bp, credits
            FROM attribution_scores
            WHERE event_id = ANY(%s) AND reverses IS NULL
            ORDER BY order_id, occurred_at DESC, event_id DESC
            """,
            (ids,),
        )
    }


def as_text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
