"""`revloop db upgrade|status`, and the migrations against the models."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg import sql
from sqlalchemy import create_engine

from revloop.settings import Settings
from sinks.postgres.migrate import head, sqlalchemy_url
from sinks.postgres.tables import Base
from tests.sink_support import scratch_database


def test_the_migrations_build_exactly_the_models(settings: Settings) -> None:
    with scratch_database(settings) as dsn:
        engine = create_engine(sqlalchemy_url(dsn))
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        engine.dispose()


def test_db_upgrade_and_status_from_the_command_line(settings: Settings) -> None:
    name = f"dbcli_{os.getpid()}"
    base = settings.dsn.rpartition("/")[0]
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {**os.environ, "DATABASE_URL": f"{base}/{name}"}

    def revloop(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "revloop", "db", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    try:
        behind = revloop("status")
        assert behind.returncode == 1
        assert "no revision" in behind.stdout
        for _ in range(2):  # a second upgrade changes nothing
            done = revloop("upgrade")
            assert done.returncode == 0, done.stderr
            assert f"database at revision {head()}" in done.stdout
        assert revloop("status").returncode == 0
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_db_upgrade_against_no_database_is_a_clear_error() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://revloop:x@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-m", "revloop", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach Postgres" in done.stderr
    assert "x@" not in done.stderr  # no password
