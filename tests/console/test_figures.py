"""The console's arithmetic (rates, counter deltas, dead-letter counts, ingest outcomes, the lag
history) and its page's guards (the CSP hashes, the hosts it answers), without a stack."""

from __future__ import annotations

import base64
import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from console.figures import History, delta, outcome_totals, rates, records, topic_totals
from console.server import allowed_hosts, content_security_policy, page
from ingest.metrics import IngestMetrics


def test_throughput_is_the_growth_of_log_end_offsets_per_second() -> None:
    before = topic_totals({("orders", 0): 10, ("orders", 1): 20, ("raw", 0): 5})
    after = topic_totals({("orders", 0): 30, ("orders", 1): 20, ("raw", 0): 5, ("new", 0): 9})
    assert after == {"orders": 50, "raw": 5, "new": 9}
    assert rates(before, after, 2.0) == {"orders": 10.0, "raw": 0.0, "new": None}
    assert rates(None, after, 2.0) == {"orders": None, "raw": None, "new": None}


def test_a_counter_that_went_back_was_reset_and_counts_from_zero() -> None:
    assert delta(10, 13) == 3
    assert delta(10, 4) == 4  # the process restarted: 4 since
    assert rates({"t": 100}, {"t": 30}, 10.0) == {"t": 3.0}  # a recreated topic


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_a_delta_is_never_negative_and_never_more_than_the_counter(before: int, after: int) -> None:
    assert 0 <= delta(before, after) <= after


def test_dead_letters_are_the_records_between_the_watermarks() -> None:
    low = {("dl", 0): 5, ("dl", 1): 0}
    high = {("dl", 0): 12, ("dl", 1): 3, ("dl", 2): 4}  # partition 2: no low known, from 0
    assert records(low, high) == 7 + 3 + 4


def test_ingest_outcomes_are_summed_over_platform_topic_and_reason() -> None:
    metrics = IngestMetrics()
    metrics.outcomes.labels("shopify", "raw.webhooks.v1", "accepted", "").inc(5)
    metrics.outcomes.labels("woocommerce", "raw.webhooks.v1", "accepted", "").inc(2)
    metrics.outcomes.labels("shopify", "raw.webhooks.v1", "rejected", "bad_signature").inc()
    metrics.outcomes.labels("shopify", "raw.webhooks.v1", "rejected", "too_large").inc()
    metrics.received.labels("shopify").inc(9)  # not an outcome
    exposition = generate_latest(metrics.registry).decode()
    assert outcome_totals(exposition) == {"accepted": 7.0, "rejected": 2.0}
    assert outcome_totals("") == {}


def test_the_history_keeps_the_last_samples_with_gaps_for_missing_groups() -> None:
    history = History(size=3)
    history.add(1.0, [("a", 5, 1.0)])
    history.add(2.0, [("a", 6, 2.0), ("b", 1, 0.5)])
    history.add(3.0, [("b", 0, 0.0)])
    history.add(4.0, [("b", 2, 0.1)])
    assert history.as_json() == {
        "at": [2.0, 3.0, 4.0],
        "groups": {
            "a": {"lag": [6, None, None], "seconds": [2.0, None, None]},
            "b": {"lag": [1, 0, 2], "seconds": [0.5, 0.0, 0.1]},
        },
    }
    history.add(5.0, [("b", 3, 0.2)])
    history.add(6.0, [("b", 3, 0.2)])
    assert set(history.as_json()["groups"]) == {"b"}  # a: gone for the whole history


def test_the_page_runs_only_its_own_script_and_style() -> None:
    html = page()
    assert html.count("<script>") == 1 and html.count("<style>") == 1
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    policy = content_security_policy(html)
    for tag in ("script", "style"):
        found = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        assert found is not None
        digest = base64.b64encode(hashlib.sha256(found.group(1).encode()).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_the_console_answers_only_its_own_host_names() -> None:
    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "::1", "[::1]", "localhost"]
    assert "ops.internal" in allowed_hosts("ops.internal")
    assert allowed_hosts("0.0.0.0") == ["*"]  # noqa: S104
