"""What downstream teams read: the topic catalogue and the Avro schemas as one contract model,
rendered two ways (an AsyncAPI 3.0 document and docs/topics.md) so neither can drift from the
other or from the code.

No I/O but reading the ``.avsc`` files: the model is built from ``TOPICS``, the schemas and the
committed catalogue; each message carries a deterministic example that is proven to encode by a
fastavro round trip.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import fastavro
import yaml

from schemas.registry import COMPATIBILITY, CommittedCatalogue, load_definition, parse
from schemas.topics import DAY_MS, Cleanup, Topic

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "topics.md"
DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_SCHEMA_REGISTRY = "http://127.0.0.1:8081/apis/ccompat/v7"
REGENERATE = "revloop contracts docs"

AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
KAFKA_BINDING = "0.5.0"
WIRE_FORMAT = (
    "Confluent wire format: magic byte 0x00, the 4-byte big-endian schema id, then the Avro "
    "binary body."
)
KEY_FORMAT = (
    "Plain UTF-8 string (no schema id): the key fields joined by '/'; '*' stands for a missing id "
    "(shop-wide events)."
)
SUBJECTS = (
    "Subjects follow RecordNameStrategy: subject = the record's full name, because some topics "
    "carry several record types (e.g. ProductUpsert and ProductDelete share one topic to stay "
    "in order). In confluent-kafka: `subject.name.strategy = "
    "confluent_kafka.schema_registry.record_subject_name_strategy`."
)
READ_COMMITTED = (
    "The stream processors and connectors write in Kafka transactions (exactly-once): consume "
    "with `isolation.level=read_committed`, or records of aborted transactions will be seen."
)

SHARED_RECORDS = ("dev.revloop.common.Envelope", "dev.revloop.common.Money")

_EXAMPLE_TIME = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
_EXAMPLE_DAY = date(2026, 1, 15)
_BY_FIELD_NAME: dict[str, Any] = {
    "store_id": "shopify:demo-shop",
    "currency": "USD",
    "amount_minor": 1999,
    "channel": "meta",
    "customer_key": "9b2f6c1d0e8a4b3c",
    "resource": "orders",
}
"""Values that read better than the generic ones, whatever record the field is in."""

_MONEY = {"amount_minor": 1999, "currency": "USD"}
_OVERRIDES: dict[str, dict[str, Any]] = {
    "dev.revloop.events.CircuitBreakerAction": {
        "campaign_ids": ["2001"],
        "campaigns": [{"campaign_id": "2001", "channel": "meta"}],
        "available": 0,
        "previous_available": 3,
        "reason": "sold out: 0 available (threshold 0)",
    },
    "dev.revloop.events.OrderEvent": {
        "total": _MONEY,
        "line_items": [
            {
                "line_item_id": "3001",
                "product_id": "1002",
                "variant_id": None,
                "sku": None,
                "title": None,
                "quantity": 1,
                "unit_price": _MONEY,
                "total": _MONEY,
            }
        ],
    },
    "dev.revloop.events.ProductUpsert": {
        "title": "Demo T-shirt",
        "variants": [
            {
                "variant_id": "4001",
                "sku": "TS-1",
                "title": None,
                "price": _MONEY,
                "inventory_item_id": "5001",
                "inventory_quantity": 12,
            }
        ],
    },
    "dev.revloop.events.CustomerRedact": {"customer_id": "1002"},
    "dev.revloop.events.RawWebhook": {
        "topic": "orders/create",
        "content_type": "application/json",
        "headers": {"x-shopify-topic": "orders/create"},
        "body": b'{"id": 1002}',
    },
}
"""Per-record examples where the generated one reads badly (kept small: each is validated)."""


@dataclass(frozen=True)
class Message:
    full_name: str
    name: str
    doc: str
    definition: dict[str, Any]
    versions: tuple[int, ...]
    """Released versions of the subject in schemas/catalogue.json."""
    example: dict[str, Any]
    """Python values as fastavro writes them (datetimes, dates, bytes)."""
    example_key: str


@dataclass(frozen=True)
class Channel:
    topic: Topic
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Contracts:
    channels: tuple[Channel, ...]
    shared: tuple[dict[str, Any], ...]
    """Shared records every event embeds (Envelope, Money), documented once."""
    version: str
    kafka: str
    schema_registry: str
    replicas: int


def build_contracts(
    topics: Sequence[Topic],
    catalogue: CommittedCatalogue,
    kafka: str = DEFAULT_KAFKA,
    schema_registry: str = DEFAULT_SCHEMA_REGISTRY,
    replicas: int = 1,
) -> Contracts:
    """The one model both renderings read."""
    channels = tuple(
        Channel(t, tuple(_message(t, full_name, catalogue) for full_name in t.values))
        for t in topics
    )
    newest_id = max((e.schema_id for e in catalogue), default=0)
    shared = tuple(load_definition(name) for name in SHARED_RECORDS)
    return Contracts(
        channels, shared, f"1.0.0+catalogue.{newest_id}", kafka, schema_registry, replicas
    )


def _message(t: Topic, full_name: str, catalogue: CommittedCatalogue) -> Message:
    definition = load_definition(full_name)
    example = example_for(definition)
    return Message(
        full_name=full_name,
        name=full_name.rsplit(".", 1)[-1],
        doc=str(definition.get("doc", "")),
        definition=definition,
        versions=tuple(e.version for e in catalogue.versions(full_name)),
        example=example,
        example_key=t.message_key(example).decode(),
    )


# --- examples ---------------------------------------------------------------------------------


def example_for(definition: dict[str, Any]) -> dict[str, Any]:
    """A deterministic, valid example of a record: field defaults where present, else a value
    by field name or type; then the record's overrides. Raises if it does not round-trip."""
    value = _Examples(definition["name"]).record(definition)
    value.update(copy.deepcopy(_OVERRIDES.get(definition["name"], {})))
    if round_trip(definition, value) != value:
        raise ValueError(f"the example of {definition['name']} does not survive a round trip")
    return value


def round_trip(definition: dict[str, Any], value: Mapping[str, Any]) -> Any:
    schema = parse(definition)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, dict(value))
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, schema, None)


@dataclass
class _Examples:
    """Walks one record's schema; named types are remembered at first use, as Avro does."""

    record_name: str
    names: dict[str, Any] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))

    def record(self, schema: dict[str, Any]) -> dict[str, Any]:
        self.names[schema["name"]] = schema
        namespace = schema["name"].rpartition(".")[0]
        value: dict[str, Any] = {}
        for f in schema["fields"]:
            if "default" in f:
                value[f["name"]] = f["default"]
                self._remember(f["type"], namespace)
            else:
                value[f["name"]] = self.value(f["type"], f["name"], namespace)
        return value

    def value(self, schema: Any, name: str, namespace: str) -> Any:
        if isinstance(schema, list):
            return self.value(next(b for b in schema if b != "null"), name, namespace)
        if isinstance(schema, str):
            named = self.names.get(schema) or self.names.get(_full(schema, namespace))
            if named is not None:
                return self.value(named, name, namespace)
            return self._primitive(schema, name)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical == "timestamp-micros":
            return _EXAMPLE_TIME
        if logical == "date":
            return _EXAMPLE_DAY
        if kind == "record":
            return self.record({**schema, "name": _full(schema["name"], namespace)})
        if kind == "enum":
            self.names[_full(schema["name"], namespace)] = schema
            return schema["symbols"][0]
        if kind == "array":
            return [self.value(schema["items"], name, namespace)]
        if kind == "map":
            return {"key": self.value(schema["values"], name, namespace)}
        return self._primitive(kind, name)

    def _remember(self, schema: Any, namespace: str) -> None:
        # A defaulted field may define a named type that a later field references.
        if isinstance(schema, list):
            for branch in schema:
                self._remember(branch, namespace)
        elif isinstance(schema, dict):
            if schema.get("type") in ("record", "enum", "fixed"):
                full = _full(schema["name"], namespace)
                self.names[full] = schema
                for f in schema.get("fields", []):
                    self._remember(f["type"], full.rpartition(".")[0])
            for key in ("items", "values"):
                if key in schema:
                    self._remember(schema[key], namespace)

    def _primitive(self, kind: str, name: str) -> Any:
        if name in _BY_FIELD_NAME:
            return _BY_FIELD_NAME[name]
        if kind == "string":
            if name == "event_id":
                return str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"https://revloop.dev/{self.record_name}")
                )
            # Platform and revloop ids are strings; numbered in field order so they read distinct.
            return str(next(self.ids)) if name.endswith("_id") else name
        return {
            "null": None,
            "boolean": False,
            "int": 1,
            "long": 1,
            "float": 0.5,
            "double": 0.5,
            "bytes": name.encode(),
        }[kind]


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def jsonable(value: Any) -> Any:
    """An example as Avro's JSON encoding spells it (minus union tags): timestamps in
    microseconds since the epoch, dates in days, bytes as text."""
    if isinstance(value, datetime):
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // _MICROSECOND
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


# --- AsyncAPI ---------------------------------------------------------------------------------


def asyncapi_document(contracts: Contracts) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (Kafka bindings 0.5.0), in a fixed key order."""
    operations: dict[str, Any] = {}
    for channel in contracts.channels:
        name = channel.topic.name
        refs = [{"$ref": f"#/channels/{name}/messages/{m.name}"} for m in channel.messages]
        roles = (
            ("send", channel.topic.producers, "publishes to {}."),
            (
                "receive",
                channel.topic.consumers,
                "consumes {} with isolation.level=read_committed.",
            ),
        )
        for action, apps, summary in roles:
            for app in apps:
                operations[f"{app}.{action}.{name}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{name}"},
                    "summary": f"{app} {summary.format(name)}",
                    "messages": refs,
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "revloop event contracts",
            "version": contracts.version,
            "description": "\n\n".join(
                [
                    "Generated from schemas/topics.py and schemas/avro by "
                    "`revloop contracts asyncapi`; do not edit.",
                    WIRE_FORMAT,
                    "Message keys: " + KEY_FORMAT,
                    SUBJECTS,
                    f"Compatibility: every event subject is {COMPATIBILITY}; released versions "
                    "are kept in schemas/catalogue.json.",
                    READ_COMMITTED,
                ]
            ),
        },
        "defaultContentType": "application/octet-stream",
        "servers": {
            "local": {
                "host": contracts.kafka,
                "protocol": "kafka",
                "description": "The local stack (`revloop infra up`).",
                "bindings": {
                    "kafka": {
                        "schemaRegistryUrl": contracts.schema_registry,
                        # Apicurio speaks the Confluent ccompat API: use Confluent's client.
                        "schemaRegistryVendor": "apicurio",
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            }
        },
        "channels": {
            c.topic.name: _asyncapi_channel(c, contracts.replicas) for c in contracts.channels
        },
        "operations": operations,
    }


def _asyncapi_channel(channel: Channel, replicas: int) -> dict[str, Any]:
    t = channel.topic
    return {
        "address": t.name,
        "description": t.description,
        "messages": {m.name: _asyncapi_message(t, m) for m in channel.messages},
        "bindings": {
            "kafka": {
                "topic": t.name,
                "partitions": t.partitions,
                "replicas": replicas,
                "topicConfiguration": topic_configuration(t),
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def topic_configuration(t: Topic) -> dict[str, Any]:
    """``Topic.config`` as the Kafka channel binding types it: cleanup.policy a list, numbers
    as integers."""
    config: dict[str, Any] = {}
    for key, value in t.config.items():
        if key == "cleanup.policy":
            config[key] = value.split(",")
        else:
            config[key] = int(value) if value.lstrip("-").isdigit() else value
    return config


def _asyncapi_message(t: Topic, m: Message) -> dict[str, Any]:
    return {
        "name": m.full_name,
        "title": m.name,
        "summary": _first_sentence(m.doc),
        "description": (
            f"{m.doc}\n\nSubject `{m.full_name}` ({COMPATIBILITY}); released versions: "
            f"{', '.join(map(str, m.versions))}."
        ),
        "contentType": "application/octet-stream",
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": with_namespaces(m.definition)},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"Fields {key_fields(t)}. {KEY_FORMAT}",
                    "examples": [m.example_key],
                },
                "schemaIdLocation": "payload",
                "schemaIdPayloadEncoding": "4",
                "schemaLookupStrategy": "RecordNameStrategy",
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "examples": [
            {
                "name": "example",
                "summary": f"Key: {m.example_key}",
                "payload": jsonable(m.example),
            }
        ],
        "x-schema-versions": list(m.versions),
    }


def with_namespaces(schema: Any) -> Any:
    """The same Avro schema with each named type spelled ``name`` + ``namespace``, the form
    AsyncAPI's Avro schema accepts (fastavro loads full names into ``name``)."""
    if isinstance(schema, list):
        return [with_namespaces(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    spelled = {k: with_namespaces(v) for k, v in schema.items() if k != "fields"}
    if "fields" in schema:
        spelled["fields"] = [{**f, "type": with_namespaces(f["type"])} for f in schema["fields"]]
    if schema.get("type") in ("record", "enum", "fixed") and "." in schema["name"]:
        namespace, _, name = schema["name"].rpartition(".")
        rest = {k: v for k, v in spelled.items() if k not in ("type", "name")}
        spelled = {"type": schema["type"], "name": name, "namespace": namespace, **rest}
    return spelled


def key_fields(t: Topic) -> str:
    return "/".join(t.key)


def _first_sentence(doc: str) -> str:
    head, dot, _ = doc.partition(". ")
    return head + "." if dot else doc


def asyncapi_yaml(document: Mapping[str, Any]) -> str:
    """YAML in the document's own key order (stable for diffs); text with line breaks as
    literal blocks so descriptions stay readable."""
    return str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared example dicts would otherwise become &anchors


def _text(dumper: yaml.SafeDumper, data: str) -> Any:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _text)


# --- docs/topics.md ---------------------------------------------------------------------------


def topics_markdown(contracts: Contracts) -> str:
    """docs/topics.md: what each topic carries, for the teams that consume it."""
    lines = [
        "# Topics",
        "",
        f"<!-- Generated by `{REGENERATE}` from schemas/topics.py and schemas/avro; "
        "do not edit. -->",
        "",
        "What each Kafka topic carries, for the teams that consume it. The same model renders "
        "the AsyncAPI 3.0 document: `revloop contracts asyncapi -o asyncapi.yaml`.",
        "",
        "## Reading the topics",
        "",
        f"- **Servers.** Kafka at `{contracts.kafka}`; schema registry (Apicurio, "
        f"Confluent-compatible API) at `{contracts.schema_registry}`. Use Confluent's clients.",
        f"- **Values.** {WIRE_FORMAT} Decode with confluent-kafka's `AvroDeserializer` and a "
        "`SchemaRegistryClient`: the id finds the writer's schema.",
        f"- **Keys.** {KEY_FORMAT} Events of one entity share a key, hence a partition, hence "
        "an order.",
        f"- **Subjects.** {SUBJECTS}",
        f"- **Compatibility.** Every event subject is `{COMPATIBILITY}`: a new version reads "
        "data written by every released version. Released versions are kept in "
        "`schemas/catalogue.json`; each message below lists them.",
        f"- **Transactions.** {READ_COMMITTED}",
        "- **Schemas.** Below, each message's top-level fields and an example; the AsyncAPI "
        "document holds the complete Avro schemas.",
        "- **Types.** Money is integer minor units plus an ISO 4217 currency; platform ids are "
        "strings; timestamps are `timestamp-micros` (examples show microseconds since the "
        "epoch), dates are days since the epoch.",
        "",
        "| topic | key | messages | partitions | cleanup | retention |",
        "|---|---|---|---|---|---|",
    ]
    for c in contracts.channels:
        t = c.topic
        messages = ", ".join(m.name for m in c.messages)
        lines.append(
            f"| [`{t.name}`](#{_anchor(t.name)}) | `{key_fields(t)}` | {messages} | "
            f"{t.partitions} | {t.cleanup.value} | {_retention(t.retention_ms)} |"
        )
    lines += ["", "## Shared records"]
    for definition in contracts.shared:
        name = definition["name"].rsplit(".", 1)[-1]
        lines += ["", f"### {name}", "", str(definition.get("doc", "")), "", *_fields(definition)]
    for c in contracts.channels:
        lines += ["", *_topic_section(c, contracts.replicas)]
    return "\n".join(lines) + "\n"


def _topic_section(c: Channel, replicas: int) -> list[str]:
    t = c.topic
    config = ", ".join(f"`{k}={v}`" for k, v in t.config.items())
    lines = [
        f"## {t.name}",
        "",
        t.description,
        "",
        f"- **Key:** `{key_fields(t)}`",
        f"- **Partitions:** {t.partitions} (replicas {replicas} locally)",
        f"- **Retention:** {_retention(t.retention_ms)}, {t.cleanup.value}"
        + (" (the newest record per key is kept)" if t.cleanup is Cleanup.COMPACT else ""),
        f"- **Topic config:** {config}",
        f"- **Producers:** {', '.join(t.producers)}",
        f"- **Consumers:** {', '.join(t.consumers)}",
    ]
    for m in c.messages:
        lines += ["", *_message_section(m)]
    return lines


def _message_section(m: Message) -> list[str]:
    lines = [
        f"### {m.name}",
        "",
        m.doc,
        "",
        f"Subject `{m.full_name}`, released versions {', '.join(map(str, m.versions))}.",
        "",
        *_fields(m.definition),
        "",
        f"Example (key `{m.example_key}`):",
        "",
        "```json",
        json.dumps(jsonable(m.example), indent=2, ensure_ascii=False),
        "```",
    ]
    return lines


def _fields(record: dict[str, Any]) -> list[str]:
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for f in record["fields"]:
        default = f"`{json.dumps(f['default'])}`" if "default" in f else ""
        doc = str(f.get("doc", "")).replace("|", "\\|")
        # In backticks: `array<string>` would otherwise read as an HTML tag.
        lines.append(f"| `{f['name']}` | `{type_label(f['type'])}` | {default} | {doc} |")
    return lines


def type_label(schema: Any) -> str:
    """A compact, readable Avro type: `null | string`, `array<string>`, `Money`."""
    if isinstance(schema, list):
        return " \\| ".join(type_label(b) for b in schema)
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    kind = schema["type"]
    if "logicalType" in schema:
        return f"{kind} ({schema['logicalType']})"
    if kind in ("record", "enum", "fixed"):
        name = schema["name"].rsplit(".", 1)[-1]
        return f"{name} ({', '.join(schema['symbols'])})" if kind == "enum" else name
    if kind == "array":
        return f"array<{type_label(schema['items'])}>"
    if kind == "map":
        return f"map<{type_label(schema['values'])}>"
    return str(kind)


def _retention(retention_ms: int) -> str:
    return "forever" if retention_ms < 0 else f"{retention_ms // DAY_MS} days"


def _anchor(heading: str) -> str:
    # GitHub's heading anchors: lower case, punctuation other than '-' and '_' dropped.
    return "".join(ch for ch in heading.lower() if ch.isalnum() or ch in "-_")
