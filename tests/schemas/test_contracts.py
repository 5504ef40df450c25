"""The event contracts without a broker: schemas, their committed ids, the topic catalogue."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.registry import (
    CommittedCatalogue,
    SchemaError,
    backward_incompatibilities,
    event_names,
    load_definition,
)
from schemas.serde import AvroSerde, SerdeError
from schemas.topics import (
    TOPICS,
    Cleanup,
    ExistingTopic,
    TopicDriftError,
    plan_topic_changes,
    records_produced_by,
    topic,
    topic_for_record,
)
from tests.avro_strategies import for_schema

EVENTS = event_names()


def test_the_catalogue_covers_every_canonical_event() -> None:
    short = {name.rsplit(".", 1)[-1] for name in EVENTS}
    assert {
        "RawWebhook",
        "OrderEvent",
        "ProductUpsert",
        "ProductDelete",
        "InventoryLevel",
        "CustomerUpsert",
        "CustomerRedact",
        "Touchpoint",
        "CampaignProductLink",
        "CircuitBreakerAction",
        "LowStockWarning",
        "AttributionScore",
        "LifecycleTrigger",
        "LedgerEntry",
        "DeadLetter",
    } <= short


@pytest.mark.parametrize("name", EVENTS)
def test_every_schema_is_locked_in_the_committed_catalogue(name: str) -> None:
    CommittedCatalogue.load().id_for(name, load_definition(name))


@pytest.mark.parametrize("name", EVENTS)
def test_every_event_has_the_common_envelope(name: str) -> None:
    fields = {f["name"]: f for f in load_definition(name)["fields"]}
    envelope = fields["envelope"]["type"]
    assert [f["name"] for f in envelope["fields"]][:6] == [
        "event_id",
        "store_id",
        "platform",
        "occurred_at",
        "received_at",
        "source",
    ]
    source = next(f for f in envelope["fields"] if f["name"] == "source")["type"]
    assert {"webhook", "backfill", "redrive"} <= set(source["symbols"])


def _walk(schema: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        for field in schema.get("fields", []):
            found.append((f"{path}.{field['name']}", field["type"]))
            found += _walk(field["type"], f"{path}.{field['name']}")
        for key in ("items", "values"):
            if key in schema:
                found += _walk(schema[key], path + "[]")
    elif isinstance(schema, list):
        for branch in schema:
            found += _walk(branch, path)
    return found


@pytest.mark.parametrize("name", EVENTS)
def test_money_is_never_a_float_and_ids_are_never_numbers(name: str) -> None:
    for path, field_type in _walk(load_definition(name)):
        leaf = path.rsplit(".", 1)[-1]
        text = json.dumps(field_type)
        assert '"float"' not in text and '"double"' not in text, path
        if leaf.endswith("_id") or leaf.endswith("_ids"):
            assert '"long"' not in text and '"int"' not in text, f"{path} must be a string"


def test_each_record_type_has_exactly_one_topic_and_every_key_field_exists() -> None:
    for name in EVENTS:
        carrier = topic_for_record(name)
        fields = {p.lstrip(".") for p, _ in _walk(load_definition(name))}
        for key_path in carrier.key:
            assert key_path in fields, f"{carrier.name} key {key_path} missing from {name}"


def test_entity_state_topics_are_compacted_and_histories_are_kept() -> None:
    for t in TOPICS:
        if t.cleanup is Cleanup.COMPACT:
            assert t.name.startswith(
                ("commerce.products", "commerce.customers", "marketing.campaign", "ops.connector-")
            )
    history = [
        "commerce.orders.v1",
        "marketing.touchpoints.v1",
        "billing.ledger-entries.v1",
        "analytics.attribution-scores.v1",
        "ops.dead-letters.v1",
    ]
    for name in history:
        assert topic(name).cleanup is Cleanup.DELETE and topic(name).retention_ms == -1


def test_message_keys_keep_one_entity_on_one_key() -> None:
    orders = topic("commerce.orders.v1")
    created = {"envelope": {"store_id": "acme"}, "order_id": "9007199254740993", "kind": "created"}
    refunded = {**created, "kind": "refunded"}
    assert orders.message_key(created) == orders.message_key(refunded) == b"acme/9007199254740993"
    redact = {"envelope": {"store_id": "acme"}, "customer_id": None}
    assert topic("commerce.customers.v1").message_key(redact) == b"acme/*"


def test_unknown_topic_names_are_refused_clearly() -> None:
    with pytest.raises(KeyError, match="not in the topic catalogue"):
        topic("orders")


# --- topic plans (pure) ---


def test_plan_creates_missing_topics_and_is_empty_when_in_sync() -> None:
    plan = plan_topic_changes(TOPICS, {})
    assert [c.action for c in plan] == ["create"] * len(TOPICS)
    in_sync = {
        t.name: ExistingTopic(t.name, t.partitions, {**t.config, "segment.ms": "1"}) for t in TOPICS
    }
    assert plan_topic_changes(TOPICS, in_sync) == []


def test_plan_grows_partitions_fixes_config_and_refuses_to_shrink() -> None:
    orders = topic("commerce.orders.v1")
    drifted = {
        orders.name: ExistingTopic(orders.name, 2, {**orders.config, "retention.ms": "1000"})
    }
    plan = plan_topic_changes([orders], drifted)
    assert [(c.action, c.partitions) for c in plan] == [
        ("add-partitions", 6),
        ("alter-config", None),
    ]
    assert plan[1].config == {"retention.ms": "-1"}
    too_many = {orders.name: ExistingTopic(orders.name, 12, orders.config)}
    with pytest.raises(TopicDriftError, match="cannot remove partitions"):
        plan_topic_changes([orders], too_many)


def test_plan_resets_a_topic_setting_the_catalogue_no_longer_makes() -> None:
    orders = topic("commerce.orders.v1")
    # max.message.bytes left on the topic by an older catalogue; segment.ms is the broker's.
    current = {**orders.config, "max.message.bytes": "4194304", "segment.ms": "1"}
    left_over = {
        orders.name: ExistingTopic(
            orders.name, 6, current, frozenset({*orders.config, "max.message.bytes"})
        )
    }
    [change] = plan_topic_changes([orders], left_over)
    assert (change.action, dict(change.config), change.reset) == (
        "alter-config",
        {},
        ("max.message.bytes",),
    )
    assert change.detail == "max.message.bytes=4194304->broker default"


# --- compatibility rules ---

ORDER = "dev.revloop.events.OrderEvent"


def _with_field(definition: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    evolved = copy.deepcopy(definition)
    evolved["fields"].append(field)
    return evolved


def test_adding_a_field_needs_a_default() -> None:
    v1 = load_definition(ORDER)
    good = _with_field(v1, {"name": "note", "type": ["null", "string"], "default": None})
    bad = _with_field(v1, {"name": "note", "type": "string"})
    assert backward_incompatibilities(reader=good, writer=v1) == []
    assert backward_incompatibilities(reader=bad, writer=v1) == [
        "dev.revloop.events.OrderEvent.note: added without a default"
    ]


def test_changing_a_type_is_refused_but_promotion_is_allowed() -> None:
    v1 = load_definition(ORDER)
    as_int = copy.deepcopy(v1)
    next(f for f in as_int["fields"] if f["name"] == "order_id")["type"] = "int"
    assert "type changed from string to int" in backward_incompatibilities(as_int, v1)[0]
    widened_writer = copy.deepcopy(v1)
    line = next(f for f in widened_writer["fields"] if f["name"] == "line_items")
    next(f for f in line["type"]["items"]["fields"] if f["name"] == "quantity")["type"] = "int"
    reader = copy.deepcopy(widened_writer)
    line = next(f for f in reader["fields"] if f["name"] == "line_items")
    next(f for f in line["type"]["items"]["fields"] if f["name"] == "quantity")["type"] = "long"
    assert backward_incompatibilities(reader=reader, writer=widened_writer) == []


def test_lock_refuses_a_breaking_version_and_appends_a_compatible_one() -> None:
    catalogue = CommittedCatalogue.load()
    v1 = load_definition(ORDER)
    with pytest.raises(SchemaError, match=r"breaks data of v\d+"):
        catalogue.locked(ORDER, _with_field(v1, {"name": "note", "type": "string"}))
    v2 = _with_field(v1, {"name": "note", "type": ["null", "string"], "default": None})
    grown, changed = catalogue.locked(ORDER, v2)
    assert changed
    before = [e.version for e in catalogue.versions(ORDER)]
    assert [e.version for e in grown.versions(ORDER)] == [*before, before[-1] + 1]
    assert grown.id_for(ORDER, v2) == max(e.schema_id for e in catalogue) + 1
    assert grown.id_for(ORDER, v1) == catalogue.id_for(ORDER, v1)
    again, changed_again = grown.locked(ORDER, v2)
    assert again is grown and not changed_again


# --- serde (pure: bytes in, bytes out) ---

SERDE = AvroSerde(CommittedCatalogue.load())


@pytest.mark.parametrize("name", EVENTS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_serde_round_trips_any_valid_value(name: str, data: st.DataObject) -> None:
    value = data.draw(for_schema(load_definition(name)))
    encoded = SERDE.encode(name, value)
    assert encoded[0] == 0
    assert int.from_bytes(encoded[1:5], "big") == CommittedCatalogue.load().id_for(
        name, load_definition(name)
    )
    decoded = SERDE.decode(encoded)
    assert decoded.record_name == name
    assert decoded.value == value


def test_a_value_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(SerdeError, match="ProductDelete does not fit its schema"):
        SERDE.encode("dev.revloop.events.ProductDelete", {"product_id": 5})


@given(st.binary(max_size=64))
def test_garbage_bytes_never_decode_silently(blob: bytes) -> None:
    try:
        SERDE.decode(blob)
    except SerdeError:
        return
    # The rare blob that happens to parse must at least carry a known id and a record.
    assert blob[0] == 0


def test_unknown_schema_ids_are_named_in_the_error() -> None:
    with pytest.raises(SerdeError, match="schema id 99999"):
        SERDE.decode(b"\x00" + (99999).to_bytes(4, "big") + b"\x02")


def test_each_app_prepares_exactly_the_records_of_the_topics_it_writes() -> None:
    for app in {p for t in TOPICS for p in t.producers}:
        written = {r for t in TOPICS if app in t.producers for r in t.values}
        assert set(records_produced_by(app)) == written, app
    assert records_produced_by("streams.normalizer", "no-such-app") == records_produced_by(
        "streams.normalizer"
    )
    assert records_produced_by() == ()
