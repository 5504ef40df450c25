"""The Meta and Google Ads clients against their emulators on loopback: pages read once each,
rate limits kept, errors retried or named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from connectors.ad_platforms.google import GoogleAds, RefreshGrant
from connectors.ad_platforms.meta import MetaAds
from connectors.http import ApiError, RetryPolicy, retry_after
from emulators import GoogleAdsEmulator, MetaEmulator, serve

FAST = RetryPolicy(attempts=4, base_seconds=0.01, cap_seconds=0.05, timeout_seconds=5)
TOKEN = "EAAB-secret-token"


@pytest.fixture
def meta() -> Iterator[tuple[MetaEmulator, str]]:
    emulator = MetaEmulator(TOKEN, capacity=30, window_seconds=1.0)
    with serve(emulator.app) as running:
        yield emulator, running.base_url


@pytest.fixture
def google() -> Iterator[tuple[GoogleAdsEmulator, str]]:
    emulator = GoogleAdsEmulator("ya29-secret", "dev-secret", requests_per_window=5)
    with serve(emulator.app) as running:
        yield emulator, running.base_url


def test_meta_pages_reach_every_ad_set_once(meta: tuple[MetaEmulator, str]) -> None:
    emulator, url = meta
    emulator.add_campaign("c1", [(f"as{n:03d}", "ACTIVE") for n in range(230)])
    emulator.add_campaign("c2", [("other", "ACTIVE")])
    client = MetaAds("acme", TOKEN, base_url=url, window_seconds=1.0, policy=FAST)
    seen = [a.adset_id for a in client.adsets("c1", page_size=25)]
    assert sorted(seen) == sorted(f"as{n:03d}" for n in range(230)) and len(set(seen)) == 230
    assert emulator.calls.total == 10  # 230 in pages of 25
    assert list(client.adsets("c9")) == []


def test_meta_writes_keep_under_the_ad_account_limit(meta: tuple[MetaEmulator, str]) -> None:
    emulator, url = meta
    emulator.add_campaign("c1", [(f"as{n}", "ACTIVE") for n in range(40)])
    client = MetaAds("acme", TOKEN, base_url=url, window_seconds=1.0, policy=FAST)
    for n in range(40):  # 120 points against 30 a second
        client.set_status(f"as{n}", "PAUSED")
    assert emulator.calls.violations == 0
    assert emulator.calls.total == 40  # paced, never refused
    assert {emulator.status(f"as{n}") for n in range(40)} == {"PAUSED"}
    # The limit is real: the same burst without pacing is refused.
    with httpx.Client(base_url=f"{url}/v21.0") as raw:
        answers = [
            raw.post(f"/as{n}", data={"status": "ACTIVE", "access_token": TOKEN}).status_code
            for n in range(40)
        ]
    assert 400 in answers and emulator.calls.violations > 0


def test_meta_retries_a_5xx_and_names_a_refusal_without_the_token(
    meta: tuple[MetaEmulator, str],
) -> None:
    emulator, url = meta
    emulator.add_campaign("c1", [("as1", "ACTIVE")])
    client = MetaAds("acme", TOKEN, base_url=url, window_seconds=1.0, policy=FAST)
    emulator.fail_next(2, 503)
    client.set_status("as1", "PAUSED")
    assert emulator.status("as1") == "PAUSED" and client.client.calls == 3
    emulator.fail_next(4, 500)
    with pytest.raises(ApiError) as exhausted:
        client.set_status("as1", "ACTIVE")
    assert exhausted.value.retryable and "4 tries" in str(exhausted.value)
    wrong = MetaAds("acme", "EAAB-wrong", base_url=url, window_seconds=1.0, policy=FAST)
    with pytest.raises(ApiError) as refused:
        wrong.set_status("as1", "ACTIVE")
    message = str(refused.value)
    assert message == "store acme: meta POST /as1 status=ACTIVE failed: HTTP 400"
    assert not refused.value.retryable
    assert "EAAB" not in message + repr(wrong) + repr(wrong.client)


def test_google_reads_and_sets_campaign_status(google: tuple[GoogleAdsEmulator, str]) -> None:
    emulator, url = google
    emulator.campaigns.update({"111": "ENABLED", "222": "PAUSED"})
    client = GoogleAds("acme", "1234567890", "ya29-secret", "dev-secret", base_url=url, policy=FAST)
    assert client.statuses(["111", "222", "333"]) == {"111": "ENABLED", "222": "PAUSED"}
    client.set_status("111", "PAUSED")
    assert emulator.campaigns["111"] == "PAUSED"
    assert emulator.calls.writes == [("111", "PAUSED")]
    with pytest.raises(ValueError, match="digits"):
        client.statuses(["1 OR 1=1"])
    assert "ya29" not in repr(client) and "dev-secret" not in repr(client)


def test_google_paces_itself_and_honours_retry_delay(google: tuple[GoogleAdsEmulator, str]) -> None:
    emulator, url = google
    emulator.campaigns.update({str(n): "ENABLED" for n in range(100, 112)})
    paced = GoogleAds(
        "acme", "1234567890", "ya29-secret", "dev-secret", base_url=url,
        requests_per_second=4, policy=FAST,
    )  # fmt: skip
    for n in range(100, 106):
        paced.set_status(str(n), "PAUSED")
    assert emulator.calls.violations == 0
    hasty = GoogleAds(
        "acme", "1234567890", "ya29-secret", "dev-secret", base_url=url,
        requests_per_second=100, policy=RetryPolicy(attempts=5, timeout_seconds=5),
    )  # fmt: skip
    for n in range(106, 112):
        hasty.set_status(str(n), "PAUSED")
    assert emulator.calls.violations > 0  # refused with 429, then waited for retryDelay
    assert all(emulator.campaigns[str(n)] == "PAUSED" for n in range(100, 112))


def test_retry_after_takes_seconds_or_a_date() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert retry_after(answer("7"), now) == 7.0
    assert retry_after(answer("Wed, 02 Dec 2026 12:00:30 GMT"), now) == 30.0
    assert retry_after(answer("soon"), now) is None
    assert retry_after(httpx.Response(429), now) is None


def test_google_mints_access_tokens_from_a_refresh_token(
    google: tuple[GoogleAdsEmulator, str],
) -> None:
    emulator, url = google
    emulator.campaigns.update({"555": "ENABLED"})
    emulator.refresh_grants["1//refresh-secret"] = ("client-1", "client-secret-1")
    grant = RefreshGrant("1//refresh-secret", "client-1", "client-secret-1", oauth_url=url)
    client = GoogleAds("acme", "1234567890", None, "dev-secret", refresh=grant, base_url=url)
    assert client.statuses(["555"]) == {"555": "ENABLED"}
    assert emulator.mints == 1
    client.set_status("555", "PAUSED")
    assert emulator.mints == 1  # still good: used until it runs out
    emulator.expire_tokens()  # an hour later: 401, a fresh token, the call again
    assert client.statuses(["555"]) == {"555": "PAUSED"}
    assert emulator.mints == 2
    shown = repr(client) + repr(grant)
    assert "refresh-secret" not in shown and "client-secret-1" not in shown
    # A revoked refresh token fails the call, naming the store and the mint, never a secret.
    emulator.refresh_grants.clear()
    emulator.expire_tokens()
    with pytest.raises(ApiError) as failed:
        client.statuses(["555"])
    assert "store acme: google-oauth token (refresh grant) failed: HTTP 400" in str(failed.value)
    assert "refresh-secret" not in str(failed.value)
