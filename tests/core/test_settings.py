"""Settings: the one place configuration is read (pure; no broker)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr, ValidationError

from revloop.kafka import consumer_config
from revloop.settings import Settings
from schemas.topics import TOPICS


def test_the_dsn_keeps_a_password_with_url_reserved_characters_intact() -> None:
    password = "p@ss:w/rd?#%&="
    settings = Settings(postgres_password=SecretStr(password), postgres_user="rev loop")
    parsed = conninfo_to_dict(settings.dsn)
    assert parsed["password"] == password
    assert parsed["user"] == "rev loop"
    assert parsed["dbname"] == settings.postgres_db


def test_a_topic_prefix_names_every_topic_and_consumer_group() -> None:
    settings = Settings(topic_prefix="staging.")
    assert [t.name for t in settings.topics] == [f"staging.{t.name}" for t in TOPICS]
    assert consumer_config(settings, "revloop.ingest.normalizer")["group.id"] == (
        "staging.revloop.ingest.normalizer"
    )
    assert [t.name for t in Settings().topics] == [t.name for t in TOPICS]


@pytest.mark.parametrize("prefix", ["has space.", "slash/", "ünïcode.", "x" * 101])
def test_a_topic_prefix_kafka_would_refuse_is_refused_up_front(prefix: str) -> None:
    with pytest.raises(ValidationError):
        Settings(topic_prefix=prefix)


@pytest.mark.parametrize(
    "variable", ["REVLOOP_STORES_CHECK_SECONDS", "REVLOOP_INGEST_STORES_CHECK_SECONDS"]
)
def test_the_stores_check_interval_reads_its_name_and_its_earlier_one(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "2.5")
    assert Settings().stores_check_seconds == 2.5


def test_the_normalizers_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVLOOP_NORMALIZER_DEDUPE_WINDOW_HOURS", "48")
    monkeypatch.setenv("REVLOOP_NORMALIZER_BATCH_SIZE", "100")
    monkeypatch.setenv("REVLOOP_NORMALIZER_GROUP_ID", "revloop.normalizer.b")
    settings = Settings()
    assert settings.normalizer_dedupe_window_hours == 48
    assert settings.normalizer_batch_size == 100
    assert settings.normalizer_group_id == "revloop.normalizer.b"
    with pytest.raises(ValidationError):
        Settings(normalizer_batch_size=0)
