"""`revloop settle`: a month billed from the ledger, its proof, the period closed, late entries
booked as adjustments, and the invoice recomputed from the ledger alone."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from revloop.ledger import entry_value, score_entries
from tests.sink_events import score
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
    assert sum(int(p["incremental_minor"]) for p in proof) == 8001
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
