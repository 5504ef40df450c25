"""`revloop bench ledger`: what the sink's `revloop_ledger_amount_minor` costs per scrape on a
large ledger (docs/ops.md, "What each metric means"; docs/benchmarks.md).

A scratch database gets ``--entries`` ledger entries over ``--stores`` stores, inserted in one
statement. Then, on a connection set up as the sink's metrics connection is (5 s statement
timeout, no JIT):

- the ceiling: one whole scan computing the same sums (what every scrape ran until 2026-12-03);
- ``LedgerTally`` catching up from nothing, read by read, as successive scrapes would;
- a steady scrape: 10 new entries, then the median of 5 reads.

It prints the steady scrape's share of the ceiling (target: under 1%).
"""

from __future__ import annotations

import statistics
import time

import psycopg
import typer
from rich.console import Console

from bench.common import git_commit
from bench.sinks import scratch_database
from revloop.settings import get_settings
from sinks.postgres.ops_views import TOTAL_ACCOUNTS, LedgerTally, ledger_totals

TARGET_SHARE = 0.01

WHOLE_SCAN = """
SELECT account, currency, sum(amount)::bigint, count(*) FROM (
    SELECT regexp_replace(debit_account, '^.*/', '') AS account, currency, amount_minor AS amount
    FROM ledger_entries
    UNION ALL
    SELECT regexp_replace(credit_account, '^.*/', ''), currency, -amount_minor FROM ledger_entries
) moves
WHERE account = ANY(%s)
GROUP BY 1, 2
"""

LOAD = """
INSERT INTO ledger_entries (entry_id, store_id, seq, ledger, debit_account, credit_account,
    amount_minor, currency, code, period, booked_period, occurred_at, prev_hash, hash)
SELECT 's' || st || '-' || (n + %(after)s), 's' || st, n + %(after)s, 's' || st || '/EUR',
       's' || st || '/EUR/attributed_incremental_revenue', 's' || st || '/EUR/attribution_source',
       100, 'EUR', 'attributed_revenue', '2026-12', '2026-12', now(), repeat('0', 64),
       repeat('0', 64)
FROM generate_series(1, %(stores)s) st, generate_series(1, %(per_store)s) n
"""


def ledger_command(
    entries: int = typer.Option(1_000_000, help="Ledger entries to load."),
    stores: int = typer.Option(50, help="Stores they are spread over."),
) -> None:
    """Time the ledger gauge's scrape: a whole scan against the incremental tally."""
    settings, console = get_settings(), Console()
    per_store = max(1, entries // stores)
    with (
        scratch_database(settings, "ledger") as dsn,
        psycopg.connect(dsn, autocommit=True) as conn,
    ):
        conn.execute(LOAD, {"after": 0, "stores": stores, "per_store": per_store})
        conn.execute("ANALYZE ledger_entries")
        conn.execute("SET jit = off")
        conn.execute("SET statement_timeout = 5000")
        accounts = [a.value for a in TOTAL_ACCOUNTS]
        started = time.perf_counter()
        try:
            conn.execute(WHOLE_SCAN, (accounts,)).fetchall()
            ceiling = time.perf_counter() - started
        except psycopg.errors.QueryCanceled:
            ceiling = 5.0  # what a scrape gets: nothing, after the timeout
            console.print("the whole scan hit the 5 s statement timeout")
        tally, reads = LedgerTally(), list[float]()
        while not reads or not tally.complete:
            started = time.perf_counter()
            tally.advance(conn)
            reads.append(time.perf_counter() - started)
        conn.execute("SET statement_timeout = 0")
        conn.execute(LOAD, {"after": per_store, "stores": 1, "per_store": 10})
        steady = list[float]()
        for _ in range(5):
            started = time.perf_counter()
            totals = tally.advance(conn)
            steady.append(time.perf_counter() - started)
        if totals != ledger_totals(conn):
            console.print(f"[red]the tally ({totals}) differs from a whole read[/]")
            raise typer.Exit(1)
    share = statistics.median(steady) / ceiling
    console.print(
        f"revloop bench ledger, commit {git_commit()}: {per_store * stores:,} entries over "
        f"{stores} stores\n"
        f"  whole scan (the ceiling): {ceiling * 1000:,.0f} ms\n"
        f"  tally catching up: {len(reads)} reads, slowest {max(reads) * 1000:,.0f} ms, "
        f"{sum(reads) * 1000:,.0f} ms in all\n"
        f"  steady scrape: {statistics.median(steady) * 1000:.1f} ms, "
        f"{share:.2%} of the ceiling (target under {TARGET_SHARE:.0%}): "
        f"{'met' if share < TARGET_SHARE else 'missed'}"
    )
