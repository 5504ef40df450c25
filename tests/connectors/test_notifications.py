"""What a notification URL may be: https to a public host only (http to loopback only where the
deployment allows it)."""

from __future__ import annotations

import pytest

from connectors.notifications import UnsafeUrl, checked_url


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
    assert checked_url("https://8.8.8.8/hooks/revloop?v=1", allow_loopback=False) == (
        "https://8.8.8.8",
        "/hooks/revloop?v=1",
    )
    assert checked_url("http://127.0.0.1:8123/h", allow_loopback=True) == (
        "http://127.0.0.1:8123",
        "/h",
    )
    # Allowing loopback allows nothing else inside the network.
    with pytest.raises(UnsafeUrl, match="must be https"):
        checked_url("http://10.0.0.5/h", allow_loopback=True)
