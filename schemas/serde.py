"""Avro in the Confluent wire format: magic byte 0, a big-endian 4-byte schema id, the Avro body.

Any Confluent-compatible consumer can read what revloop writes, given the same registry.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.types import Schema

from schemas.registry import AVRO_DIR, Registry, SchemaError, load_definition, parse

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


class SerdeError(Exception):
    """A message could not be encoded or decoded; the message says which and why."""


@dataclass(frozen=True)
class Decoded:
    record_name: str
    schema_id: int
    value: dict[str, Any]


@dataclass(frozen=True)
class _Writer:
    schema_id: int
    parsed: Schema


class AvroSerde:
    """Encodes events by record name and decodes any registered schema id.

    Decoding uses the writer's schema (looked up by id), resolved into the reader's schema when
    the caller holds a different version: that is how old consumers read new data.
    """

    def __init__(self, registry: Registry, avro_dir: Path = AVRO_DIR) -> None:
        self._registry = registry
        self._avro_dir = avro_dir
        self._writers: dict[str, _Writer] = {}
        self._parsed_by_id: dict[int, Schema] = {}

    def writer(self, record_name: str) -> _Writer:
        writer = self._writers.get(record_name)
        if writer is None:
            definition = load_definition(record_name, self._avro_dir)
            writer = _Writer(self._registry.id_for(record_name, definition), parse(definition))
            self._writers[record_name] = writer
        return writer

    def encode(self, record_name: str, value: Mapping[str, Any]) -> bytes:
        writer = self.writer(record_name)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, writer.schema_id))
        try:
            fastavro.schemaless_writer(buffer, writer.parsed, value, strict=True)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerdeError(f"{record_name} does not fit its schema: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes, reader: dict[str, Any] | None = None) -> Decoded:
        if len(data) < _HEADER.size:
            raise SerdeError(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise SerdeError(f"unknown magic byte {magic}; not Confluent wire format")
        writer = self._parsed_writer(schema_id)
        reader_parsed = parse(reader) if reader is not None else None
        try:
            value = fastavro.schemaless_reader(
                io.BytesIO(data[_HEADER.size :]), writer, reader_parsed
            )
        except Exception as exc:  # fastavro raises a zoo of types on corrupt input
            raise SerdeError(f"schema id {schema_id}: body does not decode: {exc}") from exc
        if not isinstance(value, dict):
            raise SerdeError(f"schema id {schema_id} is not a record schema")
        name = str(writer["name"]) if isinstance(writer, dict) else "?"
        return Decoded(record_name=name, schema_id=schema_id, value=value)

    def _parsed_writer(self, schema_id: int) -> Schema:
        parsed = self._parsed_by_id.get(schema_id)
        if parsed is None:
            try:
                parsed = parse(self._registry.definition_of(schema_id))
            except SchemaError as exc:
                raise SerdeError(str(exc)) from exc
            self._parsed_by_id[schema_id] = parsed
        return parsed
