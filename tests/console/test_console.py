"""`revloop console` in headless Chromium against the local stack: the page shows the numbers
`revloop lag` gives, a group made to lag turns WARN and back to OK, every panel shows its
source's data, and a console whose Kafka, Postgres and ingest are all down says so per panel.

The screenshot is kept as ``tests/artifacts/console.png`` (ignored by git; CI leaves it in its
clone's ``tests/artifacts/``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from playwright.sync_api import Page, sync_playwright
from prometheus_client import start_http_server

from ingest.metrics import IngestMetrics
from revloop.settings import Settings
from tests import ROOT
from tests.lag_support import commit, produce
from tests.sink_support import scratch_database
from tests.stack_support import free_ports

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = '<img src=x onerror="document.title=1">'
"""A campaign id a platform could send: the page must show it as text."""


@contextmanager
def consoles(*setups: tuple[dict[str, str], Path]) -> Iterator[list[str]]:
    """Consoles as processes, sampling every second, each with its environment and log file;
    their base URLs once they answer. Started and stopped together (each takes seconds)."""
    ports = free_ports(len(setups))
    logs = ExitStack()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "console", "--port", str(port), "--interval", "1"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
            stdout=logs.enter_context(log.open("wb")),
            stderr=subprocess.STDOUT,
        )
        for port, (env, log) in zip(ports, setups, strict=True)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url, process, (_, log) in zip(urls, processes, setups, strict=True):
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    httpx.get(f"{url}/api/snapshot", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        logs.close()


def sampled_at(url: str) -> float | None:
    lag: dict[str, Any] = httpx.get(f"{url}/api/snapshot", timeout=2).json().get("lag") or {}
    return lag.get("at")


def after_next_sample(url: str, then: Callable[[], None]) -> None:
    """Run ``then`` just after the console took a sample: a second before the next one, so no
    sample sees it half done (records produced but not yet the commit that follows)."""
    before = sampled_at(url)
    deadline = time.monotonic() + 10
    while sampled_at(url) == before:
        assert time.monotonic() < deadline, "the console stopped sampling"
        time.sleep(0.05)
    then()


def cell(page: Page, selector: str) -> str:
    return (page.text_content(selector, timeout=15_000) or "").strip()


def text_now(page: Page, selector: str) -> str | None:
    """The element's text as the page shows it now (None while it is not there)."""
    found: str | None = page.evaluate("s => document.querySelector(s)?.textContent", selector)
    return found


def wait_text(
    page: Page, selector: str, text: str, timeout: float = 15_000, prefix: bool = False
) -> None:
    """Until the element's text is ``text`` (or starts with it)."""
    page.wait_for_function(
        "([s, t, prefix]) => { const n = document.querySelector(s); if (n === null) return false;"
        " const shown = n.textContent.trim(); return prefix ? shown.startsWith(t) : shown === t; }",
        arg=[selector, text, prefix],
        timeout=timeout,
    )


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = f"consoletest-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def prefix(settings: Settings) -> Iterator[str]:
    """A prefix of the test's own, with its dead-letter topic."""
    prefix = f"console-{uuid.uuid4().hex[:6]}."
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    dead = f"{prefix}ops.dead-letters.v1"
    admin.create_topics([NewTopic(dead, 1, 1)])[dead].result(30)
    yield prefix
    admin.delete_topics([dead])[dead].result(30)


def test_the_console_shows_lag_as_revloop_lag_does_and_a_lagging_group_goes_warn_and_back(
    settings: Settings, topic: str, prefix: str, tmp_path: Path
) -> None:
    local = settings.model_copy(update={"topic_prefix": prefix})
    produce(settings, topic, 10)
    produce(settings, f"{prefix}ops.dead-letters.v1", 3)
    commit(local, "steady", topic, 4)  # consumer_config puts the prefix on the group id
    ingest = IngestMetrics()
    ingest.outcomes.labels("shopify", "raw.webhooks.v1", "accepted", "").inc(5)
    ingest.outcomes.labels("shopify", "raw.webhooks.v1", "rejected", "bad_signature").inc(2)
    (ingest_port,) = free_ports(1)
    metrics_server, _ = start_http_server(ingest_port, "127.0.0.1", registry=ingest.registry)
    ARTIFACTS.mkdir(exist_ok=True)
    (closed,) = free_ports(1)  # nothing listens there
    down = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}",
        "DATABASE_URL": f"postgresql://revloop:revloop@127.0.0.1:{closed}/revloop",
        "REVLOOP_INGEST_PORT": str(closed),
        "REVLOOP_STATE_DIR": str(tmp_path / "down"),
    }
    with (
        scratch_database(settings) as dsn,
        consoles(
            (
                {
                    "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                    "DATABASE_URL": dsn,
                    "REVLOOP_TOPIC_PREFIX": prefix,
                    "REVLOOP_INGEST_PORT": str(ingest_port),
                    "REVLOOP_STATE_DIR": str(tmp_path / "up"),
                },
                tmp_path / "console.log",
            ),
            (down, tmp_path / "console-down.log"),
        ) as (url, down_url),
        sync_playwright() as playwright,
    ):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO circuit_breaker_actions (event_id, store_id, occurred_at, "
                "product_id, variant_id, action, campaign_ids, available, reason, published_at) "
                "VALUES ('evt-1', 'acme', %s, 'prod-1', NULL, 'pause', %s, 0, 'out_of_stock', "
                "now())",
                (datetime(2026, 12, 1, 9, tzinfo=UTC), [HOSTILE, "cmp-2"]),
            )
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:
            pytest.fail(f"headless Chromium did not start ({CHROMIUM}): {exc}")
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        page.goto(url)

        # The lag shown is `revloop lag`'s, from the same sampler.
        steady = f'#lag-table tr[data-group="{prefix}steady"]'
        wait_text(page, f"{steady} td:nth-child(3)", "6")
        shown = subprocess.run(
            [sys.executable, "-m", "revloop", "lag", "--json"],
            env={
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "REVLOOP_TOPIC_PREFIX": prefix,
                "REVLOOP_STATE_DIR": str(tmp_path / "cli"),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        by_cli = {g["group"]: g["lag"] for g in json.loads(shown.stdout)["groups"]}
        assert by_cli == {f"{prefix}steady": int(cell(page, f"{steady} td:nth-child(3)"))}
        partition = [
            cell(page, f"{steady} details tr:nth-child(2) td:nth-child({n})") for n in (3, 4, 5)
        ]
        assert partition == ["4", "10", "6"]  # committed, log-end, lag
        # Not moving and nobody consuming: STOP, as `revloop lag` judges it.
        wait_text(page, f"{steady} .status", "STOP")

        # The other panels, each from its own source.
        assert cell(page, f'#throughput tr[data-topic="{topic}"] td:nth-child(3)') == "10"
        assert cell(page, "#dead-letters tbody td:nth-child(2)") == "3"
        assert cell(page, "#breakers .count") == "(1)"
        assert cell(page, "#breakers tbody td:nth-child(4)") == f"{HOSTILE}, cmp-2"
        assert page.locator("img").count() == 0 and page.title() == "revloop console"
        assert cell(page, '#ingest tr[data-outcome="accepted"] td:nth-child(4)') == "5"
        assert cell(page, '#ingest tr[data-outcome="rejected"] td:nth-child(4)') == "2"
        ingest.outcomes.labels("shopify", "raw.webhooks.v1", "accepted", "").inc(3)
        wait_text(page, '#ingest tr[data-outcome="accepted"] td:nth-child(2)', "3")  # per interval
        assert cell(page, '#ingest tr[data-outcome="accepted"] td:nth-child(4)') == "8"

        # A group that commits, but slower than records arrive: WARN; then it catches up: OK.
        behind = f'#lag-table tr[data-group="{prefix}behind"] .status'
        end, committed = 10, 2
        commit(local, "behind", topic, committed)
        for _ in range(8):

            def step() -> None:
                nonlocal end, committed
                produce(settings, topic, 5)
                end += 5
                committed += 1
                commit(local, "behind", topic, committed)

            after_next_sample(url, step)
            if text_now(page, behind) == "WARN":
                break
        wait_text(page, behind, "WARN", timeout=5_000)
        page.screenshot(path=ARTIFACTS / "console.png", full_page=True)
        print(f"console screenshot: {ARTIFACTS / 'console.png'}")
        commit(local, "behind", topic, end)
        wait_text(page, behind, "OK")
        assert cell(page, f'#lag-table tr[data-group="{prefix}behind"] td:nth-child(3)') == "0"
        assert page.locator("#lag-chart polyline").count() >= 2  # a line for each group
        page.select_option("#chart-metric", "seconds")
        assert page.locator("#lag-chart polyline").count() >= 2

        # Everything down: each panel says what, and the page goes on.
        page.goto(down_url)
        ingest_down = f"ingest not running (no answer at http://127.0.0.1:{closed}/metrics)"
        wait_text(page, "#ingest .error", ingest_down, prefix=True)
        assert cell(page, "#lag .error").startswith(f"Kafka unreachable at 127.0.0.1:{closed}")
        assert cell(page, "#throughput .error").startswith("Kafka unreachable")
        assert cell(page, "#dead-letters .error").startswith("Kafka unreachable")
        assert cell(page, "#breakers .error").startswith("Postgres unreachable")
        assert page.locator("#lag-table").is_hidden()
        page.screenshot(path=ARTIFACTS / "console-down.png", full_page=True)
        assert script_errors == []
        browser.close()
    metrics_server.shutdown()
