"""`revloop db ...` (the sink's schema), `revloop sink ...` (the sinks) and `revloop ledger ...`
(the billing ledger in Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
import typer
from rich.console import Console
from rich.table import Table

from revloop.settings import get_settings
from sinks.postgres.ledger import balances, verify
from sinks.postgres.migrate import current, head, upgrade
from sinks.postgres.service import sink_postgres_command
from sinks.postgres.settlement import (
    SettlementError,
    as_text,
    preview,
    recompute,
    settle_period,
    stored_invoices,
)

db_app = typer.Typer(
    help="The Postgres schema the sink writes (Alembic migrations).", no_args_is_help=True
)
sink_app = typer.Typer(help="Sinks: topics into the places people read them.", no_args_is_help=True)
sink_app.command("postgres")(sink_postgres_command)


@db_app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="The revision to reach (default: the newest)."),
) -> None:
    """Apply the migrations to DATABASE_URL (or the local stack's database)."""
    try:
        reached = upgrade(get_settings().dsn, revision)
    except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as exc:
        typer.secho(f"error: cannot reach Postgres: {exc.args[0]}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database at revision {reached}")


@db_app.command("status")
def status_command() -> None:
    """The database's revision and the newest one; exit 1 when it is behind."""
    try:
        at = current(get_settings().dsn)
    except (sqlalchemy.exc.OperationalError, psycopg.OperationalError) as exc:
        typer.secho(f"error: cannot reach Postgres: {exc.args[0]}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    newest = head()
    typer.echo(f"database at {at or 'no revision'}; newest {newest}")
    if at != newest:
        raise typer.Exit(1)


ledger_app = typer.Typer(
    help="The billing ledger: check its chains, read balances.", no_args_is_help=True
)


def _connect() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(get_settings().dsn)
    except psycopg.OperationalError as exc:
        typer.secho(f"error: cannot reach Postgres: {exc.args[0]}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@ledger_app.command("verify")
def verify_command(
    store: str | None = typer.Option(None, "--store", help="One store (default: every store)."),
) -> None:
    """Walk each store's hash chain: exit 1, naming the entry, if any entry was changed,
    removed or moved."""
    with _connect() as conn:
        breaks = list(verify(conn, store))
        counted = conn.execute(
            "SELECT count(*), count(DISTINCT store_id) FROM ledger_entries"
            " WHERE %(store)s::text IS NULL OR store_id = %(store)s",
            {"store": store},
        ).fetchone()
    for found in breaks:
        typer.secho(
            f"store {found.store_id}: entry {found.seq} ({found.entry_id}): {found.problem}",
            fg=typer.colors.RED,
        )
    entries, stores = counted or (0, 0)
    if breaks:
        typer.echo(f"{len(breaks)} of {stores} store chain(s) broken ({entries} entries)")
        raise typer.Exit(1)
    typer.echo(f"{entries} entries in {stores} store chain(s): every link holds")


@ledger_app.command("balance")
def balance_command(store: str = typer.Option(..., "--store", help="The store.")) -> None:
    """Each account's balance (debits minus credits, in minor units); per currency they sum
    to zero."""
    with _connect() as conn:
        rows = balances(conn, store)
    if not rows:
        typer.echo(f"no entries for store {store}")
        return
    table = Table("account", "currency", "balance (minor units)", title=f"ledger of {store}")
    for account, currency, total in rows:
        table.add_row(account, currency, f"{total:,}")
    Console(highlight=False).print(table)
    for currency in sorted({c for _, c, _ in rows}):
        total = sum(t for _, c, t in rows if c == currency)
        typer.echo(f"{currency}: the balances sum to {total}")


def settle_command(
    store: str = typer.Option(..., "--store", help="The store to bill."),
    month: str = typer.Option(..., "--month", help="The period, YYYY-MM (UTC); it must be over."),
    out: Path | None = typer.Option(  # noqa: B008
        None,
        "--out",
        help="Where the invoice JSON and proof CSV go (default: <state dir>/invoices/<store>/).",
        show_default=False,
    ),
    check: bool = typer.Option(
        False, "--recompute", help="Recompute a settled period from its ledger and compare."
    ),
    dry: bool = typer.Option(
        False,
        "--preview",
        help="The invoice the period would get now (it may still run): nothing posted or closed.",
    ),
) -> None:
    """Settle a store's month from its ledger (attributed-incremental plan): post the fee,
    write the invoice and its proof, close the period. Settling again changes nothing."""
    settings = get_settings()
    with _connect() as conn:
        try:
            if check:
                stored = stored_invoices(conn, store, month)
                again = [i.document for i in recompute(conn, store, month)]
                if stored != again:
                    typer.secho(f"{store} {month}: the recomputed invoice differs", fg="red")
                    raise typer.Exit(1)
                typer.echo(f"{store} {month}: recomputed from the ledger, identical")
                return
            if dry:
                invoices = preview(conn, settings, store, month, datetime.now(UTC))
            else:
                invoices = settle_period(conn, settings, store, month, datetime.now(UTC))
        except SettlementError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    folder = out or settings.state_dir / "invoices" / store
    folder.mkdir(parents=True, exist_ok=True)
    if not invoices:
        typer.echo(f"{store} {month}: nothing booked; the period is closed")
    for invoice in invoices:
        doc = invoice.document
        stem = folder / f"{month}-{doc['currency']}{'-preview' if dry else ''}"
        stem.with_suffix(".json").write_text(as_text(doc))
        stem.with_suffix(".csv").write_text(invoice.proof_csv)
        typer.echo(
            f"{store} {month} {doc['currency']}: incremental {doc['incremental_revenue_minor']}, "
            f"fee {doc['fee_minor']} ({doc['fee_bp']} bp), {doc['attributed_orders']} orders: "
            f"{stem}.json, {stem}.csv"
        )
