"""Meta Marketing API: a campaign's ad sets and their status (docs/connectors.md, "Meta").

An ad set is paused or resumed by ``POST /{adset}`` with ``status``; a campaign's ad sets are
read page by page until ``paging.next`` is absent (a short or empty page does not end the
list). Rate limits are per ad account: every answer's ``X-Business-Use-Case-Usage`` says how
much is used, and past ``SLOW_FROM`` percent the client waits before its next call, longer the
closer it is to the limit. A throttling error (codes 4, 17, 32, 613, 80000-80014) waits for
``estimated_time_to_regain_access`` when Meta gives one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from connectors.http import ApiClient, RetryPolicy

API_VERSION = "v21.0"
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
SLOW_FROM = 75
"""Usage percent from which calls are spaced out."""


@dataclass(frozen=True)
class AdSet:
    adset_id: str
    status: str
    """ACTIVE, PAUSED, ARCHIVED or DELETED (the configured status, not the effective one)."""


def usage_percent(response: httpx.Response) -> tuple[int, float]:
    """The highest usage percent in the answer's usage headers, and the minutes Meta says to
    wait (0 when it does not)."""
    highest, regain = 0, 0.0
    for header in ("x-business-use-case-usage", "x-ad-account-usage", "x-app-usage"):
        raw = response.headers.get(header)
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        entries = (
            [e for group in value.values() if isinstance(group, list) for e in group]
            if header == "x-business-use-case-usage"
            else [value]
        )
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for key in ("call_count", "total_cputime", "total_time", "acc_id_util_pct"):
                number = entry.get(key)
                if isinstance(number, int | float):
                    highest = max(highest, int(number))
            minutes = entry.get("estimated_time_to_regain_access")
            if isinstance(minutes, int | float):
                regain = max(regain, float(minutes))
    return highest, regain


class MetaAds:
    """One store's ad account on Meta."""

    def __init__(
        self,
        store_id: str,
        token: str,
        *,
        base_url: str = "https://graph.facebook.com",
        window_seconds: float = 300.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._window = window_seconds
        self.client = ApiClient(
            "meta",
            store_id,
            f"{base_url.rstrip('/')}/{API_VERSION}",
            auth_headers={"Authorization": f"Bearer {token}"},
            policy=policy,
            throttle=self._throttled,
            pace=self._pace,
        )

    def __repr__(self) -> str:
        return f"MetaAds({self.client!r})"

    def close(self) -> None:
        self.client.close()

    def _pace(self, response: httpx.Response) -> float:
        used, _ = usage_percent(response)
        if used < SLOW_FROM:
            return 0.0
        # From SLOW_FROM% to 100%, wait up to a whole window: the usage decays over it.
        return self._window * min(1.0, (used - SLOW_FROM + 5) / (100 - SLOW_FROM))

    def _throttled(self, response: httpx.Response) -> float | None:
        if response.is_success:
            return None
        try:
            code = response.json().get("error", {}).get("code")
        except ValueError:
            return None
        if code not in THROTTLE_CODES:
            return None
        _, minutes = usage_percent(response)
        return minutes * 60 if minutes else self._window / 10

    def adsets(self, campaign_id: str, page_size: int = 100) -> Iterator[AdSet]:
        """Every ad set of the campaign, each once."""
        params: dict[str, str] = {"fields": "id,status", "limit": str(page_size)}
        path = f"/{campaign_id}/adsets"
        while True:
            page = self.client.request(
                "GET", path, params=params, call=f"GET /{campaign_id}/adsets"
            ).json()
            for item in page.get("data", []):
                yield AdSet(str(item["id"]), str(item["status"]))
            paging = page.get("paging", {})
            after = paging.get("cursors", {}).get("after")
            if not paging.get("next") or not after:
                return
            params = {**params, "after": str(after)}

    def set_status(self, adset_id: str, status: str) -> None:
        self.client.request(
            "POST",
            f"/{adset_id}",
            data={"status": status},
            call=f"POST /{adset_id} status={status}",
        )
