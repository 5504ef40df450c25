"""`revloop console`: the ops console, a web page on the pipeline's lag, throughput, dead letters,
open circuit breakers and ingest outcomes (docs/ops.md, "Ops console")."""

from __future__ import annotations

import typer
import uvicorn

from console.collector import Collector
from console.server import Sampling, create_app
from revloop.settings import get_settings


def console_command(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Bind address. The page has no login and shows business data: keep it on loopback "
        "(reach it through an SSH tunnel) unless a proxy in front authenticates.",
    ),
    port: int = typer.Option(8090, "--port", help="Port."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between samples."),
    groups: str | None = typer.Option(
        None, "--groups", help="Only groups starting with this (default: the topic prefix)."
    ),
) -> None:
    """Serve the ops console: each consumer group's lag (messages and seconds, with a chart) and
    status as `revloop lag` judges them, throughput per topic, dead letters, open circuit
    breakers with their campaigns, and ingest's deliveries by outcome; sampled every
    --interval."""
    settings = get_settings()
    sampling = Sampling(Collector(settings, interval, groups_prefix=groups), interval)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"revloop console on http://{shown}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(
        create_app(sampling, host), host=host, port=port, access_log=False, log_level="warning"
    )
