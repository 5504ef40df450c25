"""examples/ runs as a downstream team would run it: its own process, against the stack."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from typing import Any

from confluent_kafka import Producer

from revloop.kafka import ensure_topics, producer_config, serde_for
from revloop.settings import Settings
from schemas.contracts import example_for
from schemas.registry import load_definition
from tests import ROOT

EXAMPLE = ROOT / "examples" / "circuit_breaker_consumer.py"
ACTION = "dev.revloop.events.CircuitBreakerAction"


def test_the_example_holds_nothing_of_revloop() -> None:
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(EXAMPLE.read_text()))
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(EXAMPLE.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    ours = {"revloop", "schemas", "streams", "sinks", "connectors", "ingest", "platforms"}
    assert not imported & ours, imported & ours


def test_the_circuit_breaker_consumer_reads_committed_actions_and_commits_after_each(
    settings: Settings, scratch_catalogue: Any
) -> None:
    actions = next(t for t in scratch_catalogue() if t.name.endswith(".actions.circuit-breaker.v1"))
    ensure_topics(settings, [actions])
    serde = serde_for(settings, "streams.circuit_breaker")
    template = example_for(load_definition(ACTION))

    def action(product: str, kind: str) -> tuple[bytes, bytes]:
        value = {
            **template,
            "envelope": {**template["envelope"], "event_id": str(uuid.uuid4())},
            "product_id": product,
            "action": kind,
        }
        return actions.message_key(value), serde.encode(ACTION, value)

    producer = Producer(
        producer_config(settings, **{"transactional.id": f"test-example-{uuid.uuid4()}"})
    )
    producer.init_transactions(30)
    for products, commit in ((["p-1", "p-2"], True), (["p-aborted"], False), (["p-3"], True)):
        producer.begin_transaction()
        for product in products:
            key, value = action(product, "pause")
            producer.produce(actions.name, key=key, value=value)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    group = f"test-example-{uuid.uuid4().hex[:8]}"
    first = _run_example(settings, actions.name, group, "--max-messages", "3")
    assert sorted(line["product_id"] for line in first) == ["p-1", "p-2", "p-3"]  # not p-aborted
    assert all(line["action"] == "pause" for line in first)
    store = template["envelope"]["store_id"]
    assert {line["key"] for line in first} == {f"{store}/p-{n}" for n in (1, 2, 3)}

    # Every handled message was committed (and the group starts from the earliest offset
    # otherwise): a second run has nothing left to do...
    assert _run_example(settings, actions.name, group, "--idle-exit", "3") == []

    # ...and a record written after it is the only thing the next run handles.
    producer.begin_transaction()
    key, value = action("p-4", "resume")
    producer.produce(actions.name, key=key, value=value)
    producer.commit_transaction(30)
    later = _run_example(settings, actions.name, group, "--max-messages", "1")
    assert [(line["product_id"], line["action"]) for line in later] == [("p-4", "resume")]


def _run_example(settings: Settings, topic_name: str, group: str, *extra: str) -> list[Any]:
    assert settings.registry_url is not None
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap-servers",
            settings.bootstrap_servers,
            "--schema-registry-url",
            settings.registry_url,
            "--group-id",
            group,
            "--topic",
            topic_name,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]
