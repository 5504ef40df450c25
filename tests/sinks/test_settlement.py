"""`revloop settle`: a month billed from the ledger, its proof, the period closed, late entries
booked as adjustments, and the invoice recomputed from the ledger alone."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from revloop.ledger import entry_value, score_entries, spend_report_entries, touch_spend_entries
from tests.sink_events import score, spend_report, touchpoint
from tests.sink_support import Sink

NOV = -60 * 24 * 20  # minutes from T0 (1 Dec 09:00): 11 Nov


def publish_scored(sink: Sink, *scores: dict[str, Any]) -> None:
    for value in scores:
        sink.publish("AttributionScore", value)
        for entry in score_entries(value):
            sink.publish("LedgerEntry", entry_value(entry))


def revloop(sink: Sink, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": sink.dsn, "REVLOOP_STATE_DIR": str(tmp)}
    command = [sys.executable, "-m", "revloop", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_month_is_billed_from_its_ledger_closed_and_recomputed(
    sink: Sink, tmp_path: Path
) -> None:
    publish_scored(
        sink,
        score("sc-1", NOV, "o1", "k1", 5000),
        score("sc-2", NOV + 60 * 24 * 9, "o2", "k2", 3001),
        score("sc-3", 60 * 24, "o1", "k1", -1000, reverses="sc-1"),  # a refund on 2 Dec
    )
    sink.start()
    sink.wait_caught_up()
    out = tmp_path / "invoices"
    # December is still running: its preview holds the refund, as a credit; nothing is posted.
    running = revloop(
        sink,
        tmp_path,
        "settle",
        "--store",
        "acme",
        "--month",
        "2026-12",
        "--preview",
        "--out",
        str(out),
    )
    assert running.returncode == 0, running.stdout + running.stderr
    december = json.loads((out / "2026-12-USD-preview.json").read_text())
    assert (december["incremental_revenue_minor"], december["fee_minor"]) == (-1000, -200)
    assert sink.query("SELECT count(*) FROM billing_periods") == [(0,)]

    settled = revloop(
        sink, tmp_path, "settle", "--store", "acme", "--month", "2026-11", "--out", str(out)
    )
    assert settled.returncode == 0, settled.stdout + settled.stderr
    invoice = json.loads((out / "2026-11-USD.json").read_text())
    assert invoice["plan"] == "attributed_incremental" and invoice["fee_bp"] == 2000
    assert (invoice["incremental_revenue_minor"], invoice["fee_minor"]) == (8001, 1600)
    assert invoice["attributed_orders"] == 2 and invoice["average_confidence_bp"] == 10_000
    proof = list(csv.DictReader(io.StringIO((out / "2026-11-USD.csv").read_text())))
    assert [p["order_id"] for p in proof] == ["o1", "o2"]
    assert sum(int(p["amount_minor"]) for p in proof) == 8001
    assert sum(int(p["fee_minor"]) for p in proof) == 1600
    assert proof[0]["campaigns"] == "c1" and proof[0]["touchpoint_ids"] == "t1"
    entry_ids = {
        r[0]
        for r in sink.query(
            "SELECT entry_id FROM ledger_entries"
            " WHERE order_id = 'o1' AND booked_period = '2026-11'"
        )
    }
    assert set(proof[0]["ledger_entry_ids"].split()) == entry_ids

    # The fee is in the ledger, the chain holds, the balances sum to zero.
    assert sink.query(
        "SELECT code, amount_minor FROM ledger_entries WHERE code = 'success_fee'"
    ) == [("success_fee", 1600)]
    assert revloop(sink, tmp_path, "ledger", "verify").returncode == 0
    balance = revloop(sink, tmp_path, "ledger", "balance", "--store", "acme")
    assert "USD: the balances sum to 0" in balance.stdout

    # Settling again changes nothing; the invoice recomputes from the ledger alone.
    again = revloop(
        sink,
        tmp_path,
        "settle",
        "--store",
        "acme",
        "--month",
        "2026-11",
        "--out",
        str(tmp_path / "again"),
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "2026-11-USD.json").read_text()) == invoice
    assert sink.query("SELECT count(*) FROM ledger_entries WHERE code = 'success_fee'") == [(1,)]
    checked = revloop(
        sink, tmp_path, "settle", "--store", "acme", "--month", "2026-11", "--recompute"
    )
    assert checked.returncode == 0 and "identical" in checked.stdout

    # A late November score after the close is an adjustment of December; the refund of 2 Dec
    # is December's too.
    publish_scored(sink, score("sc-4", NOV + 60 * 24 * 14, "o4", "k4", 700))
    sink.wait_caught_up()
    assert sink.query(
        "SELECT order_id, period, booked_period FROM ledger_entries"
        " WHERE code LIKE 'attributed%%' ORDER BY seq"
    ) == [
        ("o1", "2026-11", "2026-11"),
        ("o2", "2026-11", "2026-11"),
        ("o1", "2026-12", "2026-12"),
        ("o4", "2026-11", "2026-12"),
    ]
    early = revloop(sink, tmp_path, "settle", "--store", "acme", "--month", "2026-12")
    assert early.returncode == 1
    assert "2026-12 is not over yet" in early.stderr


def write_stores(tmp: Path, plans: dict[str, dict[str, Any]]) -> None:
    """A stores file whose stores bill on ``plans`` since before November."""
    (tmp / "stores.json").write_text(
        json.dumps(
            {
                "stores": [
                    {
                        "store_id": store,
                        "platform": "shopify",
                        "identity": f"{store}.myshopify.com",
                        "currency": "USD",
                        "settings": [
                            {"effective_from": "2026-10-01T00:00:00+00:00", "values": values}
                        ],
                    }
                    for store, values in plans.items()
                ]
            }
        )
    )


def test_baseline_uplift_and_roas_profit_share_bill_from_the_ledger_alone(
    sink: Sink, tmp_path: Path
) -> None:
    write_stores(
        tmp_path,
        {
            "acme": {"billing_plan": "baseline_uplift", "billing_growth_bp": 10_500},
            "beta": {"billing_plan": "roas_profit_share"},
        },
    )
    publish_scored(
        sink,
        score("a-1", NOV, "o1", "k1", 5000, revenue=600_000),
        score("a-2", NOV + 60, "o2", None, 0, revenue=500_000),
        score("a-3", NOV + 120, "o1", "k1", -1000, reverses="a-1", revenue=-40_000),
        score("b-1", NOV, "o1", "k1", 300_000, store="beta", revenue=300_000),
        score("b-2", NOV + 60, "o2", "k2", 147_000, store="beta", revenue=150_000),
    )
    # beta's ad spend: two touches' costs and a campaign's day, reported then restated.
    day = date(2026, 11, 11)
    standing = None
    for n, minor in enumerate((120_000, 99_760)):
        report = spend_report(f"sp-{n}", NOV + 60 * n, "c1", day, minor, store="beta")
        sink.publish("CampaignSpend", report)
        entries, standing = spend_report_entries(standing, report)
        for entry in entries:
            sink.publish("LedgerEntry", entry_value(entry))
    for n in range(2):
        touched = touchpoint(f"tp-{n}", NOV + n, f"t{n}", "k1", "c1", store="beta")
        sink.publish("Touchpoint", touched)
        for entry in touch_spend_entries(touched):
            sink.publish("LedgerEntry", entry_value(entry))
    sink.start()
    sink.wait_caught_up()
    assert sink.query("SELECT spend_minor FROM campaign_spend") == [(99_760,)]
    out = tmp_path / "invoices"

    missing = revloop(sink, tmp_path, "settle", "--store", "acme", "--month", "2026-11")
    assert missing.returncode == 1 and "has no baseline" in missing.stderr
    assert sink.query("SELECT count(*) FROM billing_periods") == [(0,)]
    set_it = revloop(
        sink, tmp_path, "stores", "baseline", "set", "--store", "acme",
        "--monthly-revenue", "10000.00", "--currency", "USD",
    )  # fmt: skip
    assert set_it.returncode == 0, set_it.stderr
    assert "1000000 USD" in set_it.stdout
    for store in ("acme", "beta"):
        settled = revloop(
            sink,
            tmp_path,
            "settle",
            "--store",
            store,
            "--month",
            "2026-11",
            "--out",
            str(out / store),
        )
        assert settled.returncode == 0, settled.stdout + settled.stderr

    # acme: 1,060,000 of revenue against 1,000,000 x 1.05; 20% of the 10,000 above it.
    acme = json.loads((out / "acme" / "2026-11-USD.json").read_text())
    assert acme["plan"] == "baseline_uplift"
    assert acme["baseline"] == {
        "monthly_revenue_minor": 1_000_000,
        "growth_bp": 10_500,
        "expected_revenue_minor": 1_050_000,
    }
    assert (acme["revenue_minor"], acme["billed_on_minor"], acme["fee_minor"]) == (
        1_060_000,
        10_000,
        2_000,
    )
    assert acme["attributed_orders"] == 1  # o1; o2 sold without revloop's help
    proof = list(csv.DictReader(io.StringIO((out / "acme" / "2026-11-USD.csv").read_text())))
    assert [(p["order_id"], int(p["amount_minor"])) for p in proof] == [
        ("o1", 560_000),
        ("o2", 500_000),
    ]
    assert sum(int(p["fee_minor"]) for p in proof) == 2_000
    assert sink.query(
        "SELECT amount_minor FROM ledger_entries WHERE store_id = 'acme' AND code = 'baseline'"
    ) == [(1_000_000,)]

    # beta: 447,000 attributed over 100,000 of spend (4.47); 15% of the 147,000 above 3.0.
    beta = json.loads((out / "beta" / "2026-11-USD.json").read_text())
    assert beta["plan"] == "roas_profit_share" and beta["roas_bp"] == 44_700
    assert beta["baseline"] == {
        "roas_bp": 30_000,
        "ad_spend_minor": 100_000,
        "expected_revenue_minor": 300_000,
    }
    assert (beta["billed_on_minor"], beta["fee_bp"], beta["fee_minor"]) == (147_000, 1500, 22_050)
    spend_proof = list(
        csv.DictReader(io.StringIO((out / "beta" / "2026-11-USD-spend.csv").read_text()))
    )
    assert sum(int(r["amount_minor"]) for r in spend_proof) == 100_000
    assert {r["code"] for r in spend_proof} == {"ad_spend", "ad_spend_reversal"}

    # A new baseline changes no settled invoice: the ledger holds the one it was billed on.
    revloop(
        sink, tmp_path, "stores", "baseline", "set", "--store", "acme",
        "--monthly-revenue", "5000", "--currency", "USD",
    )  # fmt: skip
    for store in ("acme", "beta"):
        checked = revloop(
            sink, tmp_path, "settle", "--store", store, "--month", "2026-11", "--recompute"
        )
        assert checked.returncode == 0 and "identical" in checked.stdout, checked.stderr
    assert revloop(sink, tmp_path, "ledger", "verify").returncode == 0
    for store in ("acme", "beta"):
        balance = revloop(sink, tmp_path, "ledger", "balance", "--store", store)
        assert "USD: the balances sum to 0" in balance.stdout
