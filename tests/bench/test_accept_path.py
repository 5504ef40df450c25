"""`revloop bench accept-path`: run briefly. Nothing here asserts speed; it checks that each step
does the work it claims to time, and that the receive step's 200s are all in Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka.admin import AdminClient

from bench.accept_path import KAFKA_STEPS, STEPS, measure, signed_requests
from bench.ingest import PlatformChoice, bench_stores, registry_of
from platforms import PLATFORMS
from revloop.settings import Settings


def test_each_signed_request_verifies_as_its_platforms_store() -> None:
    stores = bench_stores("microtest01", PlatformChoice.MIX)
    registry = registry_of(stores)
    requests = signed_requests(stores)
    assert [r.platform for r in requests[:3]] == ["shopify", "woocommerce", "bigcommerce"]
    delivery_ids = set()
    for request in requests:
        delivery = PLATFORMS[request.platform].authenticate(
            request.body, request.headers, registry, datetime.now(UTC)
        )
        assert delivery.store.platform == request.platform
        assert delivery.store.verification_keys(datetime.now(UTC))[0] == request.secret
        delivery_ids.add(delivery.delivery_id)
    assert len(delivery_ids) == len(requests)


def test_without_kafka_the_pure_steps_are_measured(settings: Settings) -> None:
    report = measure(settings, PlatformChoice.WOOCOMMERCE, 2, 0.005, with_kafka=False)
    assert [(f.platform, f.step) for f in report.figures] == [
        ("woocommerce", step) for step in STEPS if step not in KAFKA_STEPS
    ]
    for figures in report.figures:
        assert len(figures.us_per_call) == 2
        assert all(us > 0 for us in figures.us_per_call)
    hmac, authenticate, _encode = report.figures
    assert hmac.times_hmac == [1.0, 1.0]
    assert authenticate.median_times_hmac > 1  # authenticate computes that HMAC and more
    assert report.kafka is None and report.acked == report.records == 0


def test_every_ack_is_a_record_in_the_runs_own_topic_which_is_then_deleted(
    settings: Settings, admin: AdminClient
) -> None:
    before = set(admin.list_topics(timeout=10).topics)
    report = measure(settings, PlatformChoice.MIX, 1, 0.005, with_kafka=True)
    for step in KAFKA_STEPS:
        platforms = {f.platform for f in report.figures if f.step == step}
        assert platforms == {"shopify", "woocommerce", "bigcommerce"}
    # Two warm-up probes and one round per platform and step, 64 at a time.
    assert report.acked >= 3 * 2 * 3 * 64
    assert report.records == report.acked
    # The run's own topic is gone. The broker's internal topics (__consumer_offsets, made for the
    # first consumer group on a new broker) are not the bench's to delete.
    after = {name for name in admin.list_topics(timeout=10).topics if not name.startswith("__")}
    assert after <= before
