"""The HTTP edges of ingest against a real uvicorn server on a loopback port, driven over raw
sockets: the connection after a 413 or a 408, the body deadline, and that every webhook answer is
counted. The server runs the app the way `revloop ingest` does (uvicorn's automatic loop and HTTP
choices, lifespan on); the tests that depend on uvicorn's connection handling run under both of
its HTTP/1.1 implementations, httptools (the one `revloop ingest` gets) and h11."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from ingest.app import RAW_TOPIC, IngestService, create_app
from ingest.server import build_service
from revloop.crypto import SecretBox, new_master_key
from revloop.kafka import ensure_topics
from revloop.settings import Settings
from revloop.stores import Store, StoreRegistry
from tests.ingest_support import (
    CUSTOMER_SALT,
    TEST_BODY_CAP,
    bearer,
    make_feed_registry,
    make_registry,
    make_service,
    serving,
    shopify_delivery,
)
from tests.stack_support import free_ports

CAP = TEST_BODY_CAP
HUGE = 50_000_000
"""A declared Content-Length far past the cap, of which a test sends only a little."""
IMPLEMENTATIONS = ["httptools", "h11"]
CLOSE_WITHIN = 2.0
"""How long a test waits for the server to close a connection it should close at once."""


# --- a real server ----------------------------------------------------------------------------


@contextmanager
def running(service: IngestService, http: str = "auto", keep_alive: int = 5) -> Iterator[int]:
    try:
        with serving(create_app(service), http, keep_alive) as port:
            yield port
    finally:
        service.publisher.close(timeout=2)


@pytest.fixture(scope="module")
def raw_topic(settings: Settings) -> None:
    ensure_topics(settings, [RAW_TOPIC])


@pytest.fixture
def configured(settings: Settings, tmp_path: Path) -> Settings:
    """Settings for ``build_service``, as `revloop ingest` is configured: a stores file with
    the test stores (and feed keys), master keys, the salt, and a 0.5 s body deadline."""
    keys = SecretStr(new_master_key("k1"))
    path = tmp_path / "stores.json"
    make_feed_registry().save(path, SecretBox.from_settings(Settings(master_keys=keys)))
    return settings.model_copy(
        update={
            "stores_file": path,
            "master_keys": keys,
            "customer_key_salt": SecretStr(CUSTOMER_SALT.decode()),
            "ingest_max_body_bytes": CAP,
            "ingest_body_timeout_seconds": 0.5,
        }
    )


# --- raw HTTP/1.1 -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def head(method: str, path: str, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "host: ingest",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def request(method: str, path: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    return head(method, path, {**headers, "content-length": str(len(body))}) + body


def read_answer(sock: socket.socket, timeout: float = 5.0) -> Answer:
    """One response, read exactly to the end of its body (by its Content-Length)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the connection closed before an answer: {data!r}"
        data += more
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(body) < length:
        more = sock.recv(65536)
        assert more, "the connection closed mid-answer"
        body += more
    assert len(body) == length, "more than one answer"
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket, within: float = CLOSE_WITHIN) -> bool:
    """Whether the server closes the connection within ``within`` seconds while this side sends
    nothing more: an end of stream, or a reset (the server closed with bytes of ours unread;
    the tests send so that it has read them all, but a reset is a close too)."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def send_until_refused(sock: socket.socket, size: int) -> tuple[int, OSError | None]:
    """Sends up to ``size`` bytes; returns how many went and the error that stopped it."""
    block = b"x" * 65536
    sent = 0
    try:
        while sent < size:
            sock.sendall(block)
            sent += len(block)
    except OSError as exc:
        return sent, exc
    return sent, None


def shopify_headers(body: bytes, shop: str = "acme.myshopify.com") -> dict[str, str]:
    return shopify_delivery(body, shop=shop)


def delivery(body: bytes, shop: str = "acme.myshopify.com") -> bytes:
    return request("POST", "/webhooks/shopify", shopify_headers(body, shop), body)


def deliveries(service: IngestService, outcome: str, reason: str, **labels: str) -> float:
    values = {"platform": "shopify", "topic": "unverified", **labels}
    value = service.metrics.registry.get_sample_value(
        "revloop_ingest_deliveries_total", {**values, "outcome": outcome, "reason": reason}
    )
    return value or 0.0


def feed_requests(service: IngestService, outcome: str, reason: str) -> float:
    labels = {"feed": "touchpoints", "outcome": outcome, "reason": reason}
    value = service.metrics.registry.get_sample_value("revloop_ingest_feed_requests_total", labels)
    return value or 0.0


JSON = {"content-type": "application/json"}


# --- 413: the connection closes, the rest of the body is never read ---------------------------


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
def test_a_declared_oversize_body_gets_413_and_the_connection_closes_unread(
    settings: Settings, http: str
) -> None:
    service = make_service(settings)
    with running(service, http) as port, connect(port) as sock:
        # The head and 1000 bytes of the 50 MB, in one segment, and nothing more.
        sock.sendall(
            head("POST", "/webhooks/shopify", {**JSON, "content-length": str(HUGE)}) + b"x" * 1000
        )
        answer = read_answer(sock)
        assert answer.status == 413 and answer.closes
        assert answer.json()["reason"] == "too_large"
        assert closed_by_server(sock)
    assert deliveries(service, "rejected", "too_large") == 1


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
def test_a_chunked_body_growing_past_the_cap_gets_413_mid_stream_and_the_connection_closes(
    settings: Settings, http: str
) -> None:
    service = make_service(settings)
    chunk = b"x" * 4096
    with running(service, http) as port, connect(port) as sock:
        sock.sendall(head("POST", "/webhooks/shopify", {**JSON, "transfer-encoding": "chunked"}))
        for _ in range(CAP // len(chunk) + 1):  # one chunk past the cap, and no last chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_answer(sock)
        assert answer.status == 413 and answer.closes
        assert closed_by_server(sock)
    assert deliveries(service, "rejected", "too_large") == 1


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
def test_a_client_that_keeps_sending_after_the_413_is_cut_off_not_drained(
    settings: Settings, http: str
) -> None:
    """Where the server used to read and discard all 50 MB, a client that goes on sending after
    the 413 now finds the connection gone long before it has sent them."""
    service = make_service(settings)
    with running(service, http) as port, connect(port) as sock:
        sock.sendall(head("POST", "/webhooks/shopify", {**JSON, "content-length": str(HUGE)}))
        assert read_answer(sock).status == 413
        sent, refused = send_until_refused(sock, HUGE)
    assert isinstance(refused, BrokenPipeError | ConnectionResetError), refused
    assert sent < HUGE // 2, f"{sent} bytes went through after the 413"


# --- 408: the body deadline -------------------------------------------------------------------


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
@pytest.mark.parametrize("sent", [10, 0], ids=["10_of_100_bytes", "no_body_bytes"])
def test_a_stalled_body_gets_408_at_the_deadline_and_the_connection_closes(
    configured: Settings, http: str, sent: int
) -> None:
    timeout = configured.ingest_body_timeout_seconds
    service = build_service(configured)  # the setting reaches the service as `revloop ingest`'s
    assert service.body_timeout_seconds == timeout
    with running(service, http) as port, connect(port) as sock:
        started = time.monotonic()
        sock.sendall(
            head("POST", "/webhooks/shopify", {**JSON, "content-length": "100"}) + b"x" * sent
        )
        answer = read_answer(sock)
        elapsed = time.monotonic() - started
        assert answer.status == 408 and answer.closes
        assert answer.json() == {"error": "body not received within 0.5 s", "reason": "timeout"}
        assert timeout - 0.05 <= elapsed < timeout + 0.5
        assert closed_by_server(sock)
    assert deliveries(service, "rejected", "timeout") == 1


def test_the_deadline_is_for_the_whole_body_not_for_each_pause(
    configured: Settings, raw_topic: None
) -> None:
    """A body trickling in a byte at a time gets 408 at the deadline however steady it is; one
    that arrives in pieces within the deadline is served."""
    service = build_service(configured)
    body = b'{"id": 1, "pad": "' + b"x" * 60 + b'"}'
    with running(service) as port:
        with connect(port) as sock:
            started = time.monotonic()
            sock.sendall(head("POST", "/webhooks/shopify", {**JSON, "content-length": "100"}))
            for _ in range(99):  # a byte every 50 ms, until the server answers
                if select.select([sock], [], [], 0.05)[0]:
                    break
                sock.sendall(b"x")
            answer = read_answer(sock)
            elapsed = time.monotonic() - started
            assert answer.status == 408 and answer.closes
            assert elapsed < configured.ingest_body_timeout_seconds + 0.5
        with connect(port) as sock:
            whole = delivery(body)
            cut = len(whole) - len(body) // 2
            sock.sendall(whole[:cut])
            time.sleep(0.25)
            sock.sendall(whole[cut:])
            assert read_answer(sock).status == 200
    assert deliveries(service, "rejected", "timeout") == 1
    assert deliveries(service, "accepted", "", topic="orders/create") == 1


def test_uvicorns_keep_alive_timeout_does_not_cut_a_stalled_body_short(
    configured: Settings, raw_topic: None
) -> None:
    """uvicorn arms its keep-alive timer only between requests (and has no timer of its own
    while a request is read), so the body deadline is what ends a stalled body, on a fresh
    connection as on one kept alive, even when keep-alive is the shorter of the two."""
    service = build_service(configured.model_copy(update={"ingest_body_timeout_seconds": 1.5}))
    with running(service, keep_alive=1) as port, connect(port) as sock:
        body = b'{"id": 2}'
        sock.sendall(delivery(body))
        first = read_answer(sock)
        assert first.status == 200 and not first.closes
        started = time.monotonic()
        sock.sendall(head("POST", "/webhooks/shopify", {**JSON, "content-length": "100"}))
        answer = read_answer(sock)
        assert answer.status == 408
        assert 1.45 <= time.monotonic() - started < 2.0
        assert closed_by_server(sock)


def test_feed_bodies_stalled_oversize_or_unread_close_the_connection_and_are_counted(
    configured: Settings,
) -> None:
    service = build_service(configured)
    feed = {**bearer("acme-shopify")}
    with running(service) as port:
        with connect(port) as sock:
            started = time.monotonic()
            sock.sendall(
                head("POST", "/events/touchpoints", {**feed, "content-length": "100"}) + b'{"tou'
            )
            answer = read_answer(sock)
            assert answer.status == 408 and answer.closes
            assert answer.json()["reason"] == "timeout"
            assert time.monotonic() - started < configured.ingest_body_timeout_seconds + 0.5
            assert closed_by_server(sock)
        with connect(port) as sock:
            sock.sendall(
                head("POST", "/events/touchpoints", {**feed, "content-length": str(HUGE)}) + b"{"
            )
            answer = read_answer(sock)
            assert answer.status == 413 and answer.closes
            assert closed_by_server(sock)
        with connect(port) as sock:  # refused before its body is read: closed as well
            sock.sendall(head("POST", "/events/touchpoints", {**JSON, "content-length": str(HUGE)}))
            answer = read_answer(sock)
            assert answer.status == 401 and answer.closes
            assert closed_by_server(sock)
        with connect(port) as sock:  # leaves mid-body: no answer, but counted
            sock.sendall(head("POST", "/events/touchpoints", {**feed, "content-length": "100"}))
        deadline = time.monotonic() + 5
        while feed_requests(service, "abandoned", "client_disconnected") == 0:
            assert time.monotonic() < deadline, "the disconnect was not counted"
            time.sleep(0.02)
    assert feed_requests(service, "rejected", "timeout") == 1
    assert feed_requests(service, "rejected", "too_large") == 1
    assert feed_requests(service, "rejected", "missing_key") == 1


def test_answers_given_after_the_whole_body_keep_the_connection(
    settings: Settings, raw_topic: None
) -> None:
    service = make_service(settings)
    body = b'{"id": 3}'
    forged = {**shopify_headers(body), "x-shopify-hmac-sha256": "Zm9yZ2Vk"}
    with running(service) as port, connect(port) as sock:
        sock.sendall(request("POST", "/webhooks/shopify", forged, body))
        refused = read_answer(sock)
        assert refused.status == 401 and not refused.closes
        sock.sendall(delivery(body))
        accepted = read_answer(sock)
        assert accepted.status == 200 and not accepted.closes
        assert not closed_by_server(sock, within=0.2)


# --- every answer is counted ------------------------------------------------------------------


class ExplodingStores(StoreRegistry):
    """The test stores, except that looking up ``explode.myshopify.com`` raises (a stand-in for
    whatever fault the catch-all exists for)."""

    def lookup(self, platform: str, identity: str) -> Store | None:
        if identity == "explode.myshopify.com":
            raise RuntimeError("the registry exploded")
        return super().lookup(platform, identity)


def test_every_webhook_answer_is_counted_once(settings: Settings, raw_topic: None) -> None:
    body = b'{"id": 4}'
    forged = {**shopify_headers(body), "x-shopify-hmac-sha256": "Zm9yZ2Vk"}
    as_text = {**shopify_headers(body), "content-type": "text/plain"}
    [dead_port] = free_ports(1)  # no broker there: a verified delivery gets 503
    dead_broker = Settings(kafka_bootstrap_servers=f"127.0.0.1:{dead_port}")
    service = make_service(settings, stores=ExplodingStores(make_registry()), body_timeout=0.3)
    unacked = make_service(dead_broker, ack_timeout=0.3)
    expected = {
        ("accepted", "", "orders/create"): 200,
        ("ignored", "ping", "ping"): 200,
        ("rejected", "bad_signature", "unverified"): 401,
        ("rejected", "method_not_allowed", "unverified"): 405,
        ("rejected", "timeout", "unverified"): 408,
        ("rejected", "too_large", "unverified"): 413,
        ("rejected", "unsupported_media_type", "unverified"): 415,
        ("error", "internal", "unverified"): 500,
    }
    requests = {
        ("accepted", "", "orders/create"): delivery(body),
        ("ignored", "ping", "ping"): request(
            "POST",
            "/webhooks/woocommerce",
            {"content-type": "application/x-www-form-urlencoded"},
            b"webhook_id=42",
        ),
        ("rejected", "bad_signature", "unverified"): request(
            "POST", "/webhooks/shopify", forged, body
        ),
        ("rejected", "method_not_allowed", "unverified"): request("GET", "/webhooks/shopify", {}),
        ("rejected", "timeout", "unverified"): head(
            "POST", "/webhooks/shopify", {**JSON, "content-length": "100"}
        ),
        ("rejected", "too_large", "unverified"): head(
            "POST", "/webhooks/shopify", {**JSON, "content-length": str(HUGE)}
        ),
        ("rejected", "unsupported_media_type", "unverified"): request(
            "POST", "/webhooks/shopify", as_text, body
        ),
        ("error", "internal", "unverified"): delivery(body, shop="explode.myshopify.com"),
    }
    with ExitStack() as stack:
        port = stack.enter_context(running(service))
        for key, raw in requests.items():
            with connect(port) as sock:
                sock.sendall(raw)
                answer = read_answer(sock)
                assert answer.status == expected[key], (key, answer)
        with connect(port) as sock:  # leaves mid-body: no answer, but an outcome
            sock.sendall(
                head("POST", "/webhooks/shopify", {**JSON, "content-length": "100"}) + b"x"
            )
        deadline = time.monotonic() + 5
        while deliveries(service, "abandoned", "client_disconnected") == 0:
            assert time.monotonic() < deadline, "the disconnect was not counted"
            time.sleep(0.02)
        unacked_port = stack.enter_context(running(unacked))
        with connect(unacked_port) as sock:
            sock.sendall(delivery(body))
            assert read_answer(sock).status == 503

    platform_of = {("ignored", "ping", "ping"): "woocommerce"}
    for outcome, reason, topic in expected:
        platform = platform_of.get((outcome, reason, topic), "shopify")
        counted = deliveries(service, outcome, reason, topic=topic, platform=platform)
        assert counted == 1, (outcome, reason, topic)
    assert deliveries(service, "abandoned", "client_disconnected") == 1
    assert deliveries(unacked, "unavailable", "kafka", topic="orders/create") == 1
    # Every delivery received has exactly one outcome.
    for svc in (service, unacked):
        for platform in ("shopify", "woocommerce"):
            received = svc.metrics.registry.get_sample_value(
                "revloop_ingest_deliveries_received_total", {"platform": platform}
            )
            outcomes = sum(
                sample.value
                for metric in svc.metrics.registry.collect()
                if metric.name == "revloop_ingest_deliveries"
                for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels["platform"] == platform
            )
            assert (received or 0.0) == outcomes, (platform, received, outcomes)


# --- the setting ------------------------------------------------------------------------------


def test_the_body_timeout_setting_is_read_from_the_environment_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REVLOOP_INGEST_BODY_TIMEOUT_SECONDS", raising=False)
    assert Settings().ingest_body_timeout_seconds == 10.0
    monkeypatch.setenv("REVLOOP_INGEST_BODY_TIMEOUT_SECONDS", "2.5")
    assert Settings().ingest_body_timeout_seconds == 2.5
    for bad in ("0", "-1", "nan", "inf"):
        monkeypatch.setenv("REVLOOP_INGEST_BODY_TIMEOUT_SECONDS", bad)
        with pytest.raises(ValidationError, match="ingest_body_timeout_seconds"):
            Settings()
