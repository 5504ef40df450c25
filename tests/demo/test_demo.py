"""`revloop demo` end to end: ingest and the normalizer as subprocesses, real HTTP, a real broker.

The demo's normalizer runs in the production consumer group (`revloop normalize` cannot be given
another), so on a shared broker it would first have to normalize every raw record that group has
not seen, whoever sent it. The test therefore gets a broker of its own (a throwaway KRaft broker
on free ports, as tests/stack_support.py makes them); where none can be started it falls back to the
session's broker. Counts are by the run's own event ids either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from demo import run as demo_module
from infra.base import StackError
from infra.kafka import KafkaBroker
from revloop.kafka import producer_config, serde_for
from revloop.settings import Settings
from streams.normalizer.dead_letters import RawReference, dead_letter
from tests.stack_support import free_ports, isolated_settings, scratch_state_dir

CANONICAL = (
    "commerce.orders.v1",
    "commerce.products.v1",
    "commerce.inventory-levels.v1",
    "marketing.touchpoints.v1",
)


@pytest.fixture(scope="module")
def bootstrap_servers(request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_state_dir() as state_dir:
        settings = isolated_settings(state_dir)
        broker = KafkaBroker(settings, state_dir=state_dir, progress=lambda _: None)
        try:
            broker.check_can_start()
            broker.prepare()
            broker.start()
            broker.wait_healthy(90)
        except StackError:
            broker.stop(30)
            shared: Settings = request.getfixturevalue("settings")
            yield shared.bootstrap_servers
            return
        try:
            yield settings.bootstrap_servers
        finally:
            broker.stop(30)


def demo(bootstrap_servers: str, state_dir: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
    (port,) = free_ports(1)
    # -P: the working directory holds the state dir, named `demo`; on sys.path it would shadow
    # the editable install's demo package (as revloop's own children run, infra/supervisor.py).
    command = [sys.executable, "-P", "-m", "revloop", "demo", "--state-dir", str(state_dir)]
    result = subprocess.run(
        # Seven processes on two cores at the end of the suite: each wait may take a while.
        [*command, "--port", str(port), "--timeout", "60", *args],
        env=env,
        cwd=state_dir.parent,  # away from any .env in the checkout
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Dead letters: 0" in result.stdout
    assert "BigCommerce orders, hydrated" in result.stdout
    assert "no stock events" not in result.stdout  # every store's stock moments are answered
    report: dict[str, Any] = json.loads((state_dir / "last-run.json").read_text())
    return report


def test_the_demo_drives_the_pipeline_and_can_run_again(
    bootstrap_servers: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "demo"
    report = demo(bootstrap_servers, state_dir, "--orders", "8", "--seed", "11")

    assert report["orders"] == 8
    assert report["problems"] == []
    assert report["dead_letters"] == []
    statuses = {code for answers in report["requests"].values() for code in answers}
    assert statuses == {"200"}
    for name in CANONICAL:
        counts = report["events"][name]
        assert counts["written"] == counts["expected"] > 0, name
        assert counts["unexpected"] == 0, name
    assert len(report["duplicates"]) >= 2  # the Shopify and BigCommerce retries
    assert {m["kind"] for m in report["stock"]} == {"sold_out", "restocked"}
    # BigCommerce's thin webhooks were hydrated from the store's API (the emulator): every
    # request answered, every order complete on commerce.orders.v1 and in Postgres, within the
    # API's rate limit.
    hydration = report["hydration"]
    assert hydration["answered"] == hydration["requests"] > 0
    assert hydration["violations"] == 0
    assert len(hydration["orders"]) == hydration["orders_held"] > 0
    for order in hydration["orders"]:
        assert order["total_minor"] > 0 and order["lines"], order
    for name in ("commerce.orders.v1", "commerce.products.v1", "commerce.inventory-levels.v1"):
        assert report["events"][name]["hydrated"] > 0, name
    tables = report["tables"]["demo-bigcommerce"]
    assert tables["orders_found"] == tables["orders_expected"] == len(hydration["orders"])
    assert report["loop"]["scores"]["demo-bigcommerce"]["scored"] == len(hydration["orders"])
    # Every store's sell-outs and restocks were answered by the breaker, BigCommerce's too.
    assert {m["store_id"] for m in report["loop"]["stock"]} == {
        "demo-shopify",
        "demo-woo",
        "demo-bigcommerce",
    }
    assert all(m["action_at"] for m in report["loop"]["stock"])
    # Each store gets an invoice on its own plan (the proofs agree with them, or "problems"
    # would say so); the baseline-uplift store got a baseline to measure against, and
    # BigCommerce bills on its hydrated orders' incremental revenue.
    plans = {i["store_id"]: i for i in report["invoices"]}
    assert plans["demo-shopify"]["plan"] == "roas_profit_share"
    assert plans["demo-woo"]["plan"] == "baseline_uplift"
    assert plans["demo-woo"]["expected_minor"] > 0
    assert plans["demo-bigcommerce"]["plan"] == "attributed_incremental"
    assert plans["demo-bigcommerce"]["amount_minor"] > 0
    # The ad executor carried out the sell-outs and restocks on the emulators ("problems" holds
    # any ad that does not show what its breakers last said).
    changes = [change for ad in report["ads"] for change in ad["changes"]]
    assert any(c.endswith(" paused") for c in changes)
    assert any(c.endswith(" resumed") for c in changes)

    # A second run reuses the registry and is new traffic, not a replay the dedupe drops.
    master_key = (state_dir / "master-keys").read_text()
    again = demo(bootstrap_servers, state_dir, "--orders", "3", "--seed", "11")
    assert (state_dir / "master-keys").read_text() == master_key
    assert again["problems"] == []
    assert again["hydration"]["answered"] == again["hydration"]["requests"] > 0
    assert len(again["hydration"]["orders"]) == again["hydration"]["orders_held"] > 0
    for name in CANONICAL:
        counts = again["events"][name]
        assert counts["written"] == counts["expected"] > 0, name


def test_the_read_back_counts_a_transaction_whose_marker_is_not_written_yet(
    bootstrap_servers: str,
) -> None:
    """The normalizer commits its events and its raw offsets in one transaction, but Kafka does
    not make the two visible at one instant: the group coordinator writes the offsets' commit
    marker itself, apart from the markers of the output partitions. So the demo can see the
    normalizer caught up while an output partition still ends in records without their marker.
    A read_committed end mark (the last stable offset) stops short of them; the end mark has to
    be the high watermark, and the read-back waits until the records are readable."""
    settings = Settings(
        kafka_bootstrap_servers=bootstrap_servers, topic_prefix=f"test-{uuid.uuid4().hex[:10]}."
    )
    name = settings.topic_prefix + demo_module.DEAD_LETTERS
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    serde = serde_for(settings)
    letter = dead_letter(
        RawReference(topic="raw", partition=0, offset=7, key=b"demo-shopify"),
        raw=None,
        reason="bad_raw_record",
        message="a record of the last transaction",
        stage="deserialize",
        at=datetime.now(UTC),
    )
    producer = Producer(
        producer_config(settings, **{"transactional.id": f"{settings.topic_prefix}normalizer"})
    )
    producer.init_transactions(30)
    marks = demo_module._marks_reader(settings)
    try:
        start = demo_module._watermarks(marks, [demo_module.DEAD_LETTERS], settings.topic_prefix)
        producer.begin_transaction()
        producer.produce(name, value=serde.encode(letter.record, letter.value))
        producer.flush(30)  # written and acknowledged; the commit marker is not there yet
        end = demo_module._watermarks(marks, [demo_module.DEAD_LETTERS], settings.topic_prefix)
        producer.commit_transaction(30)
    finally:
        marks.close()

    read = list(demo_module._read_between(settings, serde, start, end))

    assert [value["envelope"]["event_id"] for _, value in read] == [letter.event_id]
