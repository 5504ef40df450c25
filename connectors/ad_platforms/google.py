"""Google Ads API (REST): campaign status (docs/connectors.md, "Google Ads").

A campaign is paused or resumed with ``campaigns:mutate`` (``update`` of ``status``,
``updateMask: status``; ENABLED resumes) and read with a GAQL ``googleAds:search``. Google gives
no usage headers, so the client spaces its calls itself (``requests_per_second``); a 429
``RESOURCE_EXHAUSTED`` waits for the ``retryDelay`` the error names.

Access tokens last about an hour. Given a refresh token (with the OAuth client's id and
secret), the client mints one at Google's token endpoint (``grant_type=refresh_token``), uses
it until a minute before it expires, and mints another; an answer of 401 mints one at once and
tries the call again, once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from connectors.http import ApiClient, ApiError, RetryPolicy

API_VERSION = "v17"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def retry_delay(response: httpx.Response) -> float | None:
    """``quotaErrorDetails.retryDelay`` of a RESOURCE_EXHAUSTED error, in seconds."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return None
    if error.get("status") != "RESOURCE_EXHAUSTED" and response.status_code != 429:
        return None
    for detail in error.get("details", []):
        for failure in detail.get("errors", []):
            quota = failure.get("details", {}).get("quotaErrorDetails", {})
            found = _DURATION.match(str(quota.get("retryDelay", "")))
            if found:
                return float(found.group(1))
    return 1.0


@dataclass(frozen=True)
class RefreshGrant:
    """What mints access tokens: the refresh token and the OAuth client it was issued to."""

    refresh_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    oauth_url: str = "https://oauth2.googleapis.com"


class GoogleAds:
    """One store's Google Ads customer."""

    def __init__(
        self,
        store_id: str,
        customer_id: str,
        token: str | None,
        developer_token: str,
        *,
        refresh: RefreshGrant | None = None,
        base_url: str = "https://googleads.googleapis.com",
        login_customer_id: str | None = None,
        requests_per_second: float = 5.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not customer_id.isdigit():
            raise ValueError("a Google Ads customer id is digits only (no dashes)")
        if token is None and refresh is None:
            raise ValueError("Google Ads needs an access token or a refresh grant")
        self.customer_id, self._refresh, self._expires = customer_id, refresh, 0.0
        self._oauth = (
            ApiClient("google-oauth", store_id, refresh.oauth_url, policy=policy)
            if refresh is not None
            else None
        )
        headers = {"developer-token": developer_token}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            self._expires = float("inf")
        if login_customer_id:
            headers["login-customer-id"] = login_customer_id
        spacing = 1.0 / requests_per_second
        self.client = ApiClient(
            "google-ads",
            store_id,
            f"{base_url.rstrip('/')}/{API_VERSION}/customers/{customer_id}",
            auth_headers=headers,
            policy=policy,
            throttle=retry_delay,
            pace=lambda _: spacing,
        )

    def __repr__(self) -> str:
        return f"GoogleAds({self.client!r})"

    def close(self) -> None:
        self.client.close()
        if self._oauth is not None:
            self._oauth.close()

    def _mint(self) -> None:
        """A fresh access token from the refresh grant, into the client's headers."""
        assert self._refresh is not None and self._oauth is not None
        answer = self._oauth.request(
            "POST",
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": self._refresh.refresh_token,
                "client_id": self._refresh.client_id,
                "client_secret": self._refresh.client_secret,
            },
            call="token (refresh grant)",
        ).json()
        token, lifetime = answer.get("access_token"), answer.get("expires_in", 3600)
        if not isinstance(token, str) or not token:
            raise ApiError(
                self.client.store_id, "google-oauth token", "no access token", status=None,
                retryable=True,
            )  # fmt: skip
        self.client.authenticate("Authorization", f"Bearer {token}")
        self._expires = time.monotonic() + float(lifetime) - 60

    def _call(self, path: str, body: Mapping[str, object], call: str) -> httpx.Response:
        if self._refresh is not None and time.monotonic() >= self._expires:
            self._mint()
        try:
            return self.client.request("POST", path, json=body, call=call)
        except ApiError as exc:
            if exc.status != 401 or self._refresh is None:
                raise
            self._mint()  # revoked or expired early: once more with a fresh token
            return self.client.request("POST", path, json=body, call=call)

    def statuses(self, campaign_ids: list[str]) -> dict[str, str]:
        """Each campaign's status (ENABLED, PAUSED, REMOVED); unknown ids are left out."""
        if not campaign_ids:
            return {}
        if not all(c.isdigit() for c in campaign_ids):
            raise ValueError("Google Ads campaign ids are digits")
        # GAQL has no parameters; the ids were checked to be digits above.
        query = (
            "SELECT campaign.id, campaign.status FROM campaign "  # noqa: S608
            f"WHERE campaign.id IN ({', '.join(campaign_ids)})"
        )
        found: dict[str, str] = {}
        body: dict[str, str] = {"query": query}
        while True:
            page = self._call("/googleAds:search", body, "googleAds:search campaign.status").json()
            for row in page.get("results", []):
                found[str(row["campaign"]["id"])] = str(row["campaign"]["status"])
            token = page.get("nextPageToken")
            if not token:
                return found
            body = {"query": query, "pageToken": str(token)}

    def set_status(self, campaign_id: str, status: str) -> None:
        name = f"customers/{self.customer_id}/campaigns/{campaign_id}"
        operation = {"update": {"resourceName": name, "status": status}, "updateMask": "status"}
        self._call(
            "/campaigns:mutate",
            {"operations": [operation]},
            f"campaigns:mutate {campaign_id} status={status}",
        )
