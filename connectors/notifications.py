"""The merchant hears of each pause and resume (docs/connectors.md, "Notifications").

A store's ``notify`` connection names a URL and a secret. For each breaker action the executor
carried out, it POSTs a JSON body signed as Standard Webhooks are (``webhook-id`` = the action
id, so a receiver can drop a repeat; ``webhook-timestamp``; ``webhook-signature`` = ``v1,`` +
base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``), retried like every platform call.

The URL is checked each time it is called, since it becomes a request from inside revloop:
https only, no user info, and a host whose every address is public (no loopback, private,
link-local or reserved address: nothing inside the network can be reached through it). Where
the deployment allows it (tests, the demo), http to a loopback address passes. The call goes
to an address that was checked, not to a second DNS answer (rebinding); TLS still verifies the
certificate against the host's name.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from connectors.http import Answer, ApiClient, ApiError
from connectors.store_apis.connect import retry_policy
from platforms.webhooks import standard_webhook_headers
from revloop.settings import Settings
from revloop.stores import Connection


class UnsafeUrl(ValueError):
    """A notification URL revloop will not call."""


@dataclass(frozen=True)
class Target:
    """Where a notification goes, pinned to an address that passed the check."""

    origin: str
    """``scheme://address:port``: the HTTP client connects here and resolves nothing."""
    path: str
    """The path and query."""
    host: str
    """The ``Host`` header, as the URL wrote it (with its port, if any)."""
    server_name: str
    """The name TLS sends (SNI) and checks the certificate against."""


def checked_url(url: str, *, allow_loopback: bool) -> Target:
    """The target of a notification URL that may be called, or UnsafeUrl saying why."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.username or parts.password or parts.fragment or not host:
        raise UnsafeUrl("a notification URL is a plain https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        raise UnsafeUrl(f"{host} does not resolve") from None
    # getaddrinfo's order is the system's preference; the first is what a client would try.
    addresses = [ipaddress.ip_address(str(info[4][0])) for info in found]
    loopback = all(a.is_loopback for a in addresses)
    if parts.scheme != "https" and not (allow_loopback and loopback and parts.scheme == "http"):
        raise UnsafeUrl("a notification URL must be https")
    if not all(a.is_global for a in addresses) and not (allow_loopback and loopback):
        raise UnsafeUrl(f"{host} resolves to an address inside the network")
    pinned = addresses[0]
    address = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    return Target(
        origin=f"{parts.scheme}://{address}:{port}",
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host=parts.netloc,
        server_name=host,
    )


def notification(action: Mapping[str, Any], outcome: str, changes: Sequence[str]) -> bytes:
    """The body the merchant receives: what the breaker decided and what revloop changed."""
    envelope = action["envelope"]
    body = {
        "type": f"ads.{'paused' if action['action'] == 'pause' else 'resumed'}",
        "action_id": envelope["event_id"],
        "store_id": envelope["store_id"],
        "product_id": action["product_id"],
        "variant_id": action["variant_id"],
        "available": action["available"],
        "decided_at": envelope["occurred_at"].isoformat(),
        "campaigns": action.get("campaigns") or [],
        "changes": list(changes),
        "outcome": outcome,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def notify(
    settings: Settings,
    store_id: str,
    connection: Connection,
    action: Mapping[str, Any],
    outcome: str,
    changes: Sequence[str],
) -> tuple[str | None, list[Answer]]:
    """Send the notification: (why it failed or None, every try made)."""
    try:
        target = checked_url(connection.account, allow_loopback=settings.notify_allow_loopback)
    except UnsafeUrl as exc:
        return str(exc), []
    body = notification(action, outcome, changes)
    headers = standard_webhook_headers(
        body,
        connection.fields()["secret"].encode(),
        webhook_id=action["envelope"]["event_id"],
        sent_at=datetime.now(UTC),
    )
    client = ApiClient("notify", store_id, target.origin, policy=retry_policy(settings))
    client.journal = []
    try:
        client.request(
            "POST",
            target.path,
            content=body,
            headers={**headers, "Host": target.host},
            extensions={"sni_hostname": target.server_name},
            call=f"POST {target.path.split('?')[0]}",
        )
    except ApiError as exc:
        return str(exc), client.take_journal()
    finally:
        client.close()
    return None, client.take_journal()
