"""The database every sink test will stand on: a real PostgreSQL 15+, reachable from settings."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from revloop.settings import Settings


def test_the_database_is_a_real_postgres_15_or_later(settings: Settings) -> None:
    with psycopg.connect(settings.dsn, connect_timeout=10) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
    assert version is not None
    assert int(version[0]) >= 150000


def test_transactions_are_atomic(settings: Settings) -> None:
    url = settings.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE money (amount_minor bigint, currency char(3))"))
            conn.execute(sa.text("INSERT INTO money VALUES (9007199254740993, 'USD')"))
            with pytest.raises(sa.exc.DataError), conn.begin_nested():
                conn.execute(sa.text("INSERT INTO money VALUES (1, 'TOOLONG')"))
            rows = conn.execute(sa.text("SELECT amount_minor, currency FROM money")).all()
        assert rows == [(9007199254740993, "USD")]
    finally:
        engine.dispose()
