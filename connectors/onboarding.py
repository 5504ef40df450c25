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

BigCommerce's app callbacks: ``/oauth/bigcommerce/auth`` exchanges the install's code (checked
against the store's ``context``) for a token, stores it and registers the hooks; ``load`` and
``uninstall`` carry a ``signed_payload_jwt`` (HS256 under the client secret, ``aud`` = the
client id, in time), and an uninstall removes the store's token from the registry.
:func:`disconnect` removes a store's webhooks and its token (``revloop stores disconnect``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.http import ApiError
from connectors.store_apis.base import StoreApi
from connectors.store_apis.connect import retry_policy, store_api
from connectors.store_apis.shopify import ShopifyApi
from connectors.store_apis.woocommerce import WooCommerceApi
from platforms import bigcommerce, shopify, woocommerce
from platforms.webhooks import Delivery
from revloop.crypto import CryptoError, Secret, SecretBox
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
        return _public_url(self.settings)

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
        known = registry_of(self.settings, self.box)
        existing = known.lookup("shopify", shop)
        store_id = (
            existing.store_id if existing else store_id_for(shop, [s.store_id for s in known])
        )
        api = (self.api_factory or self._api)(store_id, shop, token)
        try:
            info = api.shop()
            address = f"{self._public_url}/webhooks/shopify"
            registered = subscribe(
                api, WEBHOOK_TOPICS, address, lambda t: api.register_webhook(t, address)
            )
        finally:
            api.close()
        connection = Connection("shopify", shop, Secret(json.dumps({"token": token}).encode()))

        new = Store(store_id, "shopify", shop, (Secret(secret),), currency=info.currency)
        save_connection(self.settings, self.box, new, connection)
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


BC_CONTEXT = re.compile(r"^stores/[a-z0-9]{1,20}$")


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def verify_signed_payload(token: str, client_id: str, secret: bytes, now: float) -> dict[str, Any]:
    """The claims of BigCommerce's ``signed_payload_jwt``, or OnboardingRefused (401): HS256
    only, signed with the app's secret, for this app, in time, naming a store."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        raise OnboardingRefused(401, "invalid signed payload")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (ValueError, TypeError):
        raise OnboardingRefused(401, "invalid signed payload") from None
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if (
        not isinstance(header, dict)
        or header.get("alg") != "HS256"
        or not hmac.compare_digest(signature, expected)
        or not isinstance(claims, dict)
    ):
        raise OnboardingRefused(401, "invalid signed payload")
    audience = claims.get("aud")
    in_time = isinstance(claims.get("exp"), int | float) and claims["exp"] >= now - 30
    started = not isinstance(claims.get("nbf"), int | float) or claims["nbf"] <= now + 30
    if audience != client_id or not in_time or not started:
        raise OnboardingRefused(401, "invalid signed payload")
    if not BC_CONTEXT.fullmatch(str(claims.get("sub", ""))):
        raise OnboardingRefused(401, "invalid signed payload")
    return claims


@dataclass
class BigCommerceOnboarding:
    settings: Settings
    box: SecretBox
    clock: Callable[[], float] = time.time

    def _app(self) -> tuple[str, bytes]:
        secret = self.settings.bigcommerce_client_secret
        if secret is None or not self.settings.bigcommerce_client_id:
            raise OnboardingRefused(503, "the BigCommerce app is not configured")
        return self.settings.bigcommerce_client_id, secret.get_secret_value().encode()

    async def auth(self, request: Request) -> Response:
        try:
            client_id, secret = self._app()
            context = request.query_params.get("context", "")
            code = request.query_params.get("code")
            if not BC_CONTEXT.fullmatch(context) or not code:
                raise OnboardingRefused(400, "invalid context or code")
            connected = await run_in_threadpool(
                self._connect,
                client_id,
                secret,
                context,
                code,
                request.query_params.get("scope", ""),
            )
        except OnboardingRefused as exc:
            return _refusal(exc)
        except ApiError as exc:
            log.warning("bigcommerce onboarding failed: %s", exc)
            return JSONResponse({"error": "the store did not answer; try again"}, 502)
        return JSONResponse(connected)

    def _connect(
        self, client_id: str, secret: bytes, context: str, code: str, scope: str
    ) -> dict[str, object]:
        public_url = _public_url(self.settings)
        with httpx.Client(base_url=self.settings.bigcommerce_login_url, timeout=20) as client:
            answer = client.post(
                "/oauth2/token",
                json={
                    "client_id": client_id,
                    "client_secret": secret.decode(),
                    "code": code,
                    "scope": scope,
                    "grant_type": "authorization_code",
                    "redirect_uri": f"{public_url}/oauth/bigcommerce/auth",
                    "context": context,
                },
            )
        grant = answer.json() if answer.is_success else {}
        token = grant.get("access_token") if isinstance(grant, dict) else None
        if not isinstance(token, str) or not token or grant.get("context") != context:
            raise OnboardingRefused(400, "the code was refused")
        store_hash = context.removeprefix("stores/")
        existing = registry_of(self.settings, self.box).lookup("bigcommerce", store_hash)
        store_id = existing.store_id if existing else f"bigcommerce-{store_hash}"
        credentials = Secret(json.dumps({"token": token}).encode())
        connection = Connection("bigcommerce", store_hash, credentials)
        api = store_api(self.settings, store_id, connection)
        try:
            info = api.shop()
            address = f"{public_url}/webhooks/bigcommerce"
            subscribe(api, bigcommerce.TOPICS, address, lambda t: api.register_webhook(t, address))
        finally:
            api.close()

        new = Store(store_id, "bigcommerce", context, (Secret(secret),), currency=info.currency)
        save_connection(self.settings, self.box, new, connection)
        log.info("bigcommerce store %s connected as %s", store_hash, store_id)
        return {"store_id": store_id, "store_hash": store_hash, "webhooks": len(bigcommerce.TOPICS)}

    def _claims(self, request: Request) -> dict[str, Any]:
        client_id, secret = self._app()
        token = request.query_params.get("signed_payload_jwt", "")
        return verify_signed_payload(token, client_id, secret, self.clock())

    async def load(self, request: Request) -> Response:
        try:
            claims = self._claims(request)
        except OnboardingRefused as exc:
            return _refusal(exc)
        store = registry_of(self.settings, self.box).lookup(
            "bigcommerce", str(claims["sub"]).removeprefix("stores/")
        )
        connected = store is not None and store.connection("bigcommerce") is not None
        return JSONResponse({"store_id": store.store_id if store else None, "connected": connected})

    async def uninstall(self, request: Request) -> Response:
        try:
            claims = self._claims(request)
        except OnboardingRefused as exc:
            return _refusal(exc)
        context = str(claims["sub"])
        store = registry_of(self.settings, self.box).lookup(
            "bigcommerce", context.removeprefix("stores/")
        )
        # The app's hooks go with the app: BigCommerce deletes them; the token is ours to drop.
        if store is not None:
            await run_in_threadpool(forget_token, self.settings, self.box, store.store_id)
        log.info("bigcommerce %s uninstalled the app: its token is removed", context)
        return JSONResponse({"uninstalled": context})


def _public_url(settings: Settings) -> str:
    if not settings.public_url:
        raise OnboardingRefused(503, "REVLOOP_PUBLIC_URL is not set")
    return settings.public_url


WOO_STATE = "oauth:woocommerce"
WOO_SITE = re.compile(r"^https://[a-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")


@dataclass
class WooCommerceOnboarding:
    """WooCommerce's own app authorization (``/wc-auth/v1/authorize``): the merchant approves,
    and the shop POSTs a REST key and secret to the callback. The ``user_id`` it echoes is the
    site and a deadline sealed with the registry's master key (AES-GCM), so a callback names
    the site it was asked of, in time, and nothing else can forge one."""

    settings: Settings
    box: SecretBox
    clock: Callable[[], float] = time.time

    async def install(self, request: Request) -> Response:
        try:
            public_url = _public_url(self.settings)
            site = self._site(request.query_params.get("site"))
        except OnboardingRefused as exc:
            return _refusal(exc)
        deadline = int(self.clock()) + self.settings.oauth_state_seconds
        state = self.box.encrypt(json.dumps([site, deadline]).encode(), context=WOO_STATE)
        query = urlencode(
            {
                "app_name": "revloop",
                "scope": "read_write",
                "user_id": state,
                "return_url": f"{public_url}/oauth/woocommerce/done",
                "callback_url": f"{public_url}/oauth/woocommerce/callback",
            }
        )
        return RedirectResponse(f"{site.rstrip('/')}/wc-auth/v1/authorize?{query}", 302)

    async def callback(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError
            site = self._state(str(body.get("user_id", "")))
            key, secret = body.get("consumer_key"), body.get("consumer_secret")
            if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
                raise OnboardingRefused(400, "no key and secret")
            connected = await run_in_threadpool(self._connect, site, key, secret)
        except ValueError:
            return _refusal(OnboardingRefused(400, "the body is not a JSON object"))
        except OnboardingRefused as exc:
            return _refusal(exc)
        except ApiError as exc:
            log.warning("woocommerce onboarding failed: %s", exc)
            return JSONResponse({"error": "the shop did not answer; try again"}, 502)
        return JSONResponse(connected)

    def _site(self, value: str | None) -> str:
        site = (value or "").strip().lower()
        if not WOO_SITE.fullmatch(site):
            raise OnboardingRefused(400, "invalid site URL (https://shop.example/)")
        return site if site.endswith("/") else site + "/"

    def _state(self, state: str) -> str:
        try:
            site, deadline = json.loads(self.box.decrypt(state, context=WOO_STATE))
        except (CryptoError, ValueError, TypeError):
            raise OnboardingRefused(403, "invalid state") from None
        if not isinstance(deadline, int) or deadline < self.clock():
            raise OnboardingRefused(403, "invalid state")
        return self._site(site)

    def _connect(self, site: str, key: str, secret: str) -> dict[str, object]:
        address = f"{_public_url(self.settings)}/webhooks/woocommerce"
        credentials = json.dumps({"consumer_key": key, "consumer_secret": secret}).encode()
        connection = Connection("woocommerce", site, Secret(credentials))
        existing = registry_of(self.settings, self.box).lookup("woocommerce", site.rstrip("/"))
        host = re.sub(r"[^a-z0-9-]+", "-", site.removeprefix("https://")).strip("-")[:40]
        store_id = existing.store_id if existing else f"woocommerce-{host}"
        # WooCommerce signs each webhook with the secret it was created with: one per store.
        webhook_secret = (
            existing.secrets[0].reveal() if existing else secrets.token_urlsafe(32).encode()
        )
        api = store_api(self.settings, store_id, connection)
        try:
            info = api.shop()
            assert isinstance(api, WooCommerceApi), "a woocommerce connection"
            woo = api
            subscribe(
                woo,
                woocommerce.TOPICS,
                address,
                lambda t: woo.register_webhook(t, address, secret=webhook_secret.decode()),
            )
        finally:
            api.close()

        new = Store(
            store_id, "woocommerce", site, (Secret(webhook_secret),), currency=info.currency
        )
        save_connection(self.settings, self.box, new, connection)
        log.info("woocommerce site connected as store %s", store_id)
        return {"store_id": store_id, "site": site, "webhooks": len(woocommerce.TOPICS)}


def disconnect(settings: Settings, box: SecretBox, store_id: str) -> list[str]:
    """Remove the webhooks revloop registered at the store's platform (those addressed to
    ``REVLOOP_PUBLIC_URL``, or every one when it is not set) and the store's token. Returns
    the topics unsubscribed."""
    registry = StoreRegistry.load(settings.stores_file, box)
    store = registry.get(store_id)
    if store is None:
        raise LookupError(f"no store {store_id!r} in {settings.stores_file}")
    connection = store.connection(store.platform)
    removed: list[str] = []
    if connection is not None:
        api = store_api(settings, store_id, connection)
        try:
            for hook in api.webhooks():
                if settings.public_url is None or hook.address.startswith(settings.public_url):
                    api.delete_webhook(hook.webhook_id)
                    removed.append(hook.topic)
        finally:
            api.close()

    forget_token(settings, box, store_id)
    return removed


UNINSTALLED = {
    "shopify": frozenset({"app/uninstalled", "shop/redact"}),
    "bigcommerce": frozenset({"store/app/uninstalled"}),
}
"""The webhooks that say a store removed the app (Shopify's shop/redact comes 48 hours after):
its token is void then."""


def registry_of(settings: Settings, box: SecretBox) -> StoreRegistry:
    path = settings.stores_file
    return StoreRegistry.load(path, box) if path.exists() else StoreRegistry()


def subscribe(
    api: StoreApi, topics: Iterable[str], address: str, register: Callable[[str], object]
) -> list[str]:
    """Every topic subscribed once at ``address`` (``register(topic)`` does it): a reinstall
    adds none. Returns the topics."""
    have = {(w.topic, w.address) for w in api.webhooks()}
    wanted = sorted(topics)
    for topic in wanted:
        if (topic, address) not in have:
            register(topic)
    return wanted


def save_connection(settings: Settings, box: SecretBox, new: Store, connection: Connection) -> None:
    """Keep ``connection`` (a store's token) for the store the platform knows by ``new``'s
    identity: the store there, or ``new`` on a first install."""

    def change(registry: StoreRegistry) -> StoreRegistry:
        store = registry.lookup(new.platform, new.identity) or new
        kept = tuple(c for c in store.connections if c.channel != connection.channel)
        return registry.with_store(replace(store, connections=(*kept, connection)))

    StoreRegistry.update(settings.stores_file, box, change)


def forget_token(settings: Settings, box: SecretBox, store_id: str) -> bool:
    """Remove the store's platform connection (its token) from the registry; whether it had
    one. The platform drops the app's webhooks itself on uninstall."""
    forgot = False

    def change(registry: StoreRegistry) -> StoreRegistry:
        nonlocal forgot
        store = registry.get(store_id)
        if store is None or store.connection(store.platform) is None:
            return registry
        forgot = True
        kept = tuple(c for c in store.connections if c.channel != store.platform)
        return registry.with_store(replace(store, connections=kept))

    StoreRegistry.update(settings.stores_file, box, change)
    return forgot


def on_uninstall(
    settings: Settings, box: SecretBox
) -> Callable[[Delivery], Coroutine[Any, Any, None]]:
    """Ingest's hook: a verified uninstall webhook forgets the store's token."""

    async def hook(delivery: Delivery) -> None:
        store = delivery.store
        uninstalled = delivery.topic in UNINSTALLED.get(store.platform, frozenset())
        if uninstalled and await run_in_threadpool(forget_token, settings, box, store.store_id):
            log.info("%s uninstalled the app: its token is forgotten", store.store_id)

    return hook


def _refusal(exc: OnboardingRefused) -> Response:
    return JSONResponse({"error": exc.reason}, exc.status)


def onboarding_routes(settings: Settings, box: SecretBox) -> list[BaseRoute]:
    """The routes the ingest app serves for onboarding."""
    shopify = ShopifyOnboarding(settings, box)
    bc = BigCommerceOnboarding(settings, box)
    woo = WooCommerceOnboarding(settings, box)
    return [
        Route("/oauth/shopify/install", shopify.install, methods=["GET"]),
        Route("/oauth/shopify/callback", shopify.callback, methods=["GET"]),
        Route("/oauth/bigcommerce/auth", bc.auth, methods=["GET"]),
        Route("/oauth/bigcommerce/load", bc.load, methods=["GET"]),
        Route("/oauth/bigcommerce/uninstall", bc.uninstall, methods=["GET"]),
        Route("/oauth/woocommerce/install", woo.install, methods=["GET"]),
        Route("/oauth/woocommerce/callback", woo.callback, methods=["POST"]),
    ]


def query_with_hmac(params: Mapping[str, str], secret: bytes) -> str:
    """A query as Shopify signs it (for tests and the demo)."""
    query = urlencode(params)
    return f"{query}&hmac={query_signature(query, secret)}"
