"""The Shopify app's install and OAuth callback against the Shopify emulator: a good grant
connects the shop (token encrypted in the registry, webhooks registered once); a bad shop
domain, a bad hmac and a bad or stale state connect nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
    disconnect,
    on_uninstall,
    onboarding_routes,
    query_with_hmac,
    shopify_app_config,
    state_cookie,
)
from emulators import BigCommerceEmulator, ShopifyEmulator, WooCommerceEmulator, serve
from ingest.app import RAW_TOPIC, IngestService, create_app
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher
from platforms import bigcommerce, shopify, woocommerce
from revloop.crypto import Secret, SecretBox, new_master_key
from revloop.kafka import ensure_topics
from revloop.settings import Settings
from revloop.stores import Connection, LiveStoreRegistry, Store, StoreRegistry
from schemas.registry import CommittedCatalogue
from schemas.serde import AvroSerde

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


# -- BigCommerce ----------------------------------------------------------------------------------

BC_HASH, BC_CLIENT, BC_SECRET, BC_TOKEN = "k2x9q7ab3c", "bc-client-id", "bc-client-secret", "bc-tok"


def signed_payload(claims: dict[str, object], secret: str = BC_SECRET, alg: str = "HS256") -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    head = part({"typ": "JWT", "alg": alg})
    body = part(claims)
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


@pytest.fixture
def bc_onboarding(tmp_path: Path) -> Iterator[tuple[TestClient, BigCommerceEmulator, Settings]]:
    emulator = BigCommerceEmulator(BC_HASH, BC_TOKEN, currency="EUR")
    with serve(emulator.app) as running:
        settings = Settings(
            master_keys=SecretStr(new_master_key("k1")),
            stores_file=tmp_path / "stores.json",
            public_url="https://revloop.example",
            bigcommerce_client_id=BC_CLIENT,
            bigcommerce_client_secret=SecretStr(BC_SECRET),
            bigcommerce_api_url=running.base_url,
            bigcommerce_login_url=running.base_url,
        )
        app = Starlette(routes=onboarding_routes(settings, SecretBox.from_settings(settings)))
        with TestClient(app, base_url="https://revloop.example") as client:
            yield client, emulator, settings


def test_a_bigcommerce_install_connects_the_store_and_its_uninstall_forgets_the_token(
    bc_onboarding: tuple[TestClient, BigCommerceEmulator, Settings],
) -> None:
    client, emulator, settings = bc_onboarding
    box = SecretBox.from_settings(settings)
    context = f"stores/{BC_HASH}"
    emulator.grant("bc-code", BC_CLIENT, BC_SECRET)
    assert (
        client.get(
            "/oauth/bigcommerce/auth", params={"code": "bc-code", "context": "x/1"}
        ).status_code
        == 400
    )
    answer = client.get(
        "/oauth/bigcommerce/auth",
        params={"code": "bc-code", "scope": "store_v2_orders", "context": context},
    )
    assert answer.status_code == 200, answer.text
    store = StoreRegistry.load(settings.stores_file, box).lookup("bigcommerce", BC_HASH)
    assert store is not None and store.store_id == f"bigcommerce-{BC_HASH}"
    assert store.currency == "EUR" and store.connection("bigcommerce") is not None
    assert {h["destination"] for h in emulator.hooks.values()} == {
        "https://revloop.example/webhooks/bigcommerce"
    }
    assert len(emulator.hooks) == len(bigcommerce.TOPICS)
    # The code is spent.
    assert (
        client.get(
            "/oauth/bigcommerce/auth", params={"code": "bc-code", "context": context}
        ).status_code
        == 400
    )

    now = int(time.time())
    good = {"aud": BC_CLIENT, "iss": "bc", "sub": context, "iat": now, "nbf": now, "exp": now + 60}
    loaded = client.get(
        "/oauth/bigcommerce/load", params={"signed_payload_jwt": signed_payload(good)}
    )
    assert loaded.json() == {"store_id": f"bigcommerce-{BC_HASH}", "connected": True}
    for bad in (
        signed_payload(good, secret="another-app"),
        signed_payload({**good, "aud": "another-client"}),
        signed_payload({**good, "exp": now - 3600}),
        signed_payload({**good, "sub": "stores/../../etc"}),
        signed_payload(good, alg="none"),
        "not.a.jwt",
    ):
        for route in ("load", "uninstall"):
            refused = client.get(f"/oauth/bigcommerce/{route}", params={"signed_payload_jwt": bad})
            assert refused.status_code == 401
    still = StoreRegistry.load(settings.stores_file, box).lookup("bigcommerce", BC_HASH)
    assert still is not None and still.connection("bigcommerce") is not None

    gone = client.get(
        "/oauth/bigcommerce/uninstall", params={"signed_payload_jwt": signed_payload(good)}
    )
    assert gone.status_code == 200
    after = StoreRegistry.load(settings.stores_file, box).lookup("bigcommerce", BC_HASH)
    assert after is not None and after.connection("bigcommerce") is None
    assert BC_TOKEN not in settings.stores_file.read_text()


def test_disconnect_deletes_revloops_webhooks_and_forgets_the_token(
    bc_onboarding: tuple[TestClient, BigCommerceEmulator, Settings],
) -> None:
    client, emulator, settings = bc_onboarding
    emulator.grant("bc-code", BC_CLIENT, BC_SECRET)
    context = f"stores/{BC_HASH}"
    client.get("/oauth/bigcommerce/auth", params={"code": "bc-code", "context": context})
    # A hook someone else registered at the store stays.
    emulator.hooks[1] = {
        "id": 1,
        "scope": "store/order/created",
        "destination": "https://other.example/h",
        "is_active": True,
    }
    box = SecretBox.from_settings(settings)
    removed = disconnect(settings, box, f"bigcommerce-{BC_HASH}")
    assert sorted(removed) == sorted(bigcommerce.TOPICS)
    assert [h["destination"] for h in emulator.hooks.values()] == ["https://other.example/h"]
    store = StoreRegistry.load(settings.stores_file, box).get(f"bigcommerce-{BC_HASH}")
    assert store is not None and store.connection("bigcommerce") is None


# -- WooCommerce ----------------------------------------------------------------------------------


def test_a_woocommerce_authorization_connects_the_site_with_signed_webhooks(tmp_path: Path) -> None:
    woo = WooCommerceEmulator("ck_live", "cs_live", site_url="https://woo-shop.example/")
    with serve(woo.app) as running:
        settings = Settings(
            master_keys=SecretStr(new_master_key("k1")),
            stores_file=tmp_path / "stores.json",
            public_url="https://revloop.example",
            woocommerce_api_url=running.base_url,
            woocommerce_requests_per_second=100,
        )
        box = SecretBox.from_settings(settings)
        app = Starlette(routes=onboarding_routes(settings, box))
        with TestClient(app, base_url="https://revloop.example", follow_redirects=False) as client:
            for bad in ("http://woo-shop.example", "https://u:p@woo-shop.example", "javascript:x"):
                refused = client.get("/oauth/woocommerce/install", params={"site": bad})
                assert refused.status_code == 400 and "location" not in refused.headers
            start = client.get(
                "/oauth/woocommerce/install", params={"site": "https://woo-shop.example"}
            )
            location = urlsplit(start.headers["location"])
            assert (location.netloc, location.path) == ("woo-shop.example", "/wc-auth/v1/authorize")
            query = parse_qs(location.query)
            assert query["callback_url"] == ["https://revloop.example/oauth/woocommerce/callback"]
            state = query["user_id"][0]
            # What WooCommerce POSTs once the merchant approves; a forged state gets nothing.
            grant = {"key_id": 1, "consumer_key": "ck_live", "consumer_secret": "cs_live"}
            forged = client.post("/oauth/woocommerce/callback", json={**grant, "user_id": "x.y.z"})
            assert forged.status_code == 403 and not settings.stores_file.exists()
            done = client.post("/oauth/woocommerce/callback", json={**grant, "user_id": state})
            assert done.status_code == 200, done.text
    registry = StoreRegistry.load(settings.stores_file, box)
    store = registry.get("woocommerce-woo-shop-example")
    assert store is not None and store.identity == "https://woo-shop.example"
    connection = store.connection("woocommerce")
    assert connection is not None and connection.fields()["consumer_secret"] == "cs_live"
    # Every webhook signs with the store's secret: what ingest verifies deliveries with.
    assert len(woo.webhooks) == len(woocommerce.TOPICS)
    assert set(woo.webhook_secrets.values()) == {store.secrets[0].reveal().decode()}
    assert "cs_live" not in settings.stores_file.read_text()


# -- uninstall ------------------------------------------------------------------------------------


def test_a_verified_uninstall_webhook_forgets_the_token(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings, [RAW_TOPIC])
    keys = new_master_key("k1")
    local = settings.model_copy(
        update={"master_keys": SecretStr(keys), "stores_file": tmp_path / "stores.json"}
    )
    box = SecretBox.from_settings(local)
    token = Secret(json.dumps({"token": TOKEN}).encode())
    StoreRegistry(
        [
            Store(
                "acme",
                "shopify",
                SHOP,
                (Secret(CLIENT_SECRET.encode()),),
                connections=(Connection("shopify", SHOP, token),),
            )
        ]
    ).save(local.stores_file, box)
    service = IngestService(
        stores=LiveStoreRegistry(local.stores_file, box),
        publisher=DurablePublisher(local, ack_timeout=10),
        serde=AvroSerde(CommittedCatalogue.load()),
        metrics=IngestMetrics(),
        settings=local,
        on_accepted=on_uninstall(local, box),
    )
    body = json.dumps({"id": 1, "name": "Acme", "domain": SHOP}).encode()

    def deliver(topic: str, secret: str = CLIENT_SECRET) -> int:
        headers = shopify.signed_headers(
            body,
            secret.encode(),
            shop_domain=SHOP,
            topic=topic,
            webhook_id=str(uuid.uuid4()),
            triggered_at=datetime.now(UTC),
        )
        with TestClient(create_app(service)) as client:
            return client.post("/webhooks/shopify", content=body, headers=headers).status_code

    try:
        assert deliver("app/uninstalled", secret="forged") == 401
        assert deliver("shop/update") == 200  # another topic changes nothing
        kept = StoreRegistry.load(local.stores_file, box).get("acme")
        assert kept is not None and kept.connection("shopify") is not None
        assert deliver("app/uninstalled") == 200
    finally:
        service.publisher.close()
    gone = StoreRegistry.load(local.stores_file, box).get("acme")
    assert gone is not None and gone.connection("shopify") is None
    assert gone.secrets  # still verifies the shop's late deliveries (shop/redact)
