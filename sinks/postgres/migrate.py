"""`revloop db upgrade`: bring a database to the newest schema with Alembic's migrations in
sinks/postgres/migrations/ (the tables of sinks/postgres/tables.py, the analyst views, the
ledger's guards)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(dsn: str) -> str:
    """A libpq URL as SQLAlchemy's psycopg 3 dialect names it."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ValueError("the database URL must start with postgresql://")
    return f"postgresql+psycopg://{rest}"


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' would be read as interpolation by Alembic's ConfigParser (passwords are quoted).
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> str | None:
    """Apply the migrations up to ``revision``; return the revision the database is at."""
    config = alembic_config(dsn)
    engine = create_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        return MigrationContext.configure(connection).get_current_revision()


def current(dsn: str) -> str | None:
    engine = create_engine(sqlalchemy_url(dsn), poolclass=NullPool)
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("postgresql://x")).get_current_head()
