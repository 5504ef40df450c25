"""Every test that needs infrastructure gets a real Kafka broker, a real PostgreSQL and a real
schema registry, from:

1. ``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL`` (and ``SCHEMA_REGISTRY_URL``; unset, the local
   stack's registry) when the first two are set;
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
from schemas.registry import CommittedCatalogue, ConfluentRegistry
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
    schema_registry_url: str | None
    """None: the local stack's registry (Settings.registry_url)."""
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
        yield Endpoints(
            bootstrap, database_url, os.environ.get("SCHEMA_REGISTRY_URL"), "environment"
        )
    elif _docker_answers():
        # Unverified on the development machines, which have no Docker engine.
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with ExitStack() as stack:
            kafka = stack.enter_context(KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft())
            postgres = stack.enter_context(PostgresContainer("postgres:15", driver=None))
            registry = stack.enter_context(
                DockerContainer("apicurio/apicurio-registry:3.3.3").with_exposed_ports(8080)
            )
            wait_for_logs(registry, "Listening on", timeout=120)
            url = (
                f"http://{registry.get_container_host_ip()}:"
                f"{registry.get_exposed_port(8080)}/apis/ccompat/v7"
            )
            # What `revloop infra up` does for the local stack's registry.
            ConfluentRegistry(url).register_catalogue(CommittedCatalogue.load())
            # Processes the tests start read their endpoints from the environment.
            os.environ.update(
                KAFKA_BOOTSTRAP_SERVERS=kafka.get_bootstrap_server(),
                DATABASE_URL=postgres.get_connection_url(),
                SCHEMA_REGISTRY_URL=url,
            )
            yield Endpoints(
                kafka.get_bootstrap_server(), postgres.get_connection_url(), url, "testcontainers"
            )
    else:
        from infra.stack import Stack

        settings = get_settings()
        Stack(settings).up()
        yield Endpoints(settings.bootstrap_servers, settings.dsn, None, "local stack")


@pytest.fixture(scope="session")
def settings(endpoints: Endpoints) -> Settings:
    return Settings(
        kafka_bootstrap_servers=endpoints.bootstrap_servers,
        database_url=endpoints.database_url,
        schema_registry_url=endpoints.schema_registry_url,
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
