"""The watchdog and bounded shutdown: a process stuck in a Kafka call exits for its supervisor,
and SIGTERM stops it within ``REVLOOP_SHUTDOWN_SECONDS`` even when the main thread is inside
librdkafka. The broker-restart test runs the real `revloop normalize` against a broker of its
own that is restarted while transactions are open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from infra.kafka import KafkaBroker
from platforms.webhooks import Delivery, raw_record
from revloop.kafka import ensure_topics, producer_config
from revloop.settings import Settings
from revloop.watchdog import EXIT_OVERRUN, EXIT_SHUTDOWN_OVERRUN, Watchdog
from schemas.topics import prefixed
from tests import ROOT
from tests.normalizer_support import SERDE, STORES, Pipeline, inventory_body, wait_for
from tests.stack_support import free_ports, isolated_settings, scratch_state_dir


def test_a_call_that_overruns_its_deadline_fires_once_and_one_that_returns_does_not() -> None:
    codes: list[int] = []
    watchdog = Watchdog("test", on_overrun=codes.append)
    with watchdog.guard("a quick call", 5.0):
        time.sleep(0.05)
    time.sleep(0.2)
    assert codes == [] and watchdog.fired is None
    with watchdog.guard("a stuck call", 0.2):
        time.sleep(1.0)
    assert codes == [EXIT_OVERRUN]
    assert watchdog.fired == "a stuck call (deadline 0.2 s)"


CHILD = """
import logging, time
from revloop.watchdog import Watchdog
logging.basicConfig(level=logging.INFO)
with Watchdog("child").guard("send_offsets_to_transaction", 0.5):
    time.sleep(30)
"""


def test_an_overrun_ends_the_process_with_a_clear_line() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == EXIT_OVERRUN
    assert time.monotonic() - started < 10
    assert (
        "watchdog: child overran send_offsets_to_transaction (deadline 0.5 s); exiting with 75"
        in done.stderr
    )


def _normalizer_env(bootstrap: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused",
        "REVLOOP_STATE_DIR": str(state_dir),
        "REVLOOP_CUSTOMER_KEY_SALT": "test-salt",
        **extra,
    }


def test_sigterm_stops_a_normalizer_stuck_inside_librdkafka(tmp_path: Path) -> None:
    # Nothing listens on this port: init_transactions blocks inside librdkafka for its whole
    # 30 s timeout, where a Python signal handler never runs.
    (port,) = free_ports(1)
    child = subprocess.Popen(
        [sys.executable, "-m", "revloop", "normalize"],
        cwd=ROOT,
        env=_normalizer_env(f"127.0.0.1:{port}", tmp_path, REVLOOP_SHUTDOWN_SECONDS="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(4)
        assert child.poll() is None, child.communicate()[0]
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        output, _ = child.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        child.kill()
    assert took < 6, f"{took:.1f} s"
    assert child.returncode == EXIT_SHUTDOWN_OVERRUN, output
    assert "SIGTERM received; stopping" in output
    assert "overran shutdown after SIGTERM (deadline 2 s)" in output


# --- a broker restart while transactions are open ---------------------------------------------


@pytest.fixture(scope="module")
def own_broker() -> Iterator[tuple[Settings, KafkaBroker]]:
    with scratch_state_dir() as state_dir:
        settings = isolated_settings(state_dir)
        broker = KafkaBroker(settings, state_dir=state_dir, progress=lambda _: None)
        broker.check_can_start()
        broker.prepare()
        broker.start()
        broker.wait_healthy(90)
        try:
            yield settings, broker
        finally:
            broker.stop(30)


@pytest.mark.slow
def test_a_broker_restart_mid_transaction_ends_in_exactly_once_output(
    own_broker: tuple[Settings, KafkaBroker], tmp_path: Path
) -> None:
    settings, broker = own_broker
    prefix = f"wd-{uuid.uuid4().hex[:8]}."
    ensure_topics(settings, prefixed(prefix))
    pipeline = Pipeline(settings, prefixed(prefix))
    env = _normalizer_env(
        settings.bootstrap_servers,
        tmp_path,
        REVLOOP_TOPIC_PREFIX=prefix,
        REVLOOP_KAFKA_CALL_TIMEOUT_SECONDS="5",
        REVLOOP_WATCHDOG_GRACE_SECONDS="3",
        REVLOOP_SHUTDOWN_SECONDS="5",
    )
    logs = tmp_path / "normalize.log"
    exits: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        with logs.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "revloop", "normalize", "--instance-id", "wd"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    store = next(iter(STORES.stores_for("shopify")))
    fed: list[str] = []
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = Producer(producer_config(settings, **{"message.timeout.ms": 120_000}))
        n = 0
        while feeding.is_set():
            now = datetime.now(UTC)
            event_id = f"ev-{n}"
            record = raw_record(
                Delivery(store, "inventory_levels/update", event_id, None, now, {}),
                inventory_body(n),
                "application/json",
                now,
            )
            producer.produce(
                pipeline.raw_topic,
                key=f"acme-shopify-{n % 6}".encode(),
                value=SERDE.encode("dev.revloop.events.RawWebhook", record),
            )
            fed.append(event_id)
            n += 1
            producer.poll(0)
            time.sleep(0.01)
        assert producer.flush(120) == 0

    normalizer = start()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait_for(lambda: len(pipeline.read("commerce.inventory-levels.v1")) >= 100, timeout=90)
        broker.stop(30)  # batches of 100 a second: a transaction is open now
        time.sleep(8)
        broker.start()
        broker.wait_healthy(90)
        returned = time.monotonic()

        def caught_up() -> bool:
            # A normalizer that exited is restarted, as `revloop up` would.
            nonlocal normalizer
            code = normalizer.poll()
            if code is not None:
                exits.append(code)
                normalizer = start()
            return len(pipeline.read("commerce.inventory-levels.v1")) >= len(fed) > 0

        time.sleep(3)
        feeding.clear()
        feeder.join(150)
        wait_for(caught_up, timeout=150)
        recovered_in = time.monotonic() - returned
        time.sleep(2)
        ids = [
            value["envelope"]["caused_by"][0]
            for _, value in pipeline.read("commerce.inventory-levels.v1")
        ]
    finally:
        feeding.clear()
        normalizer.send_signal(signal.SIGTERM)
        try:
            normalizer.wait(15)
        finally:
            normalizer.kill()
    output = logs.read_text()
    assert len(ids) == len(set(ids)) == len(fed), (len(ids), len(set(ids)), len(fed))
    assert set(ids) == set(fed)
    # Every exit was one a supervisor acts on: non-zero, with the reason in the log.
    assert all(code != 0 for code in exits), exits
    if EXIT_OVERRUN in exits:
        assert "watchdog: normalize overran" in output
    assert normalizer.returncode == 0, output[-3000:]  # SIGTERM at the end: a clean stop
    assert recovered_in < 150
