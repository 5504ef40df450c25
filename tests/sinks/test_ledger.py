"""The ledger table: entries appended in hash chains, refused changes, tampering caught,
balances that sum to zero."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from revloop.ledger import entry_value, score_entries
from tests.sink_events import score
from tests.sink_support import Sink


def entries(*scores: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry_value(e) for s in scores for e in score_entries(s)]


def publish_ledger(sink: Sink) -> list[dict[str, Any]]:
    values = entries(
        score("sc-1", 10, "o1", "k1", 5000),
        score("sc-2", 20, "o2", "k2", 3000),
        score("sc-3", 30, "o1", "k1", -1000, reverses="sc-1"),
        score("sc-4", 10, "o9", "k9", 7000, store="beta"),
    )
    for value in [*values, values[0]]:  # the first again: a duplicate posts nothing
        sink.publish("LedgerEntry", value)
    sink.start()
    sink.wait_caught_up()
    return values


def revloop(sink: Sink, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": sink.dsn}
    command = [sys.executable, "-m", "revloop", "ledger", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_entries_form_one_chain_per_store_and_balance_to_zero(sink: Sink) -> None:
    values = publish_ledger(sink)
    rows = sink.query(
        "SELECT store_id, seq, entry_id, amount_minor FROM ledger_entries ORDER BY 1, 2"
    )
    assert rows == [
        ("acme", 1, values[0]["entry_id"], 5000),
        ("acme", 2, values[1]["entry_id"], 3000),
        ("acme", 3, values[2]["entry_id"], 1000),
        ("beta", 1, values[3]["entry_id"], 7000),
    ]
    verified = revloop(sink, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "4 entries in 2 store chain(s): every link holds" in verified.stdout
    balance = revloop(sink, "balance", "--store", "acme")
    assert balance.returncode == 0, balance.stderr
    assert "USD: the balances sum to 0" in balance.stdout
    cells = " ".join(balance.stdout.replace("│", " ").split())
    assert "acme/USD/attributed_incremental_revenue USD 7,000" in cells
    assert "acme/USD/attribution_source USD -7,000" in cells


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount_minor = 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
    ],
)
def test_the_database_refuses_to_change_an_entry(sink: Sink, statement: str) -> None:
    publish_ledger(sink)
    with (
        psycopg.connect(sink.dsn) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
    ):
        conn.execute(statement)
    assert "ledger_entries is append-only" in str(refused.value)
    assert sink.query("SELECT count(*) FROM ledger_entries") == [(4,)]


@pytest.mark.parametrize(
    ("tamper", "where", "problem"),
    [
        (
            "UPDATE ledger_entries SET amount_minor = 50 WHERE store_id = 'acme' AND seq = 2",
            "entry 2",
            "the entry was changed",
        ),
        (
            "DELETE FROM ledger_entries WHERE store_id = 'acme' AND seq = 2",
            "entry 3",
            "expected entry 2 here: an entry is missing or moved",
        ),
        (
            "UPDATE ledger_entries SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END"
            " WHERE store_id = 'acme' AND seq IN (2, 3)",
            "entry 2",
            "does not match",
        ),
    ],
)
def test_verify_names_an_altered_missing_or_reordered_entry(
    sink: Sink, tamper: str, where: str, problem: str
) -> None:
    publish_ledger(sink)
    # Someone with the power to switch the guard off (a superuser, a restored backup).
    with psycopg.connect(sink.dsn) as conn:
        conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        conn.execute("ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_store_id_seq_key")
        conn.execute(tamper)
        conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    verified = revloop(sink, "verify")
    assert verified.returncode == 1
    assert f"store acme: {where} (" in verified.stdout
    assert problem in verified.stdout
    assert "store beta" not in verified.stdout  # the other chain holds
    assert revloop(sink, "verify", "--store", "beta").returncode == 0
