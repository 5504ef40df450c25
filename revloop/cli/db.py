"""`revloop db ...` (the sink's schema) and `revloop sink ...` (the sinks)."""

from __future__ import annotations

import psycopg
import sqlalchemy.exc
import typer

from revloop.settings import get_settings
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
