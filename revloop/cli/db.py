"""`revloop db ...` (the sink's schema), `revloop sink ...` (the sinks) and `revloop ledger ...`
(the billing ledger in Postgres)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy.exc
import typer
from rich.console import Console
from rich.table import Table

from platforms.payloads import NotNormalizable, currency_code, minor_units
from revloop.settings import get_settings
from sinks.postgres.ledger import balances, verify
from sinks.postgres.migrate import current, head, upgrade
from sinks.postgres.service import sink_postgres_command
from sinks.postgres.settlement import (
    Baseline,
    SettlementError,
    as_text,
    baseline_of,
    preview,
    recompute,
    set_baseline,
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
    """Settle a store's month from its ledger, on its plan: post the fee, write the invoice and
    its proof, close the period. Settling again changes nothing."""
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
        written = f"{stem}.json, {stem}.csv"
        if invoice.spend_csv:
            spend = stem.with_name(stem.name + "-spend.csv")
            spend.write_text(invoice.spend_csv)
            written += f", {spend}"
        typer.echo(
            f"{store} {month} {doc['currency']} ({doc['plan']}): billed on "
            f"{doc['billed_on_minor']}, fee {doc['fee_minor']} ({doc['fee_bp']} bp), "
            f"{doc['attributed_orders']} attributed orders: {written}"
        )


baseline_app = typer.Typer(
    help="A store's baseline for settlement (the stores table): what it sold a month, and the "
    "return its ads had, before revloop.",
    no_args_is_help=True,
)


@baseline_app.command("set")
def baseline_set_command(
    store: str = typer.Option(..., "--store", help="The store."),
    monthly_revenue: str | None = typer.Option(
        None,
        "--monthly-revenue",
        help="Average monthly revenue before revloop, a decimal in the currency (45267.54).",
    ),
    currency: str | None = typer.Option(None, "--currency", help="Its ISO 4217 currency."),
    roas: str | None = typer.Option(
        None, "--roas", help="The store's own baseline ROAS (3.2), for the ROAS plan."
    ),
) -> None:
    """Set a store's baseline figures (what is not given stays). A settled month keeps the
    baseline it was billed against: its ledger holds it."""
    if monthly_revenue is None and roas is None:
        typer.secho("error: give --monthly-revenue (with --currency) or --roas", fg="red", err=True)
        raise typer.Exit(2)
    try:
        minor = None
        if monthly_revenue is not None:
            code = currency_code(currency or "")
            minor = minor_units(monthly_revenue, code)
        roas_bp = _basis_points(roas) if roas is not None else None
    except (NotNormalizable, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    with _connect() as conn:
        try:
            baseline = set_baseline(
                conn,
                get_settings(),
                store,
                monthly_revenue_minor=minor,
                currency=code if minor is not None else None,
                roas_bp=roas_bp,
                source="manual",
                now=datetime.now(UTC),
            )
        except SettlementError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
    _show_baseline(store, baseline)


@baseline_app.command("show")
def baseline_show_command(store: str = typer.Option(..., "--store", help="The store.")) -> None:
    """A store's baseline figures."""
    with _connect() as conn:
        _show_baseline(store, baseline_of(conn, store))


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _basis_points(text: str) -> int:
    value = Decimal(text) * 10_000 if _DECIMAL.fullmatch(text.strip()) else None
    if value is None or value != value.to_integral_value() or value <= 0:
        raise ValueError(f"{text!r} is not a ratio like 3.2 (at most 4 decimals, above 0)")
    return int(value)


def _show_baseline(store: str, baseline: Baseline) -> None:
    revenue = (
        f"{baseline.monthly_revenue_minor} {baseline.currency} (minor units) a month"
        if baseline.monthly_revenue_minor is not None
        else "not set"
    )
    roas = f"{baseline.roas_bp / 10_000:g}" if baseline.roas_bp else "not set (the default applies)"
    typer.echo(f"{store}: baseline revenue {revenue}; baseline ROAS {roas}")
    if baseline.set_at is not None:
        typer.echo(f"set {baseline.set_at.isoformat()} ({baseline.source})")
