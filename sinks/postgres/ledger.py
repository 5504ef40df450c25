"""The ledger table: entries appended in their store's chain, checked, and summed.

The ledger topic is keyed by store, so a store's entries arrive in one partition, in one order;
the sink appends them in that order, each linked to the one before by
:func:`revloop.ledger.chain_hash`. An entry already in the table (a replayed or duplicated
LedgerEntry) is not appended again. The database refuses to change or delete an entry
(migration 0003), and :func:`verify` finds any entry changed, dropped or moved by someone who
got past that (a superuser disabling the trigger, a restored backup).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from revloop.ledger import GENESIS, chain_hash
from sinks.postgres.rows import Row

HASHED = (
    "seq",
    "entry_id",
    "store_id",
    "ledger",
    "debit_account",
    "credit_account",
    "amount_minor",
    "currency",
    "code",
    "reverses_entry_id",
    "order_id",
    "period",
    "booked_period",
    "occurred_at",
    "caused_by",
)
"""The columns an entry's link covers (``caused_by`` joined by spaces)."""

_COLUMNS = (*HASHED, "prev_hash", "hash")


def _hashed(values: dict[str, Any]) -> tuple[object, ...]:
    return tuple(" ".join(values[c]) if c == "caused_by" else values[c] for c in HASHED)


def append_entries(conn: psycopg.Connection[Any], rows: Sequence[Row]) -> int:
    """Append the batch's entries (in arrival order) to their stores' chains; how many were new."""
    by_store: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_store[row.values["store_id"]].append(row.values)
    appended = 0
    for store_id in sorted(by_store):
        # One writer per store chain at a time, whatever else runs.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ledger:' || %s))", (store_id,))
        entries = by_store[store_id]
        ids = [e["entry_id"] for e in entries]
        present = {
            r[0]
            for r in conn.execute(
                "SELECT entry_id FROM ledger_entries WHERE entry_id = ANY(%s)", (ids,)
            )
        }
        head = conn.execute(
            "SELECT seq, hash FROM ledger_entries WHERE store_id = %s ORDER BY seq DESC LIMIT 1",
            (store_id,),
        ).fetchone()
        seq, previous = head if head else (0, GENESIS)
        closed = {
            r[0]
            for r in conn.execute(
                "SELECT period FROM billing_periods WHERE store_id = %s", (store_id,)
            )
        }
        new = []
        for entry in entries:
            if entry["entry_id"] in present:
                continue
            present.add(entry["entry_id"])
            seq += 1
            values = {**entry, "seq": seq, "booked_period": open_period(entry["period"], closed)}
            link = chain_hash(previous, _hashed(values))
            new.append({**values, "prev_hash": previous, "hash": link})
            previous = link
        if new:
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY ledger_entries ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
            ):
                for values in new:
                    copy.write_row([values[c] for c in _COLUMNS])
            appended += len(new)
    return appended


def open_period(period: str, closed: set[str]) -> str:
    """``period``, or the first month after it that is not settled."""
    while period in closed:
        year, month = map(int, period.split("-"))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        period = f"{year:04d}-{month:02d}"
    return period


@dataclass(frozen=True)
class Break:
    """Where a store's chain stops holding, and how."""

    store_id: str
    seq: int
    entry_id: str
    problem: str


def verify(conn: psycopg.Connection[Any], store_id: str | None = None) -> Iterator[Break]:
    """Walk every chain (or one store's) from its first entry: each ``seq`` one more than the
    last, each ``prev_hash`` the last one's ``hash``, each ``hash`` what the entry's fields give.
    The first break of each store is reported (everything after it is suspect anyway)."""
    where, params = ("WHERE store_id = %s", (store_id,)) if store_id else ("", ())
    cursor = conn.cursor(name="ledger_verify")  # server-side: the ledger can be large
    cursor.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM ledger_entries {where} "  # noqa: S608
        "ORDER BY store_id, seq",
        params,
    )
    current, expected_seq, previous, broken = None, 0, GENESIS, False
    for record in cursor:
        values = dict(zip(_COLUMNS, record, strict=True))
        if values["store_id"] != current:
            current, expected_seq, previous, broken = values["store_id"], 0, GENESIS, False
        if broken:
            continue
        expected_seq += 1
        problem = None
        if values["seq"] != expected_seq:
            problem = f"expected entry {expected_seq} here: an entry is missing or moved"
        elif values["prev_hash"] != previous:
            problem = "its link to the entry before does not match: an entry was removed or moved"
        elif values["hash"] != chain_hash(previous, _hashed(values)):
            problem = "its fields do not give its hash: the entry was changed"
        if problem:
            broken = True
            yield Break(values["store_id"], values["seq"], values["entry_id"], problem)
        previous = values["hash"]
    cursor.close()


def balances(conn: psycopg.Connection[Any], store_id: str) -> list[tuple[str, str, int]]:
    """(account, currency, debits minus credits) for each account of the store."""
    return [
        (account, currency, int(total))
        for account, currency, total in conn.execute(
            """
            SELECT account, currency, sum(amount) FROM (
                SELECT debit_account AS account, currency, amount_minor AS amount
                FROM ledger_entries WHERE store_id = %s
                UNION ALL
                SELECT credit_account, currency, -amount_minor
                FROM ledger_entries WHERE store_id = %s
            ) moves GROUP BY 1, 2 ORDER BY 2, 1
            """,
            (store_id, store_id),
        )
    ]
