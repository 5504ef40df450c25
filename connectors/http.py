"""One HTTP client for every platform API (docs/connectors.md, "Retries and rate limits").

A call is retried when the platform says so or cannot answer: 429 (after its ``Retry-After``),
a 5xx, a timeout or a dropped connection, and whatever the platform module recognises as a
throttle in a body (Meta's error codes, Shopify's ``THROTTLED``). The waits are bounded
exponential backoff with full jitter; a ``Retry-After`` is honoured up to a cap. Any other 4xx
fails at once. A failure names the store and the call, never a token or a body: the headers
that authenticate are given once and kept out of every message and ``repr``.

The platform module may also pace calls (``pace``): after each answer it says how long to
wait before the next one (Meta's usage headers), so a client that listens never trips a
limit.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

Throttle = Callable[[httpx.Response], float | None]
"""Seconds to wait before retrying an answer the platform means as a throttle, or None."""
Pace = Callable[[httpx.Response], float]
"""Seconds to wait before the next call, judged from an answer (0: none)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    """Tries of one call, the first included."""
    base_seconds: float = 0.5
    cap_seconds: float = 30.0
    """The longest backoff between two tries."""
    max_wait_seconds: float = 120.0
    """The longest ``Retry-After`` (or platform throttle) honoured; a longer one fails the call,
    for the caller to try again later, rather than hold its partition."""
    timeout_seconds: float = 20.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: anywhere up to ``base * 2**retry``, capped."""
        return rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2**retry))


@dataclass(frozen=True)
class Answer:
    """One try of a call and what came of it (for the record of calls; no token, no body)."""

    call: str
    attempt: int
    status: int | None
    outcome: str
    """``ok``, ``retried`` (another try follows) or ``failed`` (the call fails with it)."""
    error: str | None
    elapsed_ms: int


class ApiError(Exception):
    """A platform call that failed: which store, which call, why (never a token or a body)."""

    def __init__(
        self, store_id: str, call: str, reason: str, *, status: int | None, retryable: bool
    ) -> None:
        self.store_id, self.call, self.reason = store_id, call, reason
        self.status, self.retryable = status, retryable
        super().__init__(f"store {store_id}: {call} failed: {reason}")


class ApiClient:
    """Calls to one platform API for one store."""

    def __init__(
        self,
        platform: str,
        store_id: str,
        base_url: str,
        *,
        auth_headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        throttle: Throttle | None = None,
        pace: Pace | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.platform, self.store_id = platform, store_id
        self.policy = policy or RetryPolicy()
        self._throttle, self._pace = throttle, pace
        self._sleep, self._rng = sleep, rng or random.Random()  # noqa: S311 (jitter, not secrets)
        self._not_before = 0.0
        self._http = httpx.Client(
            base_url=base_url,
            headers=dict(auth_headers or {}),
            timeout=self.policy.timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )
        self.calls = 0
        """Requests sent, retries included."""
        self.journal: list[Answer] | None = None
        """When a list, every try is recorded in it (the ad executor's record of calls)."""

    def __repr__(self) -> str:
        return f"ApiClient({self.platform!r}, store={self.store_id!r}, base={self._base()!r})"

    def _base(self) -> str:
        return str(self._http.base_url)

    def authenticate(self, name: str, value: str) -> None:
        """Replace an authenticating header (a fresh access token), kept out of messages too."""
        self._http.headers[name] = value

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, call: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """The 2xx answer to ``method path`` (retried as the module docstring says), or
        ApiError. ``call`` names it in errors (default: the method and path)."""
        name = f"{self.platform} {call or f'{method} {path}'}"
        retry = 0
        while True:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self.calls += 1
            started = time.monotonic()
            status: int | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                reason, later = f"{type(exc).__name__} (no answer)", None
            else:
                status = response.status_code
                if self._pace is not None:
                    self._not_before = time.monotonic() + self._pace(response)
                later = self._throttle(response) if self._throttle is not None else None
                if later is None and response.status_code == 429:
                    later = retry_after(response)
                if later is None and response.is_success:
                    self._note(call or f"{method} {path}", retry, status, "ok", None, started)
                    return response
                if later is None and response.status_code < 500 and response.status_code != 429:
                    reason = f"HTTP {response.status_code}"
                    self._note(call or f"{method} {path}", retry, status, "failed", reason, started)
                    raise ApiError(self.store_id, name, reason, status=status, retryable=False)
                reason = f"HTTP {response.status_code}" + (" (throttled)" if later else "")
            retry += 1
            failed: ApiError | None = None
            if retry >= self.policy.attempts:
                failed = ApiError(
                    self.store_id,
                    name,
                    f"{reason}, {retry} tries",
                    status=None if later is None else 429,
                    retryable=True,
                )
            elif later is not None and later > self.policy.max_wait_seconds:
                failed = ApiError(
                    self.store_id,
                    name,
                    f"{reason}; asked to wait {later:.0f} s",
                    status=429,
                    retryable=True,
                )
            outcome = "failed" if failed is not None else "retried"
            self._note(call or f"{method} {path}", retry - 1, status, outcome, reason, started)
            if failed is not None:
                raise failed
            self._sleep(later if later is not None else self.policy.backoff(retry, self._rng))

    def _note(
        self,
        call: str,
        retry: int,
        status: int | None,
        outcome: str,
        error: str | None,
        started: float,
    ) -> None:
        if self.journal is not None:
            elapsed = int((time.monotonic() - started) * 1000)
            self.journal.append(Answer(call, retry + 1, status, outcome, error, elapsed))

    def take_journal(self) -> list[Answer]:
        """The tries recorded since the last take (journaling on from now)."""
        taken, self.journal = self.journal or [], []
        return taken


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
