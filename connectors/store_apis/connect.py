"""A store's platform API client, from its connection in the registry and the settings."""

from __future__ import annotations

from connectors.http import RetryPolicy
from connectors.store_apis.base import StoreApi
from revloop.settings import Settings
from revloop.stores import Connection


class NotConnected(LookupError):
    """The store has no connection to the platform API asked for."""


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.connect_retry_attempts, cap_seconds=settings.connect_backoff_cap_seconds
    )


def store_api(settings: Settings, store_id: str, connection: Connection | None) -> StoreApi:
    """The client for ``connection`` (a store platform channel), or NotConnected."""
    if connection is None:
        raise NotConnected(f"store {store_id} has no platform API connected")
    fields, policy = connection.fields(), retry_policy(settings)
    if connection.channel == "shopify":
        from connectors.store_apis.shopify import ShopifyApi

        return ShopifyApi(
            store_id,
            connection.account,
            fields["token"],
            base_url=settings.shopify_api_url,
            policy=policy,
        )
    if connection.channel == "woocommerce":
        from connectors.store_apis.woocommerce import WooCommerceApi

        return WooCommerceApi(
            store_id,
            settings.woocommerce_api_url or connection.account,
            fields["consumer_key"],
            fields["consumer_secret"],
            requests_per_second=settings.woocommerce_requests_per_second,
            policy=policy,
        )
    if connection.channel == "bigcommerce":
        from connectors.store_apis.bigcommerce import BigCommerceApi

        return BigCommerceApi(
            store_id,
            connection.account,
            fields["token"],
            api_url=settings.bigcommerce_api_url,
            policy=policy,
        )
    raise NotConnected(f"{connection.channel} is not a store platform")
