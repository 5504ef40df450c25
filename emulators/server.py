"""An emulator served on loopback from a thread (uvicorn), for as long as a ``with`` lasts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


@dataclass(frozen=True)
class Running:
    base_url: str
    port: int


@contextmanager
def serve(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, tls: tuple[Path, Path] | None = None
) -> Iterator[Running]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block ends; over TLS with
    ``tls`` = (certificate chain, key) files."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    certfile, keyfile = tls or (None, None)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the emulator did not start on {host}:{bound}")
        time.sleep(0.01)
    try:
        yield Running(f"{'https' if tls else 'http'}://{host}:{bound}", bound)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
