"""What a notification URL may be: https to a public host only (http to loopback only where the
deployment allows it); and the call goes where the check looked, whatever DNS says next."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse

from connectors.notifications import Target, UnsafeUrl, checked_url, notify
from emulators.server import serve
from revloop.crypto import Secret
from revloop.settings import Settings
from revloop.stores import Connection


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://203.0.113.9/hook", "must be https"),
        ("https://127.0.0.1/hook", "inside the network"),
        ("https://[::1]:8443/hook", "inside the network"),
        ("https://10.1.2.3/hook", "inside the network"),
        ("https://169.254.169.254/latest/meta-data", "inside the network"),
        ("https://192.168.0.10/hook", "inside the network"),
        ("https://user:pw@8.8.8.8/hook", "plain https URL"),
        ("https://8.8.8.8/hook#x", "plain https URL"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
        ("http://127.0.0.1:9/hook", "must be https"),
    ],
)
def test_an_unsafe_notification_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        checked_url(url, allow_loopback=False)


def test_a_public_https_url_or_an_allowed_loopback_is_called() -> None:
    assert checked_url("https://8.8.8.8/hooks/revloop?v=1", allow_loopback=False) == Target(
        origin="https://8.8.8.8:443",
        path="/hooks/revloop?v=1",
        host="8.8.8.8",
        server_name="8.8.8.8",
    )
    assert checked_url("http://127.0.0.1:8123/h", allow_loopback=True) == Target(
        origin="http://127.0.0.1:8123", path="/h", host="127.0.0.1:8123", server_name="127.0.0.1"
    )
    assert checked_url("http://[::1]:8123/h", allow_loopback=True).origin == "http://[::1]:8123"
    # Allowing loopback allows nothing else inside the network.
    with pytest.raises(UnsafeUrl, match="must be https"):
        checked_url("http://10.0.0.5/h", allow_loopback=True)


# --- the call goes to the address that was checked -------------------------------------------

SECRET = "whsec-pinned"
ACTION: dict[str, Any] = {
    "envelope": {
        "event_id": "act-1",
        "store_id": "acme",
        "occurred_at": dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
    },
    "action": "pause",
    "product_id": "p1",
    "variant_id": "v1",
    "available": 0,
    "campaigns": ["c1"],
}


class Receiver:
    """The merchant's endpoint: keeps the Host header of each call, answers 200."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.hosts.append(Request(scope, receive).headers["host"])
        await JSONResponse({"ok": True})(scope, receive, send)


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], list[str]]:
    """A hostile name server (the system resolver answers for it): ``name`` resolves to
    127.0.0.1 once, to ``then`` ever after. Returns the list of names looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def arm(name: str, then: str) -> list[str]:
        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != name:
                return real(host, port, *args, **kwargs)
            asked.append(host)
            address = "127.0.0.1" if len(asked) == 1 else then
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return asked

    return arm


def settings_for_notify() -> Settings:
    return Settings(
        notify_allow_loopback=True, connect_retry_attempts=1, connect_backoff_cap_seconds=0.1
    )


def connection_to(url: str) -> Connection:
    return Connection("notify", url, Secret(b'{"secret": "' + SECRET.encode() + b'"}'))


def test_a_name_that_rebinds_after_the_check_is_not_followed(
    rebinding_dns: Callable[[str, str], list[str]],
) -> None:
    receiver = Receiver()
    with serve(receiver) as running:
        asked = rebinding_dns("merchant.test", "10.9.9.9")
        url = f"http://merchant.test:{running.port}/hooks"
        why, tries = notify(settings_for_notify(), "acme", connection_to(url), ACTION, "paused", [])
    assert why is None, why
    assert [t.outcome for t in tries] == ["ok"]
    assert receiver.hosts == [f"merchant.test:{running.port}"]
    assert asked == ["merchant.test"]  # once, by the check; the client resolved nothing


def certificate_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) with the server's certificate for
    ``name`` only."""
    now = dt.datetime.now(dt.UTC)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revloop test CA")])
    ca = issue("revloop test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue(name, key, ca_name, ca_key, ca=False)
    files = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def https_receiver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Any]]:
    """Serves a Receiver over TLS with a certificate for the name given, trusted by httpx."""
    served: list[Any] = []

    def start(name: str) -> Any:
        ca, cert, key = certificate_files(tmp_path, name)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        receiver = Receiver()
        context = serve(receiver, tls=(cert, key))
        running = context.__enter__()
        served.append(context)
        return receiver, running

    yield start
    for context in served:
        context.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("certified", "delivered"), [("merchant.test", True), ("someone-else.test", False)]
)
def test_tls_checks_the_certificate_against_the_name_not_the_pinned_address(
    rebinding_dns: Callable[[str, str], list[str]],
    https_receiver: Callable[[str], Any],
    certified: str,
    delivered: bool,
) -> None:
    receiver, running = https_receiver(certified)
    rebinding_dns("merchant.test", "10.9.9.9")
    url = f"https://merchant.test:{running.port}/hooks"
    why, tries = notify(settings_for_notify(), "acme", connection_to(url), ACTION, "paused", [])
    if delivered:
        assert why is None, why
        assert [t.outcome for t in tries] == ["ok"]
        assert receiver.hosts == [f"merchant.test:{running.port}"]
    else:  # a certificate for another name: refused before anything is sent
        assert why is not None and "ConnectError" in why
        assert [t.outcome for t in tries] == ["failed"]
        assert receiver.hosts == []
