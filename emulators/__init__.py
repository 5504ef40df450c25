"""Local HTTP servers that emulate the platform APIs revloop calls (docs/connectors.md,
"Emulators"): their paths, payload shapes, pagination, rate limits and errors, as documented.
Tests start them on loopback, and the demo runs against them; every emulator counts the calls
it got and the rate-limit violations among them."""

from emulators.ad_platforms import GoogleAdsEmulator, MetaEmulator
from emulators.bigcommerce import BigCommerceEmulator
from emulators.server import Running, serve
from emulators.shopify import ShopifyEmulator
from emulators.woocommerce import WooCommerceEmulator

__all__ = [
    "BigCommerceEmulator",
    "GoogleAdsEmulator",
    "MetaEmulator",
    "Running",
    "ShopifyEmulator",
    "WooCommerceEmulator",
    "serve",
]
