"""The contracts downstream teams read (AsyncAPI document, docs/topics.md) cover the whole
catalogue, resolve, and show examples that really encode."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from revloop.cli.contracts import contracts_app
from revloop.settings import Settings
from schemas.contracts import (
    DOC_PATH,
    asyncapi_document,
    build_contracts,
    example_for,
    jsonable,
    round_trip,
    topics_markdown,
    with_namespaces,
)
from schemas.registry import CommittedCatalogue, load_definition, parse
from schemas.topics import TOPICS, topic_for_record

CATALOGUE = CommittedCatalogue.load()
CONTRACTS = build_contracts(TOPICS, CATALOGUE)
DOC = asyncapi_document(CONTRACTS)
COMPONENT_KEY = re.compile(r"^[\w\d\.\-_]+$")
SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_docs_topics_md_is_current() -> None:
    assert DOC_PATH.read_text() == topics_markdown(CONTRACTS), "run `revloop contracts docs`"


def test_every_topic_record_producer_and_consumer_is_in_the_asyncapi_document() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert list(DOC["channels"]) == [t.name for t in TOPICS]
    expected_operations = set()
    for t in TOPICS:
        channel = DOC["channels"][t.name]
        assert channel["address"] == t.name
        assert [m["name"] for m in channel["messages"].values()] == list(t.values)
        assert all(COMPONENT_KEY.match(key) for key in channel["messages"])
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == t.partitions
        config = kafka["topicConfiguration"]
        assert config["cleanup.policy"] == [t.cleanup.value]
        assert config["retention.ms"] == t.retention_ms
        assert {k: str(v) for k, v in config.items() if k != "cleanup.policy"} == {
            k: v for k, v in t.config.items() if k != "cleanup.policy"
        }
        expected_operations |= {("send", app, t.name) for app in t.producers}
        expected_operations |= {("receive", app, t.name) for app in t.consumers}
    found = set()
    for op_id, op in DOC["operations"].items():
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), f"{op_id} must point into root channels"
        # An operation's messages belong to its own channel.
        assert all(m["$ref"].startswith(channel_ref + "/messages/") for m in op["messages"])
        app = op_id.split(f".{op['action']}.", 1)[0]
        found.add((op["action"], app, channel_ref.removeprefix("#/channels/")))
    assert found == expected_operations
    assert len(DOC["operations"]) == len(expected_operations)  # ids unique


def test_every_ref_resolves() -> None:
    refs = list(_refs(DOC))
    assert len(refs) > len(TOPICS) * 2
    for ref in refs:
        target: Any = DOC
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            assert isinstance(target, dict) and part in target, f"{ref} does not resolve"
            target = target[part]


def test_every_message_shows_an_example_that_encodes_under_its_key() -> None:
    for t in TOPICS:
        for message in DOC["channels"][t.name]["messages"].values():
            definition = load_definition(message["name"])
            # The payload's name/namespace spelling is the same schema as the .avsc.
            assert _canonical(message["payload"]["schema"]) == _canonical(definition)
            # AsyncAPI's Avro schema takes simple names; the namespace goes apart.
            assert all(SIMPLE_NAME.match(n) for n in _names(message["payload"]["schema"]))
            model = next(
                m for c in CONTRACTS.channels for m in c.messages if m.full_name == message["name"]
            )
            decoded = round_trip(definition, model.example)
            assert decoded == model.example
            assert message["examples"][0]["payload"] == jsonable(decoded)
            key = t.message_key(decoded).decode()
            assert message["bindings"]["kafka"]["key"]["examples"] == [key]
            assert message["bindings"]["kafka"]["schemaIdPayloadEncoding"] == "4"
            assert message["x-schema-versions"] == [
                e.version for e in CATALOGUE.versions(message["name"])
            ]
            assert message["x-schema-versions"], f"{message['name']} was never released"


def test_examples_follow_defaults_types_and_unions() -> None:
    definition = {
        "type": "record",
        "name": "dev.revloop.events.Sample",
        "fields": [
            {"name": "amount", "type": "dev.revloop.common.Money"},
            {"name": "when", "type": {"type": "int", "logicalType": "date"}},
            {"name": "maybe", "type": ["null", "long", "string"]},
            {"name": "flag", "type": "boolean", "default": True},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["b", "a"]}},
            {"name": "again", "type": "Kind"},
            {"name": "labels", "type": {"type": "map", "values": "bytes"}},
        ],
    }
    money = load_definition("dev.revloop.common.Money")
    definition["fields"][0]["type"] = money
    example = example_for(definition)
    assert example["amount"] == {"amount_minor": 1999, "currency": "USD"}
    assert example["maybe"] == 1  # first non-null branch
    assert example["flag"] is True  # the default wins
    assert example["kind"] == example["again"] == "b"
    assert jsonable(example)["when"] == 20468  # 2026-01-15 in days since the epoch


def test_an_example_that_does_not_survive_a_round_trip_is_refused() -> None:
    # CustomerRedact's override sets customer_id, which this version of the record lacks: the
    # writer would drop it silently, so the documented example would lie.
    narrower = {
        "type": "record",
        "name": "dev.revloop.events.CustomerRedact",
        "fields": [{"name": "scope", "type": "string"}],
    }
    with pytest.raises(ValueError, match="round trip"):
        example_for(narrower)


def test_the_cli_prints_asyncapi_yaml_and_checks_the_docs(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(contracts_app, ["asyncapi", "--kafka", "kafka.example:9092"])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.stdout)
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["local"]["host"] == "kafka.example:9092"
    assert document["channels"] == DOC["channels"]

    doc = tmp_path / "topics.md"
    doc.write_text("stale\n")
    stale = runner.invoke(contracts_app, ["docs", "--check", "-o", str(doc)])
    assert stale.exit_code == 1
    assert "run `revloop contracts docs`" in stale.output
    assert runner.invoke(contracts_app, ["docs", "-o", str(doc)]).exit_code == 0
    assert runner.invoke(contracts_app, ["docs", "--check", "-o", str(doc)]).exit_code == 0
    assert doc.read_text() == DOC_PATH.read_text()


def test_every_event_record_has_exactly_one_channel() -> None:
    from schemas.registry import event_names

    for name in event_names():
        assert DOC["channels"][topic_for_record(name).name]["messages"][name.rsplit(".", 1)[-1]]


def _refs(node: Any) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _names(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed"):
            yield node["name"]
        for value in node.values():
            yield from _names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _names(item)


def _canonical(schema: dict[str, Any]) -> str:
    return str(fastavro.schema.to_parsing_canonical_form(parse(with_namespaces(schema))))


ASYNCAPI_SPECS = "@asyncapi/specs@6.11.1"
"""The AsyncAPI initiative's own JSON schemas, from the npm registry (not vendored)."""


@pytest.fixture(scope="session")
def official_asyncapi_schema() -> dict[str, Any]:
    cache = Settings().state_dir.resolve() / "cache" / "asyncapi-specs"
    tarball = next(iter(cache.glob("asyncapi-specs-*.tgz")), None)
    if tarball is None:
        npm = shutil.which("npm")
        assert npm is not None, "npm fetches the official AsyncAPI schema: apt-get install npm"
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "pack", ASYNCAPI_SPECS, "--silent", "--pack-destination", str(cache)],
            check=True,
            capture_output=True,
            timeout=180,
        )
        tarball = next(cache.glob("asyncapi-specs-*.tgz"))
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/schemas/3.0.0-without-$id.json")
        assert member is not None
        schema: dict[str, Any] = json.load(member)
    return schema


def test_the_document_is_valid_against_the_official_asyncapi_schema(
    official_asyncapi_schema: dict[str, Any],
) -> None:
    validator = jsonschema.Draft7Validator(official_asyncapi_schema)
    document = json.loads(json.dumps(DOC))  # the YAML's data model: plain JSON types
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    assert errors == []
    # The validator does look inside bindings: a malformed one is caught.
    broken = copy.deepcopy(document)
    channel = next(iter(broken["channels"].values()))
    channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] = "delete"
    assert list(validator.iter_errors(broken))
