"""`revloop ingest`: the ingest service with the onboarding routes beside it (the connectors'
Shopify install and callback). Composed here, where every layer may be imported."""

from __future__ import annotations

import typer

from connectors.onboarding import on_uninstall, onboarding_routes
from ingest.server import Additions, run
from revloop.crypto import SecretBox
from revloop.settings import get_settings


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (default REVLOOP_INGEST_HOST)."),
    port: int | None = typer.Option(None, help="Port (default REVLOOP_INGEST_PORT)."),
) -> None:
    """Serve the webhook receivers (/webhooks/{shopify,woocommerce,bigcommerce}), the marketing
    feeds (/events/{touchpoints,campaigns,spend}), onboarding (/oauth/shopify/*,
    /oauth/bigcommerce/*, /oauth/woocommerce/*), /healthz, /readyz and /metrics. A verified
    uninstall webhook forgets the store's token."""
    settings = get_settings()

    def additions(box: SecretBox) -> Additions:
        return Additions(onboarding_routes(settings, box), on_uninstall(settings, box))

    run(settings, host, port, additions)
