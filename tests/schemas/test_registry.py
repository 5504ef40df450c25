"""The schema registry in the stack (Apicurio Registry, Confluent-compatible API): what a
downstream team's standard tooling sees, and the compatibility rule that protects it."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from typer.testing import CliRunner

from revloop.kafka import ensure_topics, producer_config, serde_for
from revloop.settings import Settings
from schemas.contracts import build_contracts
from schemas.registry import (
    COMPATIBILITY,
    CommittedCatalogue,
    ConfluentRegistry,
    SchemaError,
    backward_incompatibilities,
    event_names,
    fingerprint,
    load_definition,
)
from schemas.topics import TOPICS

ORDER = "dev.revloop.events.OrderEvent"


@pytest.fixture(scope="module")
def registry_url(settings: Settings) -> str:
    url = settings.registry_url
    assert url is not None, "the tests run in registry mode (REVLOOP_SCHEMA_IDS=registry)"
    return url


@pytest.fixture
def registry(registry_url: str) -> Iterator[ConfluentRegistry]:
    client = ConfluentRegistry(registry_url)
    yield client
    client.close()


@pytest.fixture
def throwaway(registry: ConfluentRegistry) -> Iterator[Any]:
    """Subjects of the test's own, holding a real subject's released versions; deleted after."""
    made: list[str] = []

    def make(subject: str, exclude: dict[str, Any] | None = None) -> str:
        name = f"test-{uuid.uuid4().hex[:8]}-{subject}"
        made.append(name)
        skip = fingerprint(exclude) if exclude is not None else None
        for entry in CommittedCatalogue.load().versions(subject):
            if entry.fingerprint != skip:
                registry.id_for(name, entry.definition)
        registry.set_compatibility(name, COMPATIBILITY)
        return name

    yield make
    for name in made:
        registry.delete_subject(name)


# --- the proof: standard tooling decodes every topic, with no schema of ours ---


def test_every_topic_decodes_with_confluents_own_deserializer(
    settings: Settings, registry_url: str, scratch_catalogue: Any
) -> None:
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    serde = serde_for(settings)
    producer = Producer(producer_config(settings))
    sent: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    contracts = build_contracts(TOPICS, CommittedCatalogue.load())
    for scratch, channel in zip(topics, contracts.channels, strict=True):
        for message in channel.messages:
            producer.produce(
                scratch.name,
                key=message.example_key.encode(),
                value=serde.encode(message.full_name, message.example),
            )
            sent[(scratch.name, message.full_name)] = (message.example_key, message.example)
    assert producer.flush(30) == 0
    assert len(sent) == len(event_names())  # every event type, on its topic

    received = _read_with_confluent_tooling(
        settings.bootstrap_servers, registry_url, [t.name for t in topics], len(sent)
    )

    assert received == sent


def _read_with_confluent_tooling(
    bootstrap: str, registry_url: str, topics: list[str], expected: int
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """What a downstream team writes: confluent-kafka, the registry's URL, nothing of revloop's.
    The record type comes from the writer schema the registry returns for the message's id."""
    client = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(client)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-contracts-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    received: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    try:
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign(
            [
                TopicPartition(name, partition, OFFSET_BEGINNING)
                for name in topics
                for partition in metadata[name].partitions
            ]
        )
        deadline = time.monotonic() + 60
        while len(received) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            raw = msg.value()
            assert raw is not None
            schema_id = int.from_bytes(raw[1:5], "big")
            writer = json.loads(client.get_schema(schema_id).schema_str)
            name = writer["name"]
            record = name if "." in name else f"{writer['namespace']}.{name}"
            context = SerializationContext(msg.topic(), MessageField.VALUE)
            key = msg.key()
            assert key is not None
            received[(msg.topic(), record)] = (key.decode(), deserializer(raw, context))
    finally:
        consumer.close()
    return received


def test_messages_carry_the_ids_the_registry_assigned(
    settings: Settings, registry_url: str
) -> None:
    serde = serde_for(settings, "streams.circuit_breaker")
    record = "dev.revloop.events.CircuitBreakerAction"
    example = next(
        m.example
        for c in build_contracts(TOPICS, CommittedCatalogue.load()).channels
        for m in c.messages
        if m.full_name == record
    )
    encoded = serde.encode(record, example)

    client = SchemaRegistryClient({"url": registry_url})
    registered = client.lookup_schema(record, Schema(json.dumps(load_definition(record)), "AVRO"))
    assert encoded[0] == 0
    assert int.from_bytes(encoded[1:5], "big") == registered.schema_id


# --- compatibility: every schema against every released version, in the real registry ---


@pytest.mark.parametrize("subject", event_names())
def test_each_schema_reads_every_released_version(
    registry: ConfluentRegistry, throwaway: Any, subject: str
) -> None:
    current = load_definition(subject)
    history = throwaway(subject, exclude=current)
    assert registry.compatibility(history) == COMPATIBILITY
    assert registry.is_compatible(history, current)
    # The live subject holds the same rule (set by `revloop infra up` / `schemas register`).
    assert registry.compatibility(subject) == COMPATIBILITY


def _added_without_default(schema: dict[str, Any]) -> dict[str, Any]:
    schema["fields"].append({"name": "loyalty_tier", "type": "string"})
    return schema


def _order_id_made_a_number(schema: dict[str, Any]) -> dict[str, Any]:
    next(f for f in schema["fields"] if f["name"] == "order_id")["type"] = "long"
    return schema


@pytest.mark.parametrize("breaking", [_added_without_default, _order_id_made_a_number])
def test_a_breaking_change_fails_the_check_and_is_refused(
    registry: ConfluentRegistry, throwaway: Any, breaking: Any
) -> None:
    current = load_definition(ORDER)
    broken = breaking(copy.deepcopy(current))
    history = throwaway(ORDER)

    assert not registry.is_compatible(history, broken)
    with pytest.raises(SchemaError, match=f"breaks {COMPATIBILITY}"):
        registry.id_for(history, broken)
    assert backward_incompatibilities(reader=broken, writer=current)  # `schemas lock` agrees
    # What a producer using Confluent's client sees, too.
    client = SchemaRegistryClient({"url": registry.url})
    assert not client.test_compatibility_all_versions(history, Schema(json.dumps(broken), "AVRO"))


# --- the client: clear errors, no secrets ---


def test_look_up_only_names_the_command_that_registers(
    registry_url: str, registry: ConfluentRegistry, throwaway: Any
) -> None:
    subject = throwaway("dev.revloop.events.Touchpoint")
    lookup_only = ConfluentRegistry(registry_url, auto_register=False)
    changed = copy.deepcopy(load_definition("dev.revloop.events.Touchpoint"))
    changed["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    with pytest.raises(SchemaError, match="run `revloop schemas register`"):
        lookup_only.id_for(subject, changed)
    registered = registry.id_for(subject, changed)
    assert lookup_only.id_for(subject, changed) == registered


def test_a_registry_that_does_not_answer_is_a_clear_error() -> None:
    down = ConfluentRegistry("http://127.0.0.1:1/apis/ccompat/v7")
    with pytest.raises(SchemaError, match=r"did not answer .*revloop infra status"):
        down.id_for(ORDER, load_definition(ORDER))


def test_credentials_in_the_url_never_show() -> None:
    client = ConfluentRegistry("http://ops:s3cret@127.0.0.1:1/apis/ccompat/v7")
    with pytest.raises(SchemaError) as raised:
        client.definition_of(1)
    for shown in (repr(client), client.url, str(raised.value)):
        assert "s3cret" not in shown
        assert "127.0.0.1:1" in shown


def test_register_command_registers_every_version_and_is_idempotent(
    registry_url: str, registry: ConfluentRegistry
) -> None:
    from revloop.cli.schemas import schemas_app

    runner = CliRunner()
    first = runner.invoke(schemas_app, ["register", "--url", registry_url])
    again = runner.invoke(schemas_app, ["register", "--url", registry_url])
    assert first.exit_code == 0, first.output
    assert again.output == first.output  # same ids, nothing new
    catalogue = CommittedCatalogue.load()
    assert f"{len(list(catalogue))} version(s) of {len(event_names())} subjects" in first.output
    for subject in event_names():
        assert registry.versions(subject), subject
        assert registry.compatibility(subject) == COMPATIBILITY


def test_register_without_a_registry_says_what_to_give(monkeypatch: pytest.MonkeyPatch) -> None:
    from revloop.cli.schemas import schemas_app
    from revloop.settings import get_settings

    monkeypatch.setenv("REVLOOP_SCHEMA_IDS", "catalogue")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(schemas_app, ["register"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "give --url" in result.output


def test_a_process_fails_at_start_when_the_registry_is_down() -> None:
    unreachable = Settings(schema_registry_url="http://127.0.0.1:1/apis/ccompat/v7")
    with pytest.raises(SchemaError, match="did not answer"):
        serde_for(unreachable, "ingest")
    # In catalogue mode the committed ids serve, with no registry at all.
    offline = Settings(schema_registry_url="http://127.0.0.1:1", schema_ids="catalogue")
    assert offline.registry_url is None
    serde = serde_for(offline, "ingest")
    catalogue = CommittedCatalogue.load()
    raw = "dev.revloop.events.RawWebhook"
    assert serde.writer(raw).schema_id == catalogue.id_for(raw, load_definition(raw))
