"""Google Ads API (REST): campaign status (docs/connectors.md, "Google Ads").

A campaign is paused or resumed with ``campaigns:mutate`` (``update`` of ``status``,
``updateMask: status``; ENABLED resumes) and read with a GAQL ``googleAds:search``. Google gives
no usage headers, so the client spaces its calls itself (``requests_per_second``); a 429
``RESOURCE_EXHAUSTED`` waits for the ``retryDelay`` the error names.
"""

from __future__ import annotations

import re

import httpx

from connectors.http import ApiClient, RetryPolicy

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


class GoogleAds:
    """One store's Google Ads customer."""

    def __init__(
        self,
        store_id: str,
        customer_id: str,
        token: str,
        developer_token: str,
        *,
        base_url: str = "https://googleads.googleapis.com",
        login_customer_id: str | None = None,
        requests_per_second: float = 5.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not customer_id.isdigit():
            raise ValueError("a Google Ads customer id is digits only (no dashes)")
        self.customer_id = customer_id
        headers = {"Authorization": f"Bearer {token}", "developer-token": developer_token}
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
            page = self.client.request(
                "POST", "/googleAds:search", json=body, call="googleAds:search campaign.status"
            ).json()
            for row in page.get("results", []):
                found[str(row["campaign"]["id"])] = str(row["campaign"]["status"])
            token = page.get("nextPageToken")
            if not token:
                return found
            body = {"query": query, "pageToken": str(token)}

    def set_status(self, campaign_id: str, status: str) -> None:
        name = f"customers/{self.customer_id}/campaigns/{campaign_id}"
        operation = {"update": {"resourceName": name, "status": status}, "updateMask": "status"}
        self.client.request(
            "POST",
            "/campaigns:mutate",
            json={"operations": [operation]},
            call=f"campaigns:mutate {campaign_id} status={status}",
        )
