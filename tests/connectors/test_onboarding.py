"""The Shopify app's install and OAuth callback against the Shopify emulator: a good grant
connects the shop (token encrypted in the registry, webhooks registered once); a bad shop
domain, a bad hmac and a bad or stale state connect nothing."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from connectors.onboarding import (
    COMPLIANCE_TOPICS,
    STATE_COOKIE,
    WEBHOOK_TOPICS,
    OnboardingRefused,
    check_state,
    onboarding_routes,
    query_with_hmac,
    shopify_app_config,
    state_cookie,
)
from emulators import ShopifyEmulator, serve
from revloop.crypto import SecretBox, new_master_key
from revloop.settings import Settings
from revloop.stores import StoreRegistry

with warnings.catch_warnings():  # it asks for httpx2; httpx is what the project uses
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

SHOP = "acme-goods.myshopify.com"
CLIENT_ID, CLIENT_SECRET, TOKEN = "app-client-id", "shpss_app-secret", "shpat_shop-token"


@dataclass
class Onboarding:
    client: TestClient
    emulator: ShopifyEmulator
    stores: Path
    box: SecretBox

    def install(self, shop: str = SHOP) -> str:
        """The state nonce of a fresh install (its cookie stays in the client)."""
        answer = self.client.get("/oauth/shopify/install", params={"shop": shop})
        assert answer.status_code == 302, answer.text
        return parse_qs(urlsplit(answer.headers["location"]).query)["state"][0]

    def callback(
        self, state: str, *, shop: str = SHOP, code: str = "code-1", secret: str = CLIENT_SECRET
    ) -> int:
        query = query_with_hmac(
            {"code": code, "shop": shop, "state": state, "timestamp": "1764600000"},
            secret.encode(),
        )
        return self.client.get(f"/oauth/shopify/callback?{query}").status_code


@pytest.fixture
def onboarding(tmp_path: Path) -> Iterator[Onboarding]:
    emulator = ShopifyEmulator(SHOP, TOKEN, currency="CAD")
    keys = new_master_key("k1")
    with serve(emulator.app) as running:
        settings = Settings(
            master_keys=SecretStr(keys),
            stores_file=tmp_path / "stores.json",
            public_url="https://revloop.example",
            shopify_client_id=CLIENT_ID,
            shopify_client_secret=SecretStr(CLIENT_SECRET),
            shopify_api_url=running.base_url,
            connect_backoff_cap_seconds=0.1,
        )
        box = SecretBox.from_settings(settings)
        app = Starlette(routes=onboarding_routes(settings, box))
        with TestClient(app, base_url="https://revloop.example", follow_redirects=False) as client:
            yield Onboarding(client, emulator, tmp_path / "stores.json", box)


def test_an_install_redirects_to_the_shop_with_a_state_bound_to_this_browser(
    onboarding: Onboarding,
) -> None:
    answer = onboarding.client.get("/oauth/shopify/install", params={"shop": SHOP})
    location = urlsplit(answer.headers["location"])
    query = parse_qs(location.query)
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        SHOP,
        "/admin/oauth/authorize",
    )
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["https://revloop.example/oauth/shopify/callback"]
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}=") and "HttpOnly" in cookie and "Secure" in cookie
    assert query["state"][0] in cookie  # the nonce, signed in the cookie


def test_a_good_grant_connects_the_shop_once(onboarding: Onboarding) -> None:
    onboarding.emulator.grant("code-1", CLIENT_ID, CLIENT_SECRET)
    assert onboarding.callback(onboarding.install()) == 200
    registry = StoreRegistry.load(onboarding.stores, onboarding.box)
    store = registry.lookup("shopify", SHOP)
    assert store is not None and store.store_id == "shopify-acme-goods"
    assert store.currency == "CAD"  # read from the shop
    connection = store.connection("shopify")
    assert connection is not None and connection.fields() == {"token": TOKEN}
    assert TOKEN not in onboarding.stores.read_text()  # encrypted at rest
    subscribed = sorted((w["topic"], w["uri"]) for w in onboarding.emulator.webhooks.values())
    assert len(subscribed) == len(WEBHOOK_TOPICS)
    assert {uri for _, uri in subscribed} == {"https://revloop.example/webhooks/shopify"}
    # A reinstall: same store, no second subscription; the used code is refused.
    onboarding.emulator.grant("code-2", CLIENT_ID, CLIENT_SECRET)
    assert onboarding.callback(onboarding.install(), code="code-2") == 200
    assert len(onboarding.emulator.webhooks) == len(WEBHOOK_TOPICS)
    assert len(StoreRegistry.load(onboarding.stores, onboarding.box)) == 1
    assert onboarding.callback(onboarding.install(), code="code-1") == 400
    assert onboarding.emulator.calls.violations == 0


@pytest.mark.parametrize(
    "shop",
    [
        "evil.example.com",
        "acme.myshopify.com.evil.example",
        "acme.myshopify.com/@evil.example",
        "https://acme.myshopify.com",
        "-acme.myshopify.com",
        "",
    ],
)
def test_a_bad_shop_domain_is_refused_before_any_redirect(
    onboarding: Onboarding, shop: str
) -> None:
    answer = onboarding.client.get("/oauth/shopify/install", params={"shop": shop})
    assert answer.status_code == 400 and "location" not in answer.headers
    state = onboarding.install()
    assert onboarding.callback(state, shop=shop) == 400
    assert not onboarding.stores.exists()


def test_a_bad_hmac_or_state_connects_nothing(onboarding: Onboarding) -> None:
    onboarding.emulator.grant("code-1", CLIENT_ID, CLIENT_SECRET)
    state = onboarding.install()
    assert onboarding.callback(state, secret="not-the-app-secret") == 401
    assert onboarding.callback("another-nonce") == 403
    # The state of another shop's install, or no cookie at all.
    other = onboarding.install("other-shop.myshopify.com")
    assert onboarding.callback(other) == 403
    onboarding.install()
    onboarding.client.cookies.clear()
    assert onboarding.callback(state) == 403
    # A tampered query: signed for one code, sent with another.
    good = query_with_hmac(
        {"code": "code-1", "shop": SHOP, "state": state, "timestamp": "1"}, CLIENT_SECRET.encode()
    )
    assert (
        onboarding.client.get(
            f"/oauth/shopify/callback?{good.replace('code-1', 'code-9')}"
        ).status_code
        == 401
    )
    assert not onboarding.stores.exists()
    assert onboarding.emulator.calls.total == 0  # nothing reached the shop


def test_a_stale_state_is_refused(onboarding: Onboarding, tmp_path: Path) -> None:
    state = onboarding.install()
    cookie = onboarding.client.cookies[STATE_COOKIE]
    nonce, mac = cookie.split(".", 1)[0], cookie.rsplit(".", 1)[1]
    # Re-signing needs the secret; an edited expiry breaks the signature instead.
    onboarding.client.cookies.set(STATE_COOKIE, f"{nonce}.{SHOP}.1.{mac}", path="/oauth/shopify")
    assert onboarding.callback(state) == 403


def test_a_state_past_its_time_is_refused() -> None:
    secret = b"app-secret"
    cookie = state_cookie("nonce-1", SHOP, expires=1_000, secret=secret)
    check_state("nonce-1", cookie, SHOP, now=999, secret=secret)
    with pytest.raises(OnboardingRefused, match="invalid state"):
        check_state("nonce-1", cookie, SHOP, now=1_001, secret=secret)


def test_the_compliance_topics_are_configured_in_the_app() -> None:
    config = shopify_app_config("https://revloop.example")
    for topic in COMPLIANCE_TOPICS:
        assert f'compliance_topics = [ "{topic}" ]' in config
    assert config.count('uri = "https://revloop.example/webhooks/shopify"') == 3
    assert not set(COMPLIANCE_TOPICS) & set(WEBHOOK_TOPICS)
    assert json.dumps(config)  # printable as it is
