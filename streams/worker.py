"""`revloop worker`: the stateful stream processors, on quixstreams, exactly once (docs/streams.md).

Today it runs the circuit breaker: inventory levels, product variants and campaign links in,
pauses and resumes out on ``actions.circuit-breaker.v1``.
"""

from __future__ import annotations

import logging
import socket

import typer
from quixstreams import Application

from revloop.settings import Settings, get_settings
from schemas.registry import registry_for
from schemas.serde import AvroSerde
from streams.attribution.topology import add_attribution
from streams.circuit_breaker.topology import add_circuit_breaker
from streams.lifecycle.topology import add_lifecycle
from streams.runtime.inputs import Inputs
from streams.runtime.quix import fence_previous_life, worker_application


def build_worker(settings: Settings, instance_id: str) -> Application:
    app = worker_application(settings, instance_id)
    serde = AvroSerde(registry_for(settings.schema_registry_url))
    inputs = Inputs(app, settings, serde)
    add_circuit_breaker(app, settings, serde, inputs)
    add_attribution(app, settings, serde, inputs)
    add_lifecycle(app, settings, serde, inputs)
    return app


def worker_command(
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance (default: the host name): its static group membership "
        "and its transactional id, so a restart takes its partitions back at once.",
    ),
) -> None:
    """Run the stream processors (the circuit breaker today) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    app = build_worker(settings, instance_id or socket.gethostname())
    fence_previous_life(app, settings)
    app.run()
