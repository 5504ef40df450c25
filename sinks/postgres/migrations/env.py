"""Alembic's entry point for revloop's migrations; run them with `revloop db upgrade`
(sinks/postgres/migrate.py), which hands this module an open connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from sinks.postgres.tables import Base


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(
        context.config.get_main_option("sqlalchemy.url") or "", poolclass=NullPool
    )
    with engine.connect() as fresh:
        _run(fresh)


_online()
