"""The console's web server: the page (one static file), the snapshot it polls, and the thread
that samples every interval. No authentication: it binds loopback by default, and answers only
requests addressed to the host it serves (a DNS-rebinding page cannot read it)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from console.collector import Collector

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 (names, not a bind)


def page() -> str:
    return resources.files("console").joinpath("static/index.html").read_text()


def _inline_hash(html: str, tag: str) -> str:
    """The CSP source for the page's one inline <script> or <style>: its SHA-256."""
    found = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
    assert found is not None, f"the page has no <{tag}>"
    digest = hashlib.sha256(found.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(html: str) -> str:
    """Only the page's own script and style run, and it talks only to this server: even a bug
    that put data into markup could not run it."""
    return (
        f"default-src 'none'; script-src {_inline_hash(html, 'script')}; "
        f"style-src {_inline_hash(html, 'style')}; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def allowed_hosts(host: str) -> list[str]:
    """The Host headers answered: the bind address and loopback names; any when bound to every
    address (reached under names it cannot know)."""
    if host in ANY_ADDRESS:
        return ["*"]
    return sorted({host, *LOOPBACK_NAMES})


class Sampling:
    """The sampling thread and the newest snapshot it made."""

    def __init__(self, collector: Collector, interval: float) -> None:
        self.collector = collector
        self.interval = interval
        self.snapshot: dict[str, Any] = {"at": None, "interval": interval}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-sampling", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and keep the samples for the next run, as `revloop lag` does; a sample
        still waiting on a source (up to its timeout) is left to die with the process."""
        self._stop.set()
        self._thread.join(timeout=2)
        if self._thread.is_alive():
            log.warning("a sample is still running: its samples are not saved")
        else:
            self.collector.save()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.snapshot = self.collector.collect()
            except Exception:  # never end the loop: the next sample may work
                log.exception("console sample failed")
            due = max(due + self.interval, time.monotonic())
            self._stop.wait(due - time.monotonic())


def create_app(sampling: Sampling, host: str = "127.0.0.1") -> FastAPI:
    html = page()
    headers = {
        "Content-Security-Policy": content_security_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sampling.start()
        try:
            yield
        finally:
            sampling.stop()

    app = FastAPI(
        title="revloop console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    @app.get("/api/snapshot")
    def snapshot() -> JSONResponse:
        return JSONResponse(sampling.snapshot, headers={"Cache-Control": "no-store"})

    return app
