"""The ad platforms the executors act on.

**Meta Marketing API** (Graph API): ``GET /v{N}/{campaign}/adsets`` (cursor pages, ``paging.next``
absent on the last), ``GET /v{N}/{object}``, ``POST /v{N}/{object}`` with ``status`` (answers
``{"success": true}``); the token as ``access_token`` or a Bearer header. Calls cost points per
ad account (a read 1, a write 3) that decay over a window; every answer carries the usage in
``X-Business-Use-Case-Usage`` (percent), and a call past the limit is refused with error code
80004 and counted as a violation.

**Google Ads API** (REST): ``googleAds:search`` (``SELECT campaign.id, campaign.status FROM
campaign WHERE campaign.id IN (...)``) and ``campaigns:mutate`` (``update`` of ``status``,
``updateMask: status``), with ``Authorization: Bearer`` and ``developer-token``. Requests per
window are capped; one past the cap gets 429 ``RESOURCE_EXHAUSTED`` with
``quotaErrorDetails.retryDelay`` and is counted as a violation.

Both can be told to fail the next calls (``fail_next``) with a 5xx, to test retries.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.common import Emulator, Window, form_fields

# --- Meta ------------------------------------------------------------------------------------


class MetaEmulator(Emulator):
    """One ad account's campaigns and ad sets."""

    def __init__(
        self,
        token: str,
        *,
        account_id: str = "act_1",
        capacity: int = 300,
        window_seconds: float = 300.0,
        page_size: int = 25,
    ) -> None:
        super().__init__()
        self.token, self.account_id, self.page_size = token, account_id, page_size
        self._window = Window(capacity, window_seconds)
        self.adsets: dict[str, dict[str, str]] = {}
        """Ad set id → {"campaign_id", "status"}."""

    def add_campaign(self, campaign_id: str, adsets: Iterable[tuple[str, str]]) -> None:
        """A campaign and its ad sets, as (id, status) pairs."""
        with self._lock:
            for adset_id, status in adsets:
                self.adsets[adset_id] = {"campaign_id": campaign_id, "status": status}

    def status(self, adset_id: str) -> str:
        return self.adsets[adset_id]["status"]

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{version}/{campaign}/adsets", self._adsets, methods=["GET"]),
                Route("/{version}/{node}", self._node, methods=["GET", "POST"]),
            ]
        )

    def _usage(self, now: float) -> dict[str, str]:
        percent = min(100, round(100 * self._window.used(now) / self._window.capacity))
        usage = {
            self.account_id.removeprefix("act_"): [
                {
                    "type": "ads_management",
                    "call_count": percent,
                    "total_cputime": percent // 2,
                    "total_time": percent // 2,
                    "estimated_time_to_regain_access": 0,
                }
            ]
        }
        return {"X-Business-Use-Case-Usage": json.dumps(usage)}

    def _error(self, status: int, code: int, message: str, now: float) -> JSONResponse:
        body = {"error": {"message": message, "type": "OAuthException", "code": code}}
        if code == 80004:
            body["error"]["error_subcode"] = 2446079
        body["error"]["fbtrace_id"] = "emulated"
        return JSONResponse(body, status_code=status, headers=self._usage(now))

    async def _begin(self, request: Request, points: int) -> tuple[JSONResponse | None, float]:
        form = await form_fields(request)
        token = request.query_params.get("access_token") or form.get("access_token")
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        now = time.monotonic()
        with self._lock:
            self.calls.total += 1
            failure = self.injected()
            if failure is not None:
                return self._error(failure, 2, "An unexpected error has occurred.", now), now
            if (token or bearer) != self.token:
                return self._error(400, 190, "Invalid OAuth access token.", now), now
            if not self._window.spend(points, now):
                self.calls.violations += 1
                return self._error(
                    400, 80004, "There have been too many calls to this ad-account.", now
                ), now
        return None, now

    async def _adsets(self, request: Request) -> Response:
        refused, now = await self._begin(request, 1)
        if refused is not None:
            return refused
        campaign = request.path_params["campaign"]
        limit = min(int(request.query_params.get("limit", self.page_size)), 100)
        after = request.query_params.get("after")
        with self._lock:
            ids = sorted(a for a, v in self.adsets.items() if v["campaign_id"] == campaign)
            start = ids.index(after) + 1 if after in ids else 0
            page = ids[start : start + limit]
            data = [{"id": a, "status": self.adsets[a]["status"]} for a in page]
        body: dict[str, Any] = {"data": data, "paging": {}}
        if page:
            body["paging"]["cursors"] = {"before": page[0], "after": page[-1]}
        if start + limit < len(ids):
            query = dict(request.query_params) | {"after": page[-1], "limit": str(limit)}
            body["paging"]["next"] = str(request.url.replace_query_params(**query))
        return JSONResponse(body, headers=self._usage(now))

    async def _node(self, request: Request) -> Response:
        write = request.method == "POST"
        refused, now = await self._begin(request, 3 if write else 1)
        if refused is not None:
            return refused
        node = request.path_params["node"]
        with self._lock:
            known = self.adsets.get(node)
            if known is None:
                return self._error(400, 100, "Unsupported request: object does not exist.", now)
            if not write:
                return JSONResponse({"id": node, "status": known["status"]})
            status = (await form_fields(request)).get("status")
            if status not in ("ACTIVE", "PAUSED"):
                return self._error(400, 100, "Invalid parameter: status.", now)
            known["status"] = str(status)
            self.calls.writes.append((node, str(status)))
        return JSONResponse({"success": True}, headers=self._usage(now))


# --- Google Ads --------------------------------------------------------------------------------

_FAILURE = "type.googleapis.com/google.ads.googleads.v17.errors.GoogleAdsFailure"
_IDS = re.compile(r"campaign\.id\s*(?:=\s*(\d+)|IN\s*\(([\d,\s]+)\))", re.IGNORECASE)


class GoogleAdsEmulator(Emulator):
    """One customer's campaigns."""

    def __init__(
        self,
        token: str,
        developer_token: str,
        *,
        customer_id: str = "1234567890",
        requests_per_window: int = 100,
        window_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.token, self.developer_token, self.customer_id = token, developer_token, customer_id
        self._window = Window(requests_per_window, window_seconds)
        self.campaigns: dict[str, str] = {}
        """Campaign id → ENABLED, PAUSED or REMOVED."""
        self.refresh_grants: dict[str, tuple[str, str]] = {}
        """Refresh token → (client id, client secret) it was issued to (Google's OAuth)."""
        self.minted: list[str] = []
        """Access tokens minted from refresh tokens, still valid."""
        self.mints = 0

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/{version}/customers/{customer}/googleAds:search",
                    self._search,
                    methods=["POST"],
                ),
                Route(
                    "/{version}/customers/{customer}/campaigns:mutate",
                    self._mutate,
                    methods=["POST"],
                ),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    def expire_tokens(self) -> None:
        """Every minted access token runs out (an hour passes)."""
        with self._lock:
            self.minted.clear()

    async def _token(self, request: Request) -> Response:
        """Google's OAuth token endpoint, the refresh grant (form-encoded)."""
        form = await form_fields(request)
        with self._lock:
            self.calls.total += 1
            grant = self.refresh_grants.get(form.get("refresh_token", ""))
            client = (form.get("client_id"), form.get("client_secret"))
            if form.get("grant_type") != "refresh_token" or grant is None or grant != client:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Bad Request"}, 400
                )
            self.mints += 1
            token = f"ya29.minted-{self.mints}"
            self.minted.append(token)
        return JSONResponse(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer", "scope": "adwords"}
        )

    @staticmethod
    def _error(status: int, code: str, message: str, **detail: Any) -> JSONResponse:
        error: dict[str, Any] = {
            "errorCode": {"quotaError" if status == 429 else "requestError": code}
        }
        error["message"] = message
        if detail:
            error["details"] = {"quotaErrorDetails": detail}
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": "RESOURCE_EXHAUSTED" if status == 429 else "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": _FAILURE,
                        "errors": [error],
                        "requestId": "emulated",
                    }
                ],
            }
        }
        return JSONResponse(body, status_code=status)

    def _begin(self, request: Request) -> JSONResponse | None:
        with self._lock:
            self.calls.total += 1
            failure = self.injected()
            if failure is not None:
                return JSONResponse(
                    {
                        "error": {
                            "code": failure,
                            "message": "Internal error.",
                            "status": "INTERNAL",
                        }
                    },
                    status_code=failure,
                )
            bearer = request.headers.get("authorization", "")
            valid = {f"Bearer {t}" for t in (self.token, *self.minted)}
            if bearer not in valid or (
                request.headers.get("developer-token") != self.developer_token
            ):
                return JSONResponse(
                    {
                        "error": {
                            "code": 401,
                            "message": "Unauthenticated.",
                            "status": "UNAUTHENTICATED",
                        }
                    },
                    status_code=401,
                )
            if request.path_params["customer"] != self.customer_id:
                return self._error(403, "CUSTOMER_NOT_FOUND", "The customer is not accessible.")
            if not self._window.spend(1, time.monotonic()):
                self.calls.violations += 1
                return self._error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Too many requests.",
                    rateScope="DEVELOPER",
                    retryDelay=f"{self._window.seconds:g}s",
                )
        return None

    async def _search(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        query = (await request.json()).get("query", "")
        found = _IDS.search(query)
        if "FROM campaign" not in query or found is None:
            return self._error(400, "INVALID_QUERY", "Only campaign status by id is emulated.")
        ids = [i.strip() for i in (found.group(1) or found.group(2)).split(",") if i.strip()]
        with self._lock:
            results = [
                {
                    "campaign": {
                        "resourceName": f"customers/{self.customer_id}/campaigns/{i}",
                        "id": i,
                        "status": self.campaigns[i],
                    }
                }
                for i in ids
                if i in self.campaigns
            ]
        return JSONResponse({"results": results, "fieldMask": "campaign.id,campaign.status"})

    async def _mutate(self, request: Request) -> Response:
        refused = self._begin(request)
        if refused is not None:
            return refused
        operations = (await request.json()).get("operations", [])
        prefix = f"customers/{self.customer_id}/campaigns/"
        changes = []
        for op in operations:
            update = op.get("update") or {}
            name = str(update.get("resourceName", ""))
            status = update.get("status")
            if op.get("updateMask") != "status" or status not in ("ENABLED", "PAUSED"):
                return self._error(400, "FIELD_MASK_MISSING", "Only status updates are emulated.")
            if not name.startswith(prefix) or name.removeprefix(prefix) not in self.campaigns:
                return self._error(400, "RESOURCE_NOT_FOUND", "The campaign was not found.")
            changes.append((name.removeprefix(prefix), str(status)))
        with self._lock:  # all or nothing, as without partialFailure
            for campaign, status in changes:
                self.campaigns[campaign] = status
                self.calls.writes.append((campaign, status))
        return JSONResponse({"results": [{"resourceName": prefix + c} for c, _ in changes]})
