"""Deterministic event ids: the same source fact always gets the same id, on every replay."""

from __future__ import annotations

import hashlib
import uuid

# Fixed forever: event ids derived from it are part of the data.
EVENT_ID_NAMESPACE = uuid.UUID("5b0e4c8e-2f61-4a59-9a57-2d3c6f1e7a10")

_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def deterministic_id(name: str) -> str:
    """``str(uuid.uuid5(EVENT_ID_NAMESPACE, name))``, computed without building UUID objects:
    every delivery and every derived event gets one, and ``uuid.uuid5`` costs five times as much."""
    # SHA-1 is what UUIDv5 is defined with; it names events, it protects nothing.
    # surrogatepass: a verified JSON body may hold a lone surrogate escape in an id field, which
    # UTF-8 cannot encode (uuid.uuid5 raises); the id must still be deterministic, not a 500.
    sha1 = hashlib.sha1(
        _NAMESPACE_BYTES + name.encode("utf-8", "surrogatepass"), usedforsecurity=False
    )
    digest = bytearray(sha1.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
