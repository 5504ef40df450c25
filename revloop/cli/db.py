"""`revloop db ...` (the sink's schema), `revloop sink ...` (the sinks) and `revloop ledger ...`
(the billing ledger in Postgres)."""

from __future__ import annotations

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
