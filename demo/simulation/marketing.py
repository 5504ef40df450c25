"""Each store's ad tool: the campaigns it links to products (``POST /events/campaigns``) and
what it saw of the shoppers before they ordered (``POST /events/touchpoints``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from demo.simulation.world import (
    CATALOGUES,
    Customer,
    Day,
    DemoRequest,
    DemoStore,
    Product,
    Variant,
    compact_json,
)

_CHANNELS: Final = ("meta", "google", "tiktok")
_FEED_BATCH: Final = 10
"""Touchpoints a store's ad tool collects before it posts them."""


class AdTool:
    """One store's ad tool. Touchpoints wait in a batch until it is full or the day ends."""

    def __init__(self, day: Day, store: DemoStore) -> None:
        self.day = day
        self.store = store
        self.batch: list[dict[str, Any]] = []

    def link_campaigns(self, products: Sequence[Product], at: datetime) -> None:
        links = []
        for channel, product in zip(_CHANNELS, products, strict=False):
            for campaign, linked_products in self._campaigns(products, channel, product).items():
                for linked in linked_products:
                    links.append(
                        {
                            "campaign_id": campaign,
                            "product_id": str(linked.product_id),
                            "channel": channel,
                            "active": True,
                            "occurred_at": _iso_z(at),
                        }
                    )
        self._post("campaigns", {"links": links}, at)

    def _campaigns(
        self, products: Sequence[Product], channel: str, product: Product
    ) -> dict[str, list[Product]]:
        # One campaign per channel, each promoting its product and, sometimes, a second one.
        platform, rng = self.store.platform, self.day.rng
        others = [p for p in products if p is not product]
        extra = [rng.choice(others)] if others and rng.random() < 0.5 else []
        number = CATALOGUES[platform].index(product.spec) + 1
        return {self._campaign_id(channel, number): [product, *extra]}

    def _campaign_id(self, channel: str, number: int) -> str:
        platform, run = self.store.platform, self.day.seed % 1000
        if channel == "google":  # Google Ads campaign ids are numbers
            return f"7{sorted(CATALOGUES).index(platform)}{run:03d}{number}"
        return f"{channel}-{platform[:4]}-{run:03d}{number}"

    def _campaign_of(self, product: Product) -> tuple[str, str] | None:
        platform = self.store.platform
        index = CATALOGUES[platform].index(product.spec)
        if index >= len(_CHANNELS):
            return None
        channel = _CHANNELS[index]
        return channel, self._campaign_id(channel, index + 1)

    def touchpoints(
        self, customer: Customer, bought: Sequence[Variant], at: datetime
    ) -> dict[str, str] | None:
        """What the ad tool saw of this shopper before the order; the utm parameters of the
        click that brought them, if the last touch was one."""
        rng = self.day.rng
        arrival = None
        if rng.random() < 0.3:
            self._flush_if_full(at)
            return None
        touches = rng.randint(1, 3)
        times = sorted(at - timedelta(minutes=rng.randint(2, 180)) for _ in range(touches))
        product = bought[0].product
        for n, when in enumerate(times):
            last = n == touches - 1
            kind = (
                "ad_click"
                if last or rng.random() < 0.4
                else rng.choice(("ad_view", "content_view"))
            )
            campaign = self._campaign_of(product)
            if kind != "content_view" and campaign is None:
                kind = "content_view"
            item = self._touchpoint(customer, product, kind, campaign, when)
            if kind == "ad_click" and last and campaign is not None:
                arrival = {
                    "utm_source": campaign[0],
                    "utm_medium": "cpc",
                    "utm_campaign": campaign[1],
                    "click_id": item["click_id"],
                }
        self._flush_if_full(at)
        return arrival

    def _touchpoint(
        self,
        customer: Customer,
        product: Product,
        kind: str,
        campaign: tuple[str, str] | None,
        when: datetime,
    ) -> dict[str, Any]:
        store, rng = self.store, self.day.rng
        run = self.day.ids.next("touchpoint")
        item: dict[str, Any] = {
            "touchpoint_id": f"demo-{kind.replace('_', '-')}-{run}",
            "kind": kind,
            "channel": "blog" if kind == "content_view" else campaign[0] if campaign else "meta",
            "occurred_at": _iso_z(when),
            "email": customer.email,
            "product_ids": [str(product.product_id)],
        }
        if kind == "content_view":
            item["content_id"] = f"guide-{product.spec.handle}"
            item["landing_url"] = f"https://{_host(store)}/blog/{product.spec.handle}-guide"
        elif campaign is not None:
            channel, campaign_id = campaign
            item["campaign_id"] = campaign_id
            item["ad_id"] = f"{campaign_id}-ad{rng.randint(1, 3)}"
            # What an impression or a click cost, in integer minor units.
            cents = rng.randint(40, 260) if kind == "ad_click" else rng.randint(1, 6)
            item["cost"] = {"amount_minor": cents, "currency": store.spec.currency}
            if kind == "ad_click":
                click_id = self.day.tokens.getrandbits(96).to_bytes(12, "big").hex()
                item["click_id"] = click_id
                item["landing_url"] = (
                    f"https://{_host(store)}/products/{product.spec.handle}"
                    f"?utm_source={channel}&utm_medium=cpc&utm_campaign={campaign_id}"
                )
        self.batch.append(item)
        return item

    def _flush_if_full(self, at: datetime) -> None:
        if len(self.batch) >= _FEED_BATCH:
            self.flush(at)

    def flush(self, at: datetime) -> None:
        """Posts the touchpoints collected so far, if any."""
        batch = self.batch
        if batch:
            self.batch = []
            self._post("touchpoints", {"touchpoints": batch}, at)

    def _post(self, feed: str, document: Any, at: datetime) -> None:
        store = self.store
        self.day.send(
            DemoRequest(
                "POST",
                f"/events/{feed}",
                {"authorization": f"Bearer {store.api_key}", "content-type": "application/json"},
                compact_json(document),
                store.platform,
                feed,
                store.store_id,
                at,
            )
        )


def _iso_z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _host(store: DemoStore) -> str:
    identity = store.spec.identity
    if store.platform == "woocommerce":
        return identity.split("://", 1)[1].rstrip("/")
    if store.platform == "shopify":
        return identity.replace(".myshopify.com", ".example.com")
    return "harbor-demo.example.com"
