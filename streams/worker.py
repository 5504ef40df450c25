"""`revloop worker`: the stateful stream processors, on quixstreams, exactly once (docs/streams.md).

It composes four processors over shared input streams: the circuit breaker
(``actions.circuit-breaker.v1``, ``alerts.low-stock.v1``), attribution
(``analytics.attribution-scores.v1``), the ledger (``billing.ledger-entries.v1``: what scores,
touchpoint costs and campaign spend reports book), and lifecycle (``lifecycle.triggers.v1``).
"""

from __future__ import annotations

import logging
import socket
import time

import typer
from quixstreams import Application
from quixstreams.models.topics.exceptions import TopicNotFoundError

from revloop.kafka import serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores import LiveStoreSettings
from streams.attribution.topology import add_attribution
from streams.circuit_breaker.topology import add_circuit_breaker
from streams.ledger import add_ledger
from streams.lifecycle.topology import add_lifecycle
from streams.runtime.inputs import Inputs
from streams.runtime.metrics import WorkerMetrics
from streams.runtime.quix import fence_previous_life, worker_application

log = logging.getLogger(__name__)


def build_worker(
    settings: Settings, instance_id: str, metrics: WorkerMetrics | None = None
) -> Application:
    app = worker_application(settings, instance_id)
    serde = serde_for(
        settings,
        "streams",  # its dead letters
        "streams.circuit_breaker",
        "streams.attribution",
        "streams.ledger",
        "streams.lifecycle",
    )
    stores = LiveStoreSettings(settings.stores_file, settings, settings.stores_check_seconds)
    inputs = Inputs(app, settings, serde, stores, metrics)
    add_circuit_breaker(app, settings, serde, inputs)
    scores = add_attribution(app, settings, serde, inputs)
    add_ledger(app, settings, serde, inputs, scores)
    add_lifecycle(app, settings, serde, inputs)
    return app


def _built(
    settings: Settings, instance_id: str, metrics: WorkerMetrics, attempts: int = 5
) -> Application:
    """The worker, its topics made. quixstreams creates a missing topic and then looks it up at
    once, and a broker that has just started can answer that it does not exist yet: so a few
    tries, a second apart."""
    for attempt in range(1, attempts + 1):
        try:
            return build_worker(settings, instance_id, metrics)
        except TopicNotFoundError as exc:
            if attempt == attempts:
                raise
            log.warning("topic setup: %s; trying again (%d of %d)", exc, attempt, attempts)
            time.sleep(1.0)
    raise AssertionError("unreachable")


def worker_command(
    instance_id: str | None = typer.Option(
        None,
        help="Stable id of this instance (default: the host name): its static group membership "
        "and its transactional id, so a restart takes its partitions back at once.",
    ),
) -> None:
    """Run the stream processors (circuit breaker, attribution, lifecycle) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    metrics = WorkerMetrics()
    # Served from the start: building the topology (its topics, state) can take seconds.
    serve_metrics(
        metrics.registry, settings.worker_metrics_port, settings.metrics_host, process="worker"
    )
    app = _built(settings, instance_id or socket.gethostname(), metrics)
    fence_previous_life(app, settings)
    app.run()
