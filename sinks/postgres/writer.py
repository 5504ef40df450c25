"""One batch of rows into Postgres, inside the caller's transaction.

Each table's rows are collapsed to one per key (a statement may touch a row once), copied into
a staging table (COPY), and merged with one ``INSERT … SELECT … ON CONFLICT``. How a table
merges is its :class:`TableWrite`:

- ``latest``: the row shows the newest change by (``source_at``, ``source_event_id``); an older
  event changes nothing. A few columns merge on their own: ``earliest`` keep the least value
  (an order's ``placed_at``), ``greatest`` the largest (a product's ``deleted_at``, which a
  ProductDelete sets alone, without a version);
- ``once``: a fact, written the first time and never again (``DO NOTHING``).

Every merge is commutative, so the tables after a set of events do not depend on the order the
events arrived in or how they were cut into batches (the SIGKILL test holds the sink to it).

A table's rows that Postgres refuses (a NUL byte in a text, say) are found by writing the rows
one by one, each under a savepoint: they come back as :class:`Rejected`, the others are written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import Column
from sqlalchemy.dialects import postgresql

from sinks.postgres.rows import Row
from sinks.postgres.tables import Base

Mode = Literal["latest", "once"]


@dataclass(frozen=True)
class TableWrite:
    name: str
    keys: tuple[str, ...]
    mode: Mode
    earliest: tuple[str, ...] = ()
    """Columns that keep their least value whatever the order (an order's ``placed_at``)."""
    greatest: tuple[str, ...] = ()
    """Columns that keep their largest value whatever the order (a product's ``deleted_at``)."""


TABLES: dict[str, TableWrite] = {
    t.name: t
    for t in (
        TableWrite("products", ("store_id", "product_id"), "latest", greatest=("deleted_at",)),
        TableWrite("variants", ("store_id", "variant_id"), "latest"),
        TableWrite(
            "inventory_snapshots", ("store_id", "inventory_item_id", "location_id"), "latest"
        ),
        TableWrite(
            "inventory_adjustments",
            ("store_id", "inventory_item_id", "location_id", "event_id"),
            "once",
        ),
        TableWrite("customers", ("store_id", "customer_id"), "latest"),
        TableWrite("orders", ("store_id", "order_id"), "latest", earliest=("placed_at",)),
        TableWrite("order_items", ("store_id", "order_id", "line_item_id"), "latest"),
        TableWrite("refunds", ("store_id", "order_id", "refund_id"), "once"),
        TableWrite("touchpoints", ("store_id", "touchpoint_id"), "once"),
        TableWrite("campaign_products", ("store_id", "campaign_id", "product_id"), "latest"),
        TableWrite("campaign_spend", ("store_id", "channel", "campaign_id", "day"), "latest"),
        TableWrite("circuit_breaker_actions", ("event_id",), "once"),
        TableWrite("connector_calls", ("event_id",), "once"),
        TableWrite("low_stock_warnings", ("event_id",), "once"),
        TableWrite("attribution_scores", ("event_id",), "once"),
        TableWrite("lifecycle_triggers", ("event_id",), "once"),
        TableWrite("webhook_log", ("event_id",), "once"),
        TableWrite("redactions", ("event_id",), "once"),
    )
}


@dataclass(frozen=True)
class Rejected:
    """A row Postgres refused, with why (the SQLSTATE and what it names; never the values)."""

    row: Row
    reason: str
    origin: Any = None


@dataclass
class Written:
    rows: int = 0
    rejected: list[Rejected] = field(default_factory=list)


# -- collapsing a batch to one row per key (pure) ------------------------------------------------


def collapse(table: TableWrite, rows: Sequence[tuple[Row, Any]]) -> list[tuple[Row, Any]]:
    """One row per key, as the batch's rows of that key would leave it in that order."""
    by_key: dict[tuple[Any, ...], tuple[Row, Any]] = {}
    for row, origin in rows:
        key = tuple(row.values[k] for k in table.keys)
        held = by_key.get(key)
        if held is None:
            by_key[key] = (row, origin)
        elif table.mode == "latest":
            by_key[key] = _merged_latest(table, held, (row, origin))
    return list(by_key.values())


def _version(row: Row) -> tuple[Any, str]:
    # A row without a version (a ProductDelete's) sorts first: any versioned row beats it.
    return row.values.get("source_at") or _NEVER, row.values.get("source_event_id") or ""


_NEVER = datetime.min.replace(tzinfo=UTC)


def _merged_latest(table: TableWrite, a: tuple[Row, Any], b: tuple[Row, Any]) -> tuple[Row, Any]:
    older, newer = sorted((a, b), key=lambda pair: _version(pair[0]))
    values = {**older[0].values, **newer[0].values}
    for columns, pick in ((table.earliest, min), (table.greatest, max)):
        for column in columns:
            present = [v for v in (older[0].values.get(column), newer[0].values.get(column)) if v]
            if present:
                values[column] = pick(present)
    return Row(table.name, values), newer[1]


# -- writing --------------------------------------------------------------------------------------


def write_rows(conn: psycopg.Connection[Any], rows: Iterable[tuple[Row, Any]]) -> Written:
    """Write every row (``origin`` travels with it to a rejection) in the open transaction."""
    written = Written()
    grouped: dict[str, list[tuple[Row, Any]]] = defaultdict(list)
    for row, origin in rows:
        grouped[row.table].append((row, origin))
    for name in TABLES:  # a fixed order: the same locks in the same order in every batch
        if name not in grouped:
            continue
        table = TABLES[name]
        collapsed = collapse(table, grouped[name])
        by_columns: dict[tuple[str, ...], list[tuple[Row, Any]]] = defaultdict(list)
        for row, origin in collapsed:
            by_columns[tuple(row.values)].append((row, origin))
        for columns, group in by_columns.items():
            _write_group(conn, table, columns, group, written)
    return written


def _write_group(
    conn: psycopg.Connection[Any],
    table: TableWrite,
    columns: tuple[str, ...],
    group: list[tuple[Row, Any]],
    written: Written,
) -> None:
    """The group in one COPY and merge; if Postgres refuses its data, row by row."""
    try:
        _merge(conn, table, columns, group)
    except psycopg.Error as exc:
        if not refuses_data(exc):
            raise  # the connection, a deadlock, a timeout: the whole batch is tried again
        for row, origin in group:
            try:
                _merge(conn, table, columns, [(row, origin)])
            except psycopg.Error as one:
                if not refuses_data(one):
                    raise
                written.rejected.append(Rejected(row, _reason(table, one), origin))
            else:
                written.rows += 1
        return
    written.rows += len(group)


def _merge(
    conn: psycopg.Connection[Any],
    table: TableWrite,
    columns: tuple[str, ...],
    group: list[tuple[Row, Any]],
) -> None:
    """COPY ``group`` into the table's staging table and merge it, under a savepoint."""
    stage = _stage(table)
    with conn.transaction(), conn.cursor() as cur:
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, listed)) as copy:
            for row, _ in group:
                copy.write_row(_values(table, row, columns))
        cur.execute(_merge_sql(table, columns, stage))
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))


def refuses_data(exc: psycopg.Error) -> bool:
    """Whether Postgres (or the client, before sending) refused a row for what it holds: a
    data exception (SQLSTATE class 22) or a constraint (23). Anything else is about the
    database, not the row, and a row must never be dead-lettered for it."""
    if exc.sqlstate is None:
        return isinstance(exc, psycopg.DataError)  # e.g. a NUL in a text, refused client-side
    return exc.sqlstate[:2] in ("22", "23")


def _reason(table: TableWrite, exc: psycopg.Error) -> str:
    """Why Postgres refused a row, without the row's values (they may be personal data)."""
    diag = exc.diag
    parts = [f"table {table.name}", f"sqlstate {exc.sqlstate or 'client'}", type(exc).__name__]
    if diag.column_name:
        parts.append(f"column {diag.column_name}")
    if diag.constraint_name:
        parts.append(f"constraint {diag.constraint_name}")
    if exc.sqlstate is None and "NUL" in str(exc):
        parts.append("a text holds a NUL (0x00) character")
    return "; ".join(parts)


def _values(table: TableWrite, row: Row, columns: tuple[str, ...]) -> list[Any]:
    return [Jsonb(row.values[c]) if (table.name, c) in _JSON else row.values[c] for c in columns]


# -- SQL -------------------------------------------------------------------------------------------


def prepare_staging(conn: psycopg.Connection[Any]) -> None:
    """Create this connection's staging tables (temporary: one set per connection)."""
    with conn.transaction():
        for table in TABLES.values():
            definitions: list[sql.Composable] = [
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_type(c)))
                for c in Base.metadata.tables[table.name].columns
            ]
            conn.execute(
                sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                    _stage(table), sql.SQL(", ").join(definitions)
                )
            )


def _stage(table: TableWrite) -> sql.Identifier:
    """The staging table of ``table``: its columns, without constraints."""
    return sql.Identifier(f"stage_{table.name}")


def _type(column: Column[Any]) -> str:
    return str(column.type.compile(dialect=_DIALECT))


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_JSON = {
    (table.name, column.name)
    for table in Base.metadata.tables.values()
    for column in table.columns
    if isinstance(column.type, postgresql.JSONB)
}


def _merge_sql(table: TableWrite, columns: tuple[str, ...], stage: sql.Identifier) -> sql.Composed:
    target = sql.Identifier(table.name)
    keys = sql.SQL(", ").join(map(sql.Identifier, table.keys))
    listed = sql.SQL(", ").join(map(sql.Identifier, columns))
    insert = sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT ({k}) ").format(
        t=target, c=listed, s=stage, k=keys
    )
    if table.mode == "once":
        return insert + sql.SQL("DO NOTHING")
    newer = sql.SQL(
        "({t}.source_at IS NULL OR (EXCLUDED.source_at, EXCLUDED.source_event_id)"
        " > ({t}.source_at, {t}.source_event_id))"
    ).format(t=target)
    sets = []
    for column in columns:
        if column in table.keys:
            continue
        c = sql.Identifier(column)
        if column in table.earliest:
            sets.append(sql.SQL("{c} = LEAST({t}.{c}, EXCLUDED.{c})").format(c=c, t=target))
        elif column in table.greatest:
            sets.append(sql.SQL("{c} = GREATEST({t}.{c}, EXCLUDED.{c})").format(c=c, t=target))
        elif "source_at" not in columns:
            continue  # an unversioned row sets only its merging columns
        else:
            sets.append(
                sql.SQL("{c} = CASE WHEN {n} THEN EXCLUDED.{c} ELSE {t}.{c} END").format(
                    c=c, n=newer, t=target
                )
            )
    return insert + sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(sets)
