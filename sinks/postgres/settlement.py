"""`revloop settle`: a store's month, billed from its ledger (docs/ledger.md).

Settling reads the entries booked in the period and computes the store's plan
(:func:`revloop.billing.settle`). In one transaction under the store's ledger lock it:

- books the baseline the period is measured against (baseline uplift), from the stores table;
- appends the fee entry (success fee, or a credit note) to the store's chain;
- stores the invoice per currency;
- closes the period: an entry of it that arrives later is booked in the next open period.

Settling a settled period changes nothing and gives the same invoice. The invoice and its proof
are recomputed from the ledger alone (and the terms the invoice names) by :func:`recompute`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from revloop.billing import BP, Booked, Plan, Settlement, Terms, settle
from revloop.ledger import Code, baseline_entry, entry_value, fee_entry
from revloop.settings import Settings
from revloop.stores.registry import file_entries
from revloop.stores.store_settings import StoreSettings, settings_histories
from sinks.postgres.ledger import append_entries
from sinks.postgres.rows import ledger_rows

_FEES = (Code.SUCCESS_FEE.value, Code.SUCCESS_FEE_REVERSAL.value)


class SettlementError(ValueError):
    """The period cannot be settled (not over yet, malformed, no baseline, not settled)."""


@dataclass(frozen=True)
class Invoice:
    document: dict[str, Any]
    """The invoice JSON."""
    proof_csv: str
    """One row per billed order; its amounts sum to the invoice's."""
    spend_csv: str = ""
    """ROAS profit share: one row per ad-spend entry; its amounts sum to the invoice's spend."""


@dataclass(frozen=True)
class Baseline:
    """A store's baseline figures (the stores table)."""

    monthly_revenue_minor: int | None
    currency: str | None
    roas_bp: int | None
    source: str | None
    set_at: datetime | None


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
        # The contract as the store's settings say at the period's last instant.
        terms = _terms(conn, settings, store_id, end - timedelta(microseconds=1))
        platform = _platform(conn, store_id)
        booked = [
            baseline_entry(store_id, platform, currency, period, amount, end)
            for currency, amount in _baseline_of(conn, store_id, terms)
        ]
        append_entries(conn, [row for e in booked for row in ledger_rows(entry_value(e))])
        settled = settle(_booked(conn, store_id, period), terms)
        fees = [
            fee_entry(store_id, platform, s.currency, period, s.fee_minor, end) for s in settled
        ]
        append_entries(
            conn, [row for e in fees if e is not None for row in ledger_rows(entry_value(e))]
        )
        invoices = [_invoice(conn, store_id, period, terms, s) for s in settled]
        for invoice, s in zip(invoices, settled, strict=True):
            conn.execute(
                "INSERT INTO invoices (store_id, period, currency, plan, document, settled_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (store_id, period, s.currency, terms.plan.value, Jsonb(invoice.document), now),
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
    terms = _terms(conn, settings, store_id, min(now, end - timedelta(microseconds=1)))
    baseline = [
        Booked(f"(baseline {currency}, not booked)", Code.BASELINE.value, amount, currency, None)
        for currency, amount in _baseline_of(conn, store_id, terms)
    ]
    settled = settle([*_booked(conn, store_id, period), *baseline], terms)
    return [_invoice(conn, store_id, period, terms, s) for s in settled]


def _stored(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Invoice]:
    """A settled period's invoices as stored, with their proofs from the ledger."""
    documents = stored_invoices(conn, store_id, period)
    if not documents:
        return []  # settled with nothing booked
    again = {i.document["currency"]: i for i in recompute(conn, store_id, period)}
    return [
        Invoice(d, again[d["currency"]].proof_csv, again[d["currency"]].spend_csv)
        if d["currency"] in again
        else Invoice(d, "")
        for d in documents
    ]


def recompute(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Invoice]:
    """The period's invoices from its ledger entries alone (its fee entries aside), on the
    terms the stored invoice names: what an auditor does to check one."""
    stored = stored_invoices(conn, store_id, period)
    if not stored:
        closed = conn.execute(
            "SELECT 1 FROM billing_periods WHERE store_id = %s AND period = %s",
            (store_id, period),
        ).fetchone()
        if closed:
            return []  # settled with nothing booked: nothing to recompute
        raise SettlementError(f"{store_id} {period} has no invoice (not settled)")
    named = stored[0]["terms"]
    terms = Terms(
        Plan(named["plan"]),
        int(named["fee_bp"]),
        int(named["growth_bp"]),
        int(named["baseline_roas_bp"]),
    )
    settled = settle(_booked(conn, store_id, period), terms)
    return [_invoice(conn, store_id, period, terms, s) for s in settled]


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


# -- the baseline -----------------------------------------------------------------------------


def baseline_of(conn: psycopg.Connection[Any], store_id: str) -> Baseline:
    found = conn.execute(
        "SELECT baseline_monthly_revenue_minor, baseline_currency, baseline_roas_bp,"
        " baseline_source, baseline_set_at FROM stores WHERE store_id = %s",
        (store_id,),
    ).fetchone()
    return Baseline(*found) if found else Baseline(None, None, None, None, None)


def set_baseline(
    conn: psycopg.Connection[Any],
    settings: Settings,
    store_id: str,
    *,
    monthly_revenue_minor: int | None,
    currency: str | None,
    roas_bp: int | None,
    source: str,
    now: datetime,
) -> Baseline:
    """Set a store's baseline figures in the stores table (what is not given stays). A period
    settled already keeps the baseline it booked."""
    if monthly_revenue_minor is not None:
        if monthly_revenue_minor <= 0:
            raise SettlementError("a baseline monthly revenue is more than 0")
        if currency is None or not re.fullmatch(r"[A-Z]{3}", currency):
            raise SettlementError("a baseline revenue needs its ISO 4217 currency, e.g. USD")
    if roas_bp is not None and roas_bp <= 0:
        raise SettlementError("a baseline ROAS is more than 0")
    store = _store_entry(settings, store_id)
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO stores (store_id, platform, identity, currency, updated_at,
                baseline_monthly_revenue_minor, baseline_currency, baseline_roas_bp,
                baseline_source, baseline_set_at)
            VALUES (%(store)s, %(platform)s, %(identity)s, %(store_currency)s, %(now)s,
                %(revenue)s, %(currency)s, %(roas)s, %(source)s, %(now)s)
            ON CONFLICT (store_id) DO UPDATE SET
                baseline_monthly_revenue_minor = coalesce(%(revenue)s,
                    stores.baseline_monthly_revenue_minor),
                baseline_currency = coalesce(%(currency)s, stores.baseline_currency),
                baseline_roas_bp = coalesce(%(roas)s, stores.baseline_roas_bp),
                baseline_source = %(source)s, baseline_set_at = %(now)s
            """,
            {
                "store": store_id,
                "platform": store.get("platform", "other"),
                "identity": store.get("identity", store_id),
                "store_currency": store.get("currency"),
                "now": now,
                "revenue": monthly_revenue_minor,
                "currency": currency if monthly_revenue_minor is not None else None,
                "roas": roas_bp,
                "source": source,
            },
        )
    return baseline_of(conn, store_id)


def _store_entry(settings: Settings, store_id: str) -> dict[str, Any]:
    path = settings.stores_file
    for entry in file_entries(path) if path.exists() else []:
        if isinstance(entry, dict) and entry.get("store_id") == store_id:
            return entry
    raise SettlementError(f"no store {store_id!r} in {path}")


def _baseline_of(
    conn: psycopg.Connection[Any], store_id: str, terms: Terms
) -> list[tuple[str, int]]:
    """Baseline uplift: the (currency, monthly revenue) to book for the period."""
    if terms.plan is not Plan.BASELINE_UPLIFT:
        return []
    baseline = baseline_of(conn, store_id)
    if baseline.monthly_revenue_minor is None or baseline.currency is None:
        raise SettlementError(
            f"{store_id} bills on baseline uplift but has no baseline:"
            " set one with `revloop stores baseline set`"
        )
    return [(baseline.currency, baseline.monthly_revenue_minor)]


# -- reading the ledger -------------------------------------------------------------------------


def _terms(conn: psycopg.Connection[Any], settings: Settings, store_id: str, at: datetime) -> Terms:
    """The store's contract as its settings say at ``at``; the baseline ROAS is the stores
    table's, else the deployment's default."""
    stores = StoreSettings(settings, settings_histories(settings.stores_file))
    own = stores.at(store_id, at)
    plan = Plan(own.billing_plan)
    roas = baseline_of(conn, store_id).roas_bp or settings.billing_baseline_roas_bp
    return Terms(
        plan=plan,
        fee_bp=own.billing_roas_share_bp if plan is Plan.ROAS_PROFIT_SHARE else own.billing_fee_bp,
        growth_bp=own.billing_growth_bp,
        baseline_roas_bp=roas,
    )


def _booked(conn: psycopg.Connection[Any], store_id: str, period: str) -> list[Booked]:
    return [
        Booked(entry_id, code, amount, currency, order_id, tuple(caused_by))
        for entry_id, code, amount, currency, order_id, caused_by in conn.execute(
            "SELECT entry_id, code, amount_minor, currency, order_id, caused_by"
            " FROM ledger_entries"
            " WHERE store_id = %s AND booked_period = %s AND code <> ALL(%s) ORDER BY seq",
            (store_id, period, list(_FEES)),
        )
    ]


def _platform(conn: psycopg.Connection[Any], store_id: str) -> str:
    found = conn.execute("SELECT platform FROM stores WHERE store_id = %s", (store_id,)).fetchone()
    return str(found[0]) if found else "other"


# -- the invoice ----------------------------------------------------------------------------------


def _invoice(
    conn: psycopg.Connection[Any], store_id: str, period: str, terms: Terms, s: Settlement
) -> Invoice:
    scores = _scores_of(conn, s)
    confidences = [scores[o]["confidence_bp"] for o, _, _ in s.attributed if o in scores]
    plan = terms.plan
    document = {
        "store_id": store_id,
        "period": period,
        "plan": plan.value,
        "currency": s.currency,
        "terms": {
            "plan": plan.value,
            "fee_bp": terms.fee_bp,
            "growth_bp": terms.growth_bp,
            "baseline_roas_bp": terms.baseline_roas_bp,
        },
        "fee_bp": terms.fee_bp,
        "baseline": _baseline_figures(terms, s),
        "incremental_revenue_minor": s.incremental_minor,
        "gained_minor": sum(n for _, n, _ in s.attributed if n > 0),
        "reversed_minor": -sum(n for _, n, _ in s.attributed if n < 0),
        "revenue_minor": s.revenue_minor,
        "ad_spend_minor": s.spend_minor,
        "roas_bp": s.incremental_minor * BP // s.spend_minor if s.spend_minor > 0 else None,
        "billed_on_minor": s.base_minor,
        "fee_minor": s.fee_minor,
        "attributed_orders": sum(1 for _, n, _ in s.attributed if n > 0),
        "adjusted_orders": sum(1 for _, n, _ in s.attributed if n < 0),
        "average_confidence_bp": round(sum(confidences) / len(confidences))
        if confidences
        else None,
        "proof": {
            "amount": "revenue" if plan is Plan.BASELINE_UPLIFT else "incremental_revenue",
            "orders": len(s.lines),
            "amount_minor": sum(line.amount_minor for line in s.lines),
            "fee_minor": sum(line.fee_minor for line in s.lines),
            "spend_entries": len(s.spend_entry_ids) if plan is Plan.ROAS_PROFIT_SHARE else None,
        },
    }
    return Invoice(
        document,
        _proof(s, scores),
        _spend_proof(conn, s) if plan is Plan.ROAS_PROFIT_SHARE else "",
    )


def _baseline_figures(terms: Terms, s: Settlement) -> dict[str, Any] | None:
    if terms.plan is Plan.BASELINE_UPLIFT:
        return {
            "monthly_revenue_minor": s.baseline_minor,
            "growth_bp": terms.growth_bp,
            "expected_revenue_minor": s.expected_minor,
        }
    if terms.plan is Plan.ROAS_PROFIT_SHARE:
        return {
            "roas_bp": terms.baseline_roas_bp,
            "ad_spend_minor": s.spend_minor,
            "expected_revenue_minor": s.expected_minor,
        }
    return None


def _proof(s: Settlement, scores: dict[str, dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "order_id",
            "amount_minor",
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
                line.amount_minor,
                line.fee_minor,
                s.currency,
                score.get("confidence_bp", ""),
                " ".join(sorted({c["campaign_id"] for c in credits if c.get("campaign_id")})),
                " ".join(sorted({c["touchpoint_id"] for c in credits})),
                " ".join(line.entry_ids),
            ]
        )
    return out.getvalue()


def _spend_proof(conn: psycopg.Connection[Any], s: Settlement) -> str:
    """One row per ad-spend entry of the period, with the event behind it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["ledger_entry_id", "code", "amount_minor", "currency", "period", "caused_by"])
    for entry_id, code, amount, period, caused_by in conn.execute(
        "SELECT entry_id, code, amount_minor, period, caused_by FROM ledger_entries"
        " WHERE entry_id = ANY(%s) ORDER BY seq",
        (list(s.spend_entry_ids),),
    ):
        sign = -1 if code == Code.AD_SPEND_REVERSAL.value else 1
        writer.writerow([entry_id, code, sign * amount, s.currency, period, " ".join(caused_by)])
    return out.getvalue()


def _scores_of(conn: psycopg.Connection[Any], s: Settlement) -> dict[str, dict[str, Any]]:
    """Each order's latest score among those its entries in the period book (found through the
    entries' ``caused_by``, so a later correction of the order changes no settled proof)."""
    ids = sorted(
        {score for line in s.lines for score in line.scores}
        | {score for _, _, scored in s.attributed for score in scored}
    )
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
