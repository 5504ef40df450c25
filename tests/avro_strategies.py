"""Hypothesis strategies that draw valid values for any Avro schema, so every event type is
exercised without hand-written samples that go stale when a schema grows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

_MIN_TS = datetime(1990, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(2100, 1, 1)
_LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_INT = st.integers(min_value=-(2**31), max_value=2**31 - 1)
_TEXT = st.text(max_size=24)


def for_schema(schema: Any, names: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    names = {} if names is None else names
    if isinstance(schema, list):
        return st.one_of([for_schema(branch, names) for branch in schema])
    if isinstance(schema, str):
        return _primitive(schema) if schema in _PRIMITIVE else for_schema(names[schema], names)
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-micros":
        return st.datetimes(
            min_value=_MIN_TS.replace(tzinfo=None), max_value=_MAX_TS, timezones=st.just(UTC)
        )
    if schema.get("logicalType") == "date":
        return st.dates()
    if kind == "record":
        names[schema["name"]] = schema
        fields = {f["name"]: for_schema(f["type"], names) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "enum":
        names[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(for_schema(schema["items"], names), max_size=3)
    if kind == "map":
        return st.dictionaries(_TEXT, for_schema(schema["values"], names), max_size=3)
    return _primitive(kind)


_PRIMITIVE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": _INT,
    "long": _LONG,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=64),
    "string": _TEXT,
}


def _primitive(name: str) -> st.SearchStrategy[Any]:
    return _PRIMITIVE[name]
