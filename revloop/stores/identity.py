"""Store identities: which platform a store is on and the canonical name its webhooks carry."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit


class Platform(StrEnum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    BIGCOMMERCE = "bigcommerce"


CURRENCY: Final = re.compile(r"[A-Z]{3}")
_WHITESPACE: Final = re.compile(r"\s")
STORE_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# Shopify's own sanitizer pattern; the 63-character cap is the DNS label limit.
_SHOP_DOMAIN: Final = re.compile(r"(?=[^.]{1,63}\.)[a-z0-9][a-z0-9_-]*\.myshopify\.com")
_STORE_HASH: Final = re.compile(r"[a-z0-9]{1,64}")
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_EXPECTED: Final = {
    Platform.SHOPIFY: "a shop domain like 'acme.myshopify.com'",
    Platform.WOOCOMMERCE: "a WooCommerce home URL like 'https://shop.example.com/'",
    Platform.BIGCOMMERCE: "a BigCommerce producer like 'stores/abc123' (or the bare hash)",
}


def normalize_identity(platform: str, raw: str) -> str:
    """The canonical identity of a store, from the header value (or operator input) naming it.

    Shopify: ``X-Shopify-Shop-Domain`` → ``acme.myshopify.com``. WooCommerce:
    ``X-WC-Webhook-Source`` (the home URL, usually with a trailing slash) →
    ``scheme://host[:port][/path]``. BigCommerce: the body's ``producer`` ``stores/{hash}``
    (or the bare hash) → ``hash``. Raises ValueError on anything else.
    """
    kind = platform_of(platform)
    if not isinstance(raw, str):
        raise ValueError(f"{kind} identity must be a string, got {type(raw).__name__}")
    expected = f"{raw[:100]!r} is not {_EXPECTED[kind]}"
    value = raw.strip()
    if not value or not value.isprintable() or _WHITESPACE.search(value):
        raise ValueError(expected)
    if kind is Platform.SHOPIFY:
        domain = value.lower()
        if not _SHOP_DOMAIN.fullmatch(domain):
            raise ValueError(expected)
        return domain
    if kind is Platform.WOOCOMMERCE:
        return _normalize_home_url(value, expected)
    store_hash = value.removeprefix("stores/")
    if not _STORE_HASH.fullmatch(store_hash):
        raise ValueError(expected)
    return store_hash


def _normalize_home_url(value: str, expected: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(expected) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(expected)
    host = parts.hostname or ""
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise ValueError(expected) from None
    else:
        try:
            # IDNA so a Unicode host and its punycode spelling are the same store.
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValueError(expected) from None
        if not _HOST.fullmatch(host):
            raise ValueError(expected)
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def platform_of(value: str) -> Platform:
    try:
        return Platform(value)
    except ValueError:
        choices = ", ".join(p.value for p in Platform)
        raise ValueError(f"unknown platform {value!r} (expected one of: {choices})") from None
