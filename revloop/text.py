"""Text safety: the one place that decides what happens to platform text that is not Unicode.

JSON lets a body spell a lone UTF-16 surrogate (``"\\ud800"``). Python decodes it into a ``str``
that UTF-8 cannot encode, so it would fail wherever it becomes a Kafka key, an Avro string or a
log line. The rules (docs/normalizer.md, "Text that is not Unicode"):

- **Ingest** never refuses a genuine delivery for its text: the raw body is kept as signed, and
  the few strings ingest copies out of it into the raw record (BigCommerce's ``scope``) pass
  through :func:`escaped`, which spells a lone surrogate as the ASCII text ``\\ud800``.
- **The normalizer** checks the whole decoded body once, before any platform code runs
  (:func:`invalid_text_at`); a body holding such a string becomes a dead letter with reason
  ``invalid_unicode`` and the JSON path of the first bad string (a path names keys, never
  values). Ids are never "repaired": two different ids must never become one.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE_UTF8 = re.compile(rb"\xed[\xa0-\xbf]")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

__all__ = ["escaped", "invalid_text_at", "is_unicode", "may_hold_surrogates"]


def is_unicode(value: str) -> bool:
    """Whether ``value`` is valid Unicode text, i.e. UTF-8 can encode it (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(value: str) -> str:
    """``value`` with each lone surrogate spelt as ``\\udXXX``; valid text comes back as is."""
    if is_unicode(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_text_at(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first key or string in a decoded JSON value that is not valid
    Unicode, or None when every one is."""
    if isinstance(value, str):
        return None if is_unicode(value) else path
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(key, str) and not is_unicode(key):
                return f"{path}.<key>"
            found = invalid_text_at(inner, f"{path}.{_path_part(key)}")
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for index, inner in enumerate(value):
            found = invalid_text_at(inner, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _path_part(key: object) -> str:
    # Keys are field names in every payload revloop reads; anything else is not echoed.
    return key if isinstance(key, str) and _FIELD_NAME.fullmatch(key) else "<key>"


def may_hold_surrogates(body: bytes) -> bool:
    """Cheap pre-check on raw JSON bytes. A surrogate reaches a decoded string two ways: as a
    ``\\u`` escape, or as its (invalid) UTF-8 bytes ``ED A0..BF xx``, which ``json.loads``
    passes through for bytes input (it decodes them with ``surrogatepass``)."""
    return b"\\u" in body or (not body.isascii() and _SURROGATE_UTF8.search(body) is not None)
