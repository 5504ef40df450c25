"""`revloop ingest`: the webhook and feed service under uvicorn, wired from settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import typer
import uvicorn
from starlette.routing import BaseRoute

from ingest.app import IngestService, create_app
from ingest.metrics import IngestMetrics
from ingest.publisher import DurablePublisher
from platforms.webhooks import Delivery
from revloop.crypto import CryptoError, SecretBox
from revloop.kafka import serde_for
from revloop.settings import Settings, get_settings
from revloop.stores import LiveStoreRegistry


def build_service(settings: Settings) -> IngestService:
    salt = settings.customer_salt  # before the producer starts: a missing salt stops here
    box = SecretBox.from_settings(settings)
    stores = LiveStoreRegistry(settings.stores_file, box)
    return IngestService(
        stores=stores,
        publisher=DurablePublisher(settings, ack_timeout=settings.ingest_ack_timeout_seconds),
        serde=serde_for(settings, "ingest", "ingest.api"),
        metrics=IngestMetrics(),
        settings=settings,
        customer_salt=salt,
        refresh_stores=stores.refresh,
    )


def serve(
    host: str | None = typer.Option(None, help="Bind address (default REVLOOP_INGEST_HOST)."),
    port: int | None = typer.Option(None, help="Port (default REVLOOP_INGEST_PORT)."),
) -> None:
    """Serve the webhook receivers (/webhooks/{shopify,woocommerce,bigcommerce}), the marketing
    feeds (/events/{touchpoints,campaigns,spend}), /healthz, /readyz and /metrics."""
    run(get_settings(), host, port)


@dataclass(frozen=True)
class Additions:
    """What the composition root serves beside ingest: routes, and a hook after each accepted
    delivery (onboarding's)."""

    routes: Sequence[BaseRoute] = ()
    on_accepted: Callable[[Delivery], Awaitable[None]] | None = None


def run(
    settings: Settings,
    host: str | None,
    port: int | None,
    additions: Callable[[SecretBox], Additions] | None = None,
) -> None:
    """Serve ingest, with ``additions`` (made with the registry's keys)."""
    try:
        service = build_service(settings)
        extra = additions(SecretBox.from_settings(settings)) if additions else Additions()
    except (CryptoError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
    service.on_accepted = extra.on_accepted
    app = create_app(service, on_shutdown=service.publisher.close, routes=extra.routes)
    uvicorn.run(
        app,
        host=host or settings.ingest_host,
        port=port or settings.ingest_port,
        access_log=False,
        log_level="warning",
        # SIGTERM: open requests get this long, then uvicorn closes; the producer then flushes.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_seconds // 2)),
    )
