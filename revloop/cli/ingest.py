"""`revloop ingest`: the ingest service with the onboarding routes beside it (the connectors'
Shopify install and callback). Composed here, where every layer may be imported."""

from __future__ import annotations

import typer

from connectors.onboarding import onboarding_routes
from ingest.server import run
from revloop.settings import get_settings


def serve_command(
    host: str | None = typer.Option(None, help="Bind address (default REVLOOP_INGEST_HOST)."),
    port: int | None = typer.Option(None, help="Port (default REVLOOP_INGEST_PORT)."),
) -> None:
    """Serve the webhook receivers (/webhooks/{shopify,woocommerce,bigcommerce}), the marketing
    feeds (/events/{touchpoints,campaigns,spend}), onboarding (/oauth/shopify/install and
    /callback), /healthz, /readyz and /metrics."""
    settings = get_settings()
    run(settings, host, port, routes=lambda box: onboarding_routes(settings, box))
