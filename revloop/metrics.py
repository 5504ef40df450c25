"""Serving a process's Prometheus registry at ``/metrics`` (docs/operations.md, "Metrics").

Every long-running process has its own port (``*_metrics_port`` in settings); metrics are a
window on the process, never a reason for it to stop, so a port already taken is logged and
the process runs on without the endpoint, and port 0 turns it off.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import weakref
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` endpoint (a daemon thread): it dies with the process."""

    host: str
    port: int
    """The bound port (the one asked for, or the system's pick when a test asked for 0)."""
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_WITH_PROCESS_COLLECTORS: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


def add_process_collectors(registry: CollectorRegistry) -> None:
    """prometheus_client's ``process_*``, ``python_info`` and ``python_gc_*`` families, which
    only its global registry has by default; once per registry (these collectors do not
    describe themselves, so a registry would take them twice and serve every line twice)."""
    if registry in _WITH_PROCESS_COLLECTORS:
        return
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        with contextlib.suppress(ValueError):  # the global registry has them already
            collector(registry=registry)
    _WITH_PROCESS_COLLECTORS.add(registry)


def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = "127.0.0.1",
    *,
    process: str = "revloop",
    any_port: bool = False,
    required: bool = False,
) -> MetricsServer | None:
    """Serve ``registry`` (with the process collectors) at ``http://host:port/metrics`` from a
    daemon thread. None when ``port`` is 0 (off) or cannot be bound: that is logged as a warning
    naming ``process``, and the caller runs on; ``required`` raises the OSError instead (a
    process that only serves). ``any_port`` makes 0 mean "any free port" instead (tests)."""
    if port == 0 and not any_port:
        log.info("%s: /metrics is off (port 0)", process)
        return None
    add_process_collectors(registry)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if required:
            raise
        log.warning(
            "%s: cannot serve /metrics on %s:%d (%s); running on without it",
            process,
            host,
            port,
            exc.strerror or exc,
        )
        return None
    bound = int(server.server_address[1])
    log.info("%s: serving /metrics on http://%s:%d/metrics", process, host, bound)
    return MetricsServer(host, bound, server, thread)


def reachable_host(bind_host: str) -> str:
    """Where to reach a server bound to ``bind_host``: a wildcard bind answers on loopback."""
    try:
        wildcard = ipaddress.ip_address(bind_host).is_unspecified
    except ValueError:  # a host name
        wildcard = bind_host == ""
    return "127.0.0.1" if wildcard else bind_host


def local_url(bind_host: str, port: int, path: str) -> str:
    """The URL of ``path`` on a local server bound to ``bind_host``:``port``."""
    host = reachable_host(bind_host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
