"""Text that is not Unicode, end to end: signed deliveries with arbitrary text (lone surrogates
included) in every field the normalizers read go through a real ingest server and a real
normalizer. Ingest never answers 500, the normalizer never stops, and each accepted delivery
ends as canonical events or a dead letter (revloop/text.py has the rules)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ingest.app import create_app
from platforms import bigcommerce, woocommerce
from platforms.dispatch import normalize_delivery
from platforms.events import NormalizeContext, RawDelivery
from revloop.kafka import ensure_topics
from revloop.settings import Settings
from revloop.text import escaped, invalid_text_at, is_unicode, may_hold_surrogates
from schemas.topics import TOPICS, topic
from tests import FIXTURES
from tests.ingest_support import (
    BC_SECRET,
    CUSTOMER_SALT,
    WOO_SECRET,
    bearer,
    make_feed_registry,
    make_service,
    serving,
    shopify_delivery,
)
from tests.normalizer_support import Pipeline, wait_for

DEAD_LETTERS = topic("ops.dead-letters.v1")
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=8)
"""Any code point, lone surrogates included (hypothesis leaves them out unless asked)."""
CONTEXT = NormalizeContext(
    customer_salt=CUSTOMER_SALT,
    store_currency={"acme-shopify": "USD", "shop-woo": "EUR", "bc-store": "USD"},
)


# --- the rules, alone ---------------------------------------------------------------------


@given(ANY_TEXT)
def test_escaped_text_always_encodes_and_valid_text_is_untouched(value: str) -> None:
    result = escaped(value)
    result.encode("utf-8")  # never raises
    assert is_unicode(result)
    assert (result == value) == is_unicode(value)


@given(
    st.recursive(
        st.none() | st.integers() | ANY_TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    )
)
def test_invalid_text_is_found_wherever_it_hides(value: Any) -> None:
    # The reference: json.dumps with ensure_ascii=False must encode to UTF-8 exactly when clean.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        clean = True
    except UnicodeEncodeError:
        clean = False
    assert (invalid_text_at(value) is None) == clean


@given(ANY_TEXT, st.booleans())
def test_the_byte_precheck_never_misses_a_surrogate(value: str, ascii_only: bool) -> None:
    body = json.dumps({"id": value}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if invalid_text_at(json.loads(body)) is not None:
        assert may_hold_surrogates(body)


def test_a_path_names_keys_never_values() -> None:
    payload = {"customer": {"email": "\ud800@example.com"}, "a@b.c": {"x": "\udc00"}}
    assert invalid_text_at(payload) == "$.customer.email"
    assert invalid_text_at({"a@b.c": {"x": "\udc00"}}) == "$.<key>.x"


# --- deliveries with arbitrary text, through real ingest and a real normalizer --------------


@dataclass(frozen=True)
class Sample:
    platform: str
    topic: str
    payload: dict[str, Any]


def _topic_of(platform: str, name: str, payload: dict[str, Any]) -> str:
    if platform == "shopify":
        return name.replace("__", "/").removesuffix("_jpy")
    if platform == "woocommerce":
        return name.replace("__", ".")
    return str(payload["scope"])


def _samples() -> list[Sample]:
    """Every fixture that normally becomes canonical events."""
    samples = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        platform, payload = path.parent.name, json.loads(path.read_bytes())
        sample = Sample(platform, _topic_of(platform, path.stem, payload), payload)
        raw = _raw(sample.platform, sample.topic, path.read_bytes())
        if normalize_delivery(raw, CONTEXT).status == "normalized":
            samples.append(sample)
    return samples


def _raw(platform: str, topic: str, body: bytes) -> RawDelivery:
    store_id = {"shopify": "acme-shopify", "woocommerce": "shop-woo", "bigcommerce": "bc-store"}
    now = datetime.now(UTC)
    return RawDelivery("ev", store_id[platform], platform, topic, now, now, {}, body)


SAMPLES = _samples()
CANONICAL = [
    t.name for t in TOPICS if "streams.normalizer" in t.producers and t.name != DEAD_LETTERS.name
]


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, (*path, i))]
    return [path]


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


LEAF_VALUES = st.one_of(
    ANY_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.none(),
    st.booleans(),
    st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d", "12.5", "-1", ""]),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Sample, list[tuple[Any, ...]], bytes]:
    sample = draw(st.sampled_from(SAMPLES))
    paths = draw(st.lists(st.sampled_from(_leaf_paths(sample.payload)), min_size=1, max_size=4))
    payload: Any = sample.payload
    for path in paths:
        payload = _replaced(payload, path, draw(LEAF_VALUES))
    # ensure_ascii spells lone surrogates as \u escapes, as a platform's JSON encoder would.
    return (
        sample,
        paths,
        json.dumps(payload, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass"),
    )


def _signed(sample: Sample, body: bytes) -> dict[str, str]:
    now = datetime.now(UTC)
    if sample.platform == "shopify":
        return shopify_delivery(body, topic=sample.topic)
    if sample.platform == "woocommerce":
        return woocommerce.signed_headers(
            body,
            WOO_SECRET,
            source="https://shop.example.com/",
            topic=sample.topic,
            webhook_id="7",
            delivery_id=str(uuid.uuid4()),
        )
    return bigcommerce.signed_headers(body, BC_SECRET, webhook_id=str(uuid.uuid4()), sent_at=now)


@pytest.fixture
def served(settings: Settings, scratch_catalogue: Any) -> Iterator[tuple[str, Pipeline]]:
    """A real ingest server (uvicorn, own port) writing to scratch topics."""
    topics = scratch_catalogue()
    ensure_topics(settings, topics)
    pipeline = Pipeline(settings, topics)
    # The fixtures' BigCommerce store is k2x9q7ab3c.
    stores = make_feed_registry(bc_hash="k2x9q7ab3c")
    service = make_service(settings, stores=stores, ack_timeout=5.0, topic_prefix=pipeline.prefix)
    try:
        with serving(create_app(service)) as port:
            yield f"http://127.0.0.1:{port}", pipeline
    finally:
        service.publisher.close()


def test_arbitrary_text_in_every_field_never_stops_ingest_or_the_normalizer(
    served: tuple[str, Pipeline],
) -> None:
    base_url, pipeline = served
    accepted: dict[str, tuple[Sample, bytes]] = {}
    statuses: list[int] = []

    with httpx.Client(base_url=base_url, timeout=10) as http:

        @hypothesis_settings(
            max_examples=120,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(mutated())
        def deliver(case: tuple[Sample, list[tuple[Any, ...]], bytes]) -> None:
            sample, paths, body = case
            answer = http.post(
                f"/webhooks/{sample.platform}", content=body, headers=_signed(sample, body)
            )
            statuses.append(answer.status_code)
            if answer.status_code == 401:
                # Only a BigCommerce body that no longer names its store may be refused.
                assert sample.platform == "bigcommerce" and ("producer",) in paths, answer.text
                return
            assert answer.status_code == 200, answer.text
            accepted[answer.json()["event_id"]] = (sample, body)

        deliver()

    assert len(accepted) >= 50, statuses
    normalizer = pipeline.normalizer(CONTEXT)
    stop = threading.Event()
    thread = threading.Thread(target=normalizer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        outcomes: dict[str, str] = {}
        emitted: set[str] = set()

        def every_delivery_ended() -> bool:
            assert thread.is_alive(), "the normalizer stopped"
            outcomes.clear()
            for _, letter in pipeline.read("ops.dead-letters.v1"):
                outcomes[letter["raw_event_id"]] = "dead letter"
            for name in CANONICAL:
                for _, event in pipeline.read(name):
                    emitted.add(event["envelope"]["event_id"])
                    for cause in event["envelope"]["caused_by"]:
                        outcomes.setdefault(cause, "events")
            # A delivery whose every event an earlier one already emitted (a refund repeated in
            # a later order update: one fact id) adds nothing, by design.
            for event_id in set(accepted) - skipped - set(outcomes):
                verdict = normalize_delivery(raws[event_id], CONTEXT)
                if verdict.events and {e.event_id for e in verdict.events} <= emitted:
                    outcomes[event_id] = "events (emitted before)"
            return set(outcomes) >= set(accepted) - skipped

        # Deliberate skips (an unknown topic, untracked inventory) are kept raw and counted, not
        # dead-lettered; the pure normalizer says which deliveries those are.
        # The normalizer's verdict on an event id is the first delivery's; later ones with the
        # same id (a mutation that left the id's source fields alone) are duplicates.
        raws: dict[str, RawDelivery] = {}
        for _, record in sorted(pipeline.read("raw.webhooks.v1"), key=lambda r: r[0]):
            raws.setdefault(record["envelope"]["event_id"], RawDelivery.from_record(record))
        assert set(raws) == set(accepted)
        skipped = {
            event_id
            for event_id, raw in raws.items()
            if normalize_delivery(raw, CONTEXT).status == "skipped"
        }
        deadline = time.monotonic() + 90
        while not every_delivery_ended() and time.monotonic() < deadline:
            time.sleep(0.5)
        unended = set(accepted) - skipped - set(outcomes)
        assert not unended, [
            (normalize_delivery(raws[i], CONTEXT), accepted[i][1][:300]) for i in unended
        ]
        counted_skips = sum(
            sample.value
            for metric in normalizer.metrics.registry.collect()
            for sample in metric.samples
            if sample.name == "revloop_normalizer_records_total"
            and sample.labels["outcome"] == "skipped"
        )
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert set(outcomes) | skipped == set(accepted)
    assert not set(outcomes) & skipped
    assert counted_skips >= len(skipped)
    assert list(outcomes.values()).count("dead letter") >= 1  # the generator reached bad text


def test_a_bigcommerce_scope_that_is_not_unicode_is_stored_and_becomes_a_dead_letter(
    served: tuple[str, Pipeline],
) -> None:
    # Once answered 500, uncounted: the raw record's topic could not be encoded.
    base_url, pipeline = served
    payload = json.loads((FIXTURES / "bigcommerce" / "store__order__created.json").read_bytes())
    body = json.dumps({**payload, "scope": "store/order/\ud800"}).encode()
    sample = Sample("bigcommerce", "store/order/\ud800", payload)
    answer = httpx.post(
        f"{base_url}/webhooks/bigcommerce", content=body, headers=_signed(sample, body)
    )
    assert answer.status_code == 200, answer.text
    ((_, raw),) = pipeline.read("raw.webhooks.v1")
    assert raw["topic"] == "store/order/\\ud800"  # escaped, as ASCII text
    assert raw["body"] == body
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'outcome="accepted"' in metrics and 'platform="bigcommerce"' in metrics

    stop = threading.Event()
    thread = threading.Thread(target=pipeline.normalizer(CONTEXT).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(pipeline.read("ops.dead-letters.v1")) == 1)
    finally:
        stop.set()
        thread.join(30)
    ((_, letter),) = pipeline.read("ops.dead-letters.v1")
    assert (letter["error_type"], letter["raw_event_id"]) == (
        "invalid_unicode",
        answer.json()["event_id"],
    )
    assert letter["error_message"].endswith(
        "at $.scope is not valid Unicode (a lone surrogate escape)"
    )


def test_a_feed_item_that_is_not_unicode_is_refused_with_its_field(
    served: tuple[str, Pipeline],
) -> None:
    base_url, pipeline = served
    body = json.dumps(
        {
            "touchpoints": [
                {
                    "touchpoint_id": "t-1",
                    "kind": "ad_click",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "channel": "meta",
                    "campaign_id": "c\ud800",
                    "email": "a@example.com",
                }
            ]
        }
    ).encode()
    answer = httpx.post(
        f"{base_url}/events/touchpoints", content=body, headers=bearer("acme-shopify")
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "touchpoints[0].campaign_id"
    assert pipeline.read("marketing.touchpoints.v1") == []
