"""Every test that needs infrastructure gets a real Kafka broker and a real PostgreSQL, from:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` when both are set;
2. otherwise testcontainers, when a Docker daemon answers;
3. otherwise the local stack (``revloop infra up``), started here if it isn't running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import hypothesis
import pytest
from confluent_kafka.admin import AdminClient

from revloop.kafka import delete_topics
from revloop.settings import Settings, get_settings
from schemas.topics import Topic, prefixed

# `HYPOTHESIS_PROFILE=thorough pytest tests/platforms/test_platform_normalization.py` hunts for
# the rare input CI would otherwise find by chance; the default profile keeps the suite fast.
hypothesis.settings.register_profile("thorough", max_examples=5_000, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Processes the tests start serve no /metrics unless a test gives them a port: dozens of
# short-lived children would otherwise race for the pipeline's default ports.
for _knob in ("NORMALIZER", "WORKER", "SINK", "HYDRATOR", "ADS"):
    os.environ.setdefault(f"REVLOOP_{_knob}_METRICS_PORT", "0")


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    database_url: str
    origin: str


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    bootstrap, database_url = (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        os.environ.get("DATABASE_URL"),
    )
    if bootstrap and database_url:
        yield Endpoints(bootstrap, database_url, "environment")
    elif _docker_answers():
        # Unverified on the development machines, which have no Docker engine.
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with ExitStack() as stack:
            kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft())
            postgres = stack.enter_context(PostgresContainer("postgres:15", driver=None))
            yield Endpoints(
                kafka.get_bootstrap_server(), postgres.get_connection_url(), "testcontainers"
            )
    else:
        from infra.stack import Stack

        settings = get_settings()
        Stack(settings).up()
        yield Endpoints(settings.bootstrap_servers, settings.dsn, "local stack")


@pytest.fixture(scope="session")
def settings(endpoints: Endpoints) -> Settings:
    return Settings(
        kafka_bootstrap_servers=endpoints.bootstrap_servers, database_url=endpoints.database_url
    )


@pytest.fixture(scope="session")
def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


@pytest.fixture(scope="session")
def scratch_catalogue(settings: Settings) -> Iterator[Callable[[], tuple[Topic, ...]]]:
    """The real catalogue under a unique prefix, so a test owns its topics; deleted afterwards."""
    made: list[str] = []

    def make() -> tuple[Topic, ...]:
        topics = prefixed(f"test-{uuid.uuid4().hex[:10]}.")
        made.extend(t.name for t in topics)
        return topics

    yield make
    if made:
        delete_topics(settings, made)
