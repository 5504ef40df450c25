"""Stores connect themselves: the Shopify app's install and OAuth callback, served by the ingest
app (docs/connectors.md, "Onboarding").

``GET /oauth/shopify/install?shop=...`` checks the shop domain against Shopify's own pattern
(it becomes URLs, so nothing else may pass: no SSRF, no open redirect), issues a ``state``
nonce in a signed, short-lived, HttpOnly cookie and redirects the merchant to the shop's
consent screen. ``GET /oauth/shopify/callback`` accepts the grant only when

- the shop domain is valid,
- ``hmac`` is the hex HMAC-SHA256, under the app's client secret, of the query's other
  parameters sorted and joined as ``k=v&...`` (compared in constant time),
- ``state`` equals the nonce in the cookie, whose signature, shop and age check out;

then exchanges the code for an access token, stores it encrypted in the registry (the store is
created on its first install, named after the shop), and registers the shop's webhooks. The
mandatory compliance topics (``customers/data_request``, ``customers/redact``,
``shop/redact``) cannot be subscribed through the Admin API: Shopify takes them from the app's
configuration, whose snippet :func:`shopify_app_config` prints.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.http import ApiError
from connectors.store_apis.base import StoreApi
from connectors.store_apis.connect import retry_policy
from connectors.store_apis.shopify import ShopifyApi
from platforms import shopify
from revloop.crypto import Secret, SecretBox
from revloop.settings import Settings
from revloop.stores import Connection, Store, StoreRegistry

log = logging.getLogger(__name__)

SHOP_DOMAIN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*\.myshopify\.com$")
"""Shopify's own pattern for a shop's domain (its libraries check the same)."""
STATE_COOKIE = "revloop_shopify_state"
COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")
"""Subscribed in the app's configuration only (Shopify refuses them through the API)."""
WEBHOOK_TOPICS = tuple(sorted(shopify.TOPICS - set(COMPLIANCE_TOPICS)))
"""What each shop subscribes to through the Admin API: every topic the normalizer reads."""


class OnboardingRefused(Exception):
    """A callback that must not connect anything: the status to answer and why."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


def shop_domain(value: str | None) -> str:
    """The shop's domain, lowercased, or OnboardingRefused (400)."""
    if not value or len(value) > 255 or not SHOP_DOMAIN.fullmatch(value):
        raise OnboardingRefused(400, "invalid shop domain")
    return value.lower()


def query_signature(query: str, secret: bytes) -> str:
    """Shopify's ``hmac`` of a callback query: the other parameters, sorted, as ``k=v&...``."""
    pairs = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "hmac")
    message = "&".join(f"{k}={v}" for k, v in pairs)
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def verify_query(query: str, secret: bytes) -> None:
    given = dict(parse_qsl(query, keep_blank_values=True)).get("hmac", "")
    if not hmac.compare_digest(given.encode(), query_signature(query, secret).encode()):
        raise OnboardingRefused(401, "invalid hmac")


def state_cookie(nonce: str, shop: str, expires: int, secret: bytes) -> str:
    body = f"{nonce}.{shop}.{expires}"
    mac = hmac.new(secret, f"state/{body}".encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def check_state(
    state: str | None, cookie: str | None, shop: str, now: float, secret: bytes
) -> None:
    """The callback's ``state`` is the nonce this browser was given for this shop, in time."""
    parts = (cookie or "").rsplit(".", 1)
    if not state or len(parts) != 2:
        raise OnboardingRefused(403, "invalid state")
    body, mac = parts
    expected = hmac.new(secret, f"state/{body}".encode(), hashlib.sha256).hexdigest()
    nonce, _, rest = body.partition(".")
    cookie_shop, _, expires = rest.rpartition(".")
    fresh = expires.isdigit() and int(expires) >= now
    if not (
        hmac.compare_digest(mac.encode(), expected.encode())
        and hmac.compare_digest(nonce.encode(), state.encode())
        and cookie_shop == shop
        and fresh
    ):
        raise OnboardingRefused(403, "invalid state")


def store_id_for(shop: str, taken: Sequence[str]) -> str:
    """A new store's slug, from the shop's name: ``shopify-<name>``, made unique."""
    name = re.sub(r"[^a-z0-9-]+", "-", shop.removesuffix(".myshopify.com")).strip("-")[:40]
    base = f"shopify-{name or 'shop'}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def shopify_app_config(public_url: str) -> str:
    """The ``shopify.app.toml`` webhooks section: the compliance topics, where Shopify takes
    them from."""
    lines = ["[webhooks]", 'api_version = "2026-07"', ""]
    for topic in COMPLIANCE_TOPICS:
        lines += [
            "  [[webhooks.subscriptions]]",
            f'  compliance_topics = [ "{topic}" ]',
            f'  uri = "{public_url}/webhooks/shopify"',
            "",
        ]
    return "\n".join(lines)


@dataclass
class ShopifyOnboarding:
    settings: Settings
    box: SecretBox
    clock: Callable[[], float] = time.time
    api_factory: Callable[[str, str, str], StoreApi] | None = None

    @property
    def _secret(self) -> bytes:
        if self.settings.shopify_client_secret is None or not self.settings.shopify_client_id:
            raise OnboardingRefused(503, "the Shopify app is not configured")
        return self.settings.shopify_client_secret.get_secret_value().encode()

    @property
    def _public_url(self) -> str:
        if not self.settings.public_url:
            raise OnboardingRefused(503, "REVLOOP_PUBLIC_URL is not set")
        return self.settings.public_url

    def _admin_base(self, shop: str) -> str:
        return self.settings.shopify_api_url or f"https://{shop}"

    async def install(self, request: Request) -> Response:
        try:
            secret, public_url = self._secret, self._public_url
            shop = shop_domain(request.query_params.get("shop"))
            if "hmac" in request.query_params:  # launched from the admin: signed
                verify_query(request.url.query, secret)
        except OnboardingRefused as exc:
            return _refusal(exc)
        nonce = secrets.token_urlsafe(24)
        expires = int(self.clock()) + self.settings.oauth_state_seconds
        query = urlencode(
            {
                "client_id": self.settings.shopify_client_id,
                "scope": self.settings.shopify_scopes,
                "redirect_uri": f"{public_url}/oauth/shopify/callback",
                "state": nonce,
            }
        )
        # The shop domain passed the pattern: the redirect can only go to a Shopify shop.
        response = RedirectResponse(f"https://{shop}/admin/oauth/authorize?{query}", 302)
        response.set_cookie(
            STATE_COOKIE,
            state_cookie(nonce, shop, expires, secret),
            max_age=self.settings.oauth_state_seconds,
            path="/oauth/shopify",
            secure=public_url.startswith("https://"),
            httponly=True,
            samesite="lax",
        )
        return response

    async def callback(self, request: Request) -> Response:
        try:
            secret = self._secret
            shop = shop_domain(request.query_params.get("shop"))
            verify_query(request.url.query, secret)
            check_state(
                request.query_params.get("state"),
                request.cookies.get(STATE_COOKIE),
                shop,
                self.clock(),
                secret,
            )
            code = request.query_params.get("code")
            if not code:
                raise OnboardingRefused(400, "no code")
            connected = await run_in_threadpool(self._connect, shop, code, secret)
        except OnboardingRefused as exc:
            return _refusal(exc)
        except ApiError as exc:
            log.warning("shopify onboarding of %s failed: %s", shop, exc)
            return JSONResponse({"error": "the shop did not answer; try again"}, 502)
        response = JSONResponse(connected)
        response.delete_cookie(STATE_COOKIE, path="/oauth/shopify")
        return response

    def _connect(self, shop: str, code: str, secret: bytes) -> dict[str, object]:
        token = self._exchange(shop, code, secret)
        path = self.settings.stores_file
        known = StoreRegistry.load(path, self.box) if path.exists() else StoreRegistry()
        existing = known.lookup("shopify", shop)
        store_id = (
            existing.store_id if existing else store_id_for(shop, [s.store_id for s in known])
        )
        api = (self.api_factory or self._api)(store_id, shop, token)
        try:
            info = api.shop()
            registered = self._register_webhooks(api)
        finally:
            api.close()
        connection = Connection("shopify", shop, Secret(json.dumps({"token": token}).encode()))

        def change(registry: StoreRegistry) -> StoreRegistry:
            current = registry.lookup("shopify", shop)
            if current is None:
                store = Store(store_id, "shopify", shop, (Secret(secret),), currency=info.currency)
            else:
                store = current
            kept = tuple(c for c in store.connections if c.channel != "shopify")
            return registry.with_store(replace(store, connections=(*kept, connection)))

        StoreRegistry.update(path, self.box, change)
        log.info("shopify shop %s connected as store %s", shop, store_id)
        return {"store_id": store_id, "shop": shop, "webhooks": registered}

    def _exchange(self, shop: str, code: str, secret: bytes) -> str:
        with httpx.Client(base_url=self._admin_base(shop), timeout=20) as client:
            answer = client.post(
                "/admin/oauth/access_token",
                json={
                    "client_id": self.settings.shopify_client_id,
                    "client_secret": secret.decode(),
                    "code": code,
                },
            )
        token = answer.json().get("access_token") if answer.is_success else None
        if not isinstance(token, str) or not token:
            raise OnboardingRefused(400, "the code was refused")
        return token

    def _api(self, store_id: str, shop: str, token: str) -> StoreApi:
        return ShopifyApi(
            store_id,
            shop,
            token,
            base_url=self.settings.shopify_api_url,
            policy=retry_policy(self.settings),
        )

    def _register_webhooks(self, api: StoreApi) -> list[str]:
        """Every topic subscribed once, at this deployment's address (a reinstall adds none)."""
        address = f"{self._public_url}/webhooks/shopify"
        have = {(w.topic, w.address) for w in api.webhooks()}
        for topic in WEBHOOK_TOPICS:
            if (topic, address) not in have:
                api.register_webhook(topic, address)
        return list(WEBHOOK_TOPICS)


def _refusal(exc: OnboardingRefused) -> Response:
    return JSONResponse({"error": exc.reason}, exc.status)


def onboarding_routes(settings: Settings, box: SecretBox) -> list[BaseRoute]:
    """The routes the ingest app serves for onboarding."""
    shopify = ShopifyOnboarding(settings, box)
    return [
        Route("/oauth/shopify/install", shopify.install, methods=["GET"]),
        Route("/oauth/shopify/callback", shopify.callback, methods=["GET"]),
    ]


def query_with_hmac(params: Mapping[str, str], secret: bytes) -> str:
    """A query as Shopify signs it (for tests and the demo)."""
    query = urlencode(params)
    return f"{query}&hmac={query_signature(query, secret)}"
