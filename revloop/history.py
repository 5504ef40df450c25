"""Reading a topic's history by time: the seek plan (pure), a batched reader, the decoding of
Confluent-wire-format Avro into each record type's current schema, and the two export formats
(docs/ops.md, "Replay").

- **Range.** ``[from, to)`` by record timestamp. Each partition starts at the first offset whose
  timestamp is at or after ``from`` and stops at the first one at or after ``to``
  (``offsets_for_times``), or at the high watermark read when the plan was made: records written
  after the export began are never chased. Timestamps within a partition need not grow, so a
  record inside the offset range whose own timestamp falls outside ``[from, to)`` is skipped.
- **Avro OCF.** The writer schema embedded is the topic's record schema, or, for a topic carrying
  several record types (products: upsert and delete), the union of them in catalogue order: one
  file keeps the topic's order. Every record is resolved into its type's current schema, so a
  file never mixes versions.
- **JSON Lines.** One object per record: ``topic``, ``partition``, ``offset``, ``timestamp``,
  ``key``, ``record``, ``schema_id``, ``value``. Timestamps (the record's and Avro
  ``timestamp-micros`` fields) are RFC 3339 in UTC with microseconds
  (``2026-12-01T09:00:00.000000Z``); dates are ISO dates; bytes are standard base64. The
  ``record`` name says which schema turns them back (:func:`revive`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import operator
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import fastavro
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from fastavro.types import Schema

from schemas.registry import Registry, SchemaError, load_definition, parse
from schemas.serde import MAGIC_BYTE, SerdeError

_HEADER = struct.Struct(">bI")
CODECS = ("deflate", "null")
"""Avro OCF codecs the export writes: deflate (level 1) is about a third of the size of null."""
BATCH = 10_000
"""Messages asked of librdkafka per ``consume`` call: the per-call cost is paid once per batch."""

PartitionRange = tuple[int, int]
"""[start, end) offsets of one partition."""


# -- the seek plan -----------------------------------------------------------------------------


def to_millis(moment: datetime) -> int:
    """Kafka's timestamps are Unix milliseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def seek_plan(
    high: Mapping[int, int], from_offsets: Mapping[int, int], to_offsets: Mapping[int, int]
) -> dict[int, PartitionRange]:
    """Each partition's [start, end) given its high watermark and the offsets
    ``offsets_for_times`` found for ``from`` and ``to`` (-1 or missing: no record that late, so
    the high watermark). Empty ranges are left out."""
    plan = {}
    for partition, end_of_log in high.items():
        start = _or_end(from_offsets.get(partition, -1), end_of_log)
        end = _or_end(to_offsets.get(partition, -1), end_of_log)
        if end > start:
            plan[partition] = (start, end)
    return plan


def _or_end(offset: int, end_of_log: int) -> int:
    return end_of_log if offset < 0 else min(offset, end_of_log)


def plan_range(
    consumer: Consumer, topic: str, start: datetime, end: datetime, timeout: float = 10.0
) -> dict[int, PartitionRange]:
    """The seek plan of ``topic`` for ``[start, end)``, asked of the broker."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
    if metadata.error is not None:
        raise LookupError(f"{topic}: {metadata.error.str()}")
    partitions = sorted(metadata.partitions)
    high = {
        p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1])
        for p in partitions
    }

    def at(moment: datetime) -> dict[int, int]:
        asked = [TopicPartition(topic, p, to_millis(moment)) for p in partitions]
        found = consumer.offsets_for_times(asked, timeout=timeout)
        return {tp.partition: tp.offset for tp in found}

    return seek_plan(high, at(start), at(end))


# -- reading -----------------------------------------------------------------------------------


def read_planned(
    consumer: Consumer,
    topic: str,
    plan: Mapping[int, PartitionRange],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    poll_timeout: float = 0.1,
) -> Iterator[list[Message]]:
    """The records of ``plan`` in batches (as ``consume`` returns them, errors and records past a
    partition's end dropped; with ``start_ms``/``end_ms`` also records stamped outside them)."""
    ends = {p: end for p, (_, end) in plan.items()}
    for batch in planned_batches(consumer, topic, plan, poll_timeout):
        yield in_range(batch, ends, start_ms, end_ms)


def in_range(
    messages: Sequence[Message],
    ends: Mapping[int, int],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[Message]:
    """``messages`` without errors, records at or past their partition's end, and records
    stamped outside ``[start_ms, end_ms)``."""
    low = -(2**63) if start_ms is None else start_ms
    high = 2**63 if end_ms is None else end_ms
    return [
        m
        for m in messages
        if m.error() is None
        and (m.offset() or 0) < ends.get(m.partition() or 0, -1)
        and low <= m.timestamp()[1] < high
    ]


def planned_batches(
    consumer: Consumer,
    topic: str,
    plan: Mapping[int, PartitionRange],
    poll_timeout: float = 0.1,
) -> Iterator[list[Message]]:
    """What ``consume`` returns, unfiltered, until every partition of ``plan`` reached its end.
    A partition is done once the consumer's position reaches its end: transaction markers take
    offsets but are never returned."""
    wanted = dict(plan)
    if not wanted:
        return
    consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in wanted.items()])
    reached = {p: start for p, (start, _) in wanted.items()}
    while wanted:
        # librdkafka waits for a full batch until the timeout: take what is queued without
        # waiting, and wait only for the first record when nothing is.
        left = sum(wanted[p][1] - reached[p] for p in wanted)
        messages = consumer.consume(max(1, min(BATCH, left)), timeout=0)
        if not messages:
            messages = consumer.consume(1, timeout=poll_timeout)
        if messages:
            yield messages
        for tp in consumer.position([TopicPartition(topic, p) for p in wanted]):
            reached[tp.partition] = max(reached[tp.partition], tp.offset)
            if tp.offset >= wanted[tp.partition][1]:
                del wanted[tp.partition]


# -- decoding ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicSchemas:
    """The record types of a topic in their current versions, and the OCF writer schema."""

    names: tuple[str, ...]
    definitions: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, record_names: Sequence[str]) -> TopicSchemas:
        return cls(tuple(record_names), tuple(load_definition(n) for n in record_names))

    @property
    def writer_schema(self) -> dict[str, Any] | list[dict[str, Any]]:
        """One record type: its schema; several: their union (in catalogue order)."""
        if len(self.definitions) == 1:
            return self.definitions[0]
        defined: set[str] = set()
        return [_define_once(d, None, defined) for d in self.definitions]

    @property
    def is_union(self) -> bool:
        return len(self.definitions) > 1


def _define_once(schema: Any, namespace: str | None, defined: set[str]) -> Any:
    """``schema`` with each named type it defines again (records share Envelope, Money…)
    replaced by a reference: a union of self-contained records is otherwise invalid Avro."""
    if isinstance(schema, list):
        return [_define_once(s, namespace, defined) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
        name = str(schema["name"])
        namespace = schema.get("namespace", namespace)
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        if full in defined:
            return full
        defined.add(full)
    copy = dict(schema)
    if "fields" in copy:
        copy["fields"] = [
            {**f, "type": _define_once(f["type"], namespace, defined)} for f in copy["fields"]
        ]
    for inner in ("items", "values"):
        if inner in copy:
            copy[inner] = _define_once(copy[inner], namespace, defined)
    if isinstance(copy.get("type"), (dict, list)):
        copy["type"] = _define_once(copy["type"], namespace, defined)
    return copy


class Decoder:
    """Confluent-wire-format Avro (``schemas.serde``) to values of each type's current schema.
    Parsed schemas are cached per writer schema id: the hot loop only reads."""

    def __init__(self, registry: Registry, schemas: TopicSchemas) -> None:
        self.registry = registry
        self._readers = {
            name: parse(definition)
            for name, definition in zip(schemas.names, schemas.definitions, strict=True)
        }
        self._definitions = dict(zip(schemas.names, schemas.definitions, strict=True))
        self._by_id: dict[int, tuple[str, Schema, Schema | None]] = {}

    def decode(self, data: bytes) -> tuple[str, int, dict[str, Any]]:
        """(record full name, writer schema id, value)."""
        if len(data) < _HEADER.size:
            raise SerdeError(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise SerdeError(f"unknown magic byte {magic}; not Confluent wire format")
        cached = self._by_id.get(schema_id)
        if cached is None:
            cached = self._schemas_of(schema_id)
        name, writer, reader = cached
        stream = io.BytesIO(data)
        stream.seek(_HEADER.size)
        value = fastavro.schemaless_reader(stream, writer, reader)
        return name, schema_id, value  # type: ignore[return-value]

    def _schemas_of(self, schema_id: int) -> tuple[str, Schema, Schema | None]:
        definition = self.registry.definition_of(schema_id)
        name = str(definition["name"])
        if "." not in name and definition.get("namespace"):
            name = f"{definition['namespace']}.{name}"
        reader = self._readers.get(name)
        if reader is None:
            raise SerdeError(f"schema id {schema_id} ({name}) is not a record type of this topic")
        writer = parse(definition)
        # The same version as the reader: no resolution needed, which is cheaper.
        cached = (name, writer, None if definition == self._definitions[name] else reader)
        self._by_id[schema_id] = cached
        return cached


# -- JSON Lines --------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    """UTC with microseconds: sorts as text and loses nothing of ``timestamp-micros``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_default(thing: object) -> object:
    if isinstance(thing, datetime):
        return rfc3339(thing)
    if isinstance(thing, date):
        return thing.isoformat()
    if isinstance(thing, bytes):
        return base64.b64encode(thing).decode("ascii")
    raise TypeError(f"{type(thing).__name__} has no JSON form")


def json_line(
    topic: str,
    message: Message,
    record: str,
    schema_id: int,
    value: Mapping[str, Any],
) -> str:
    stamp = message.timestamp()[1]
    key = message.key()
    document = {
        "topic": topic,
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": rfc3339(datetime.fromtimestamp(stamp / 1000, UTC)),
        "key": None if key is None else key.decode("utf-8", "backslashreplace"),
        "record": record,
        "schema_id": schema_id,
        "value": value,
    }
    return json.dumps(document, default=_json_default, separators=(",", ":"))


def revive(value: Any, schema: Any) -> Any:
    """A JSON Lines ``value`` back to what Avro decoding gives, walking ``schema`` (a parsed or
    plain definition of the line's ``record``): base64 to bytes, text to datetimes and dates."""
    named: dict[str, Any] = {}
    return _revive(value, schema, named)


def _revive(value: Any, schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str):
        if schema in named:
            return _revive(value, named[schema], named)
        return base64.b64decode(value) if schema == "bytes" and value is not None else value
    if isinstance(schema, list):
        if value is None and "null" in schema:
            return None
        branches = [b for b in schema if b != "null"]
        if len(branches) != 1:
            raise ValueError("revive handles unions of null and one type only")
        return _revive(value, branches[0], named)
    kind = schema.get("type")
    if "name" in schema:
        named[schema["name"]] = schema
        if "namespace" in schema and "." not in schema["name"]:
            named[f"{schema['namespace']}.{schema['name']}"] = schema
    logical = schema.get("logicalType")
    if logical in ("timestamp-micros", "timestamp-millis"):
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if logical == "date":
        return date.fromisoformat(value)
    if kind == "record":
        return {f["name"]: _revive(value[f["name"]], f["type"], named) for f in schema["fields"]}
    if kind == "array":
        return [_revive(v, schema["items"], named) for v in value]
    if kind == "map":
        return {k: _revive(v, schema["values"], named) for k, v in value.items()}
    if isinstance(kind, (dict, list)) or kind in named or kind == "bytes":
        return _revive(value, kind, named)
    return value


# -- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    records: int
    skipped: int
    """Records that did not decode (counted, never written)."""


Progress = Callable[[int], None]
"""Called with the number of records just read."""


def export(
    consumer: Consumer,
    topic: str,
    plan: Mapping[int, PartitionRange],
    decoder: Decoder,
    schemas: TopicSchemas,
    out: IO[bytes],
    *,
    jsonl: bool,
    codec: str = "deflate",
    start_ms: int | None = None,
    end_ms: int | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the planned records of ``topic`` to ``out`` as Avro OCF or JSON Lines."""
    counts = {"records": 0, "skipped": 0}

    def decoded() -> Iterator[tuple[Message, str, int, dict[str, Any]]]:
        decode = decoder.decode
        for batch in read_planned(consumer, topic, plan, start_ms=start_ms, end_ms=end_ms):
            for message in batch:
                try:
                    record, schema_id, value = decode(message.value() or b"")
                except (SerdeError, ValueError, EOFError, LookupError):
                    counts["skipped"] += 1
                    continue
                counts["records"] += 1
                yield message, record, schema_id, value
            if progress is not None:
                progress(len(batch))

    if jsonl:
        lines: list[str] = []
        for message, record, schema_id, value in decoded():
            lines.append(json_line(topic, message, record, schema_id, value))
            if len(lines) >= BATCH:
                out.write(("\n".join(lines) + "\n").encode())
                lines.clear()
        if lines:
            out.write(("\n".join(lines) + "\n").encode())
        return ExportResult(counts["records"], counts["skipped"])
    container = Container(out, schemas, decoder, {"revloop.topic": topic}, codec)
    ends = {p: end for p, (_, end) in plan.items()}
    try:
        for batch in planned_batches(consumer, topic, plan):
            container.add_all(batch, ends, start_ms, end_ms)
            if progress is not None:
                progress(len(batch))
    finally:
        container.close()
    return ExportResult(container.records, container.skipped)


class Container:
    """An Avro Object Container File of a topic's records, written block by block.

    The body of a Confluent-wire-format record is the Avro binary encoding of its value in the
    writer's schema; when that schema is the current version of its type, which is the common
    case, the body is copied into the block as it is (preceded by its union branch for a
    multi-type topic): no decoding, no encoding. A record of another version is decoded,
    resolved into the current version and encoded again. A record whose header names no schema
    of the topic is skipped and counted. Bodies are trusted as their producer's serde checked
    them (``strict=True``); reading the file back decodes every record.
    """

    def __init__(
        self,
        out: IO[bytes],
        schemas: TopicSchemas,
        decoder: Decoder,
        metadata: Mapping[str, str],
        codec: str = "deflate",
        compression_level: int = 1,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec {codec!r}: one of {', '.join(CODECS)}")
        self._codec = codec
        self._out = out
        self._decoder = decoder
        self._level = compression_level
        self._sync = os.urandom(16)
        self._parsed = {
            name: parse(definition)
            for name, definition in zip(schemas.names, schemas.definitions, strict=True)
        }
        union = schemas.is_union
        self._branch = {
            name: _zigzag(index) if union else b"" for index, name in enumerate(schemas.names)
        }
        # Headers of the current versions: their bodies are copied.
        self._copied: dict[bytes, bytes] = {}
        for name, definition in zip(schemas.names, schemas.definitions, strict=True):
            with contextlib.suppress(SchemaError):
                schema_id = decoder.registry.id_for(name, definition)
                self._copied[_HEADER.pack(MAGIC_BYTE, schema_id)] = self._branch[name]
        fastavro.writer(
            out,
            fastavro.parse_schema(schemas.writer_schema),
            [],
            codec=codec,
            metadata=dict(metadata),
            sync_marker=self._sync,
        )
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ocf-block")
        self._pending: Future[None] | None = None
        self.records = 0
        self.skipped = 0

    def add_all(
        self,
        messages: Sequence[Message],
        ends: Mapping[int, int],
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> None:
        """Append the records of ``messages`` that :func:`in_range` keeps, as one block."""
        low = -(2**63) if start_ms is None else start_ms
        high = 2**63 if end_ms is None else end_ms
        whole = self._whole_batch(messages, ends, low, high)
        if whole is not None:
            self._write_block(len(messages), whole)
            self.records += len(messages)
            return
        parts: list[bytes] = []
        append = parts.append
        copied = self._copied
        kept = 0
        # One pass, no per-record function call: this loop is the export's cost per record.
        for message in messages:
            if message.error() is not None:
                continue
            if not (message.offset() or 0) < ends.get(message.partition() or 0, -1):
                continue
            if not low <= message.timestamp()[1] < high:
                continue
            data = message.value() or b""
            branch = copied.get(data[:5])
            if branch is not None:
                if branch:
                    append(branch)
                append(data[5:])
                kept += 1
                continue
            encoded = self._reencoded(data)
            if encoded is None:
                self.skipped += 1
                continue
            append(encoded)
            kept += 1
        if kept:
            self._write_block(kept, b"".join(parts))
            self.records += kept

    def _whole_batch(
        self, messages: Sequence[Message], ends: Mapping[int, int], low: int, high: int
    ) -> bytes | None:
        """The block of a batch that is wholly inside the range and of one current schema
        version, built with C-level map/join and no Python bytecode per record; None when the
        batch needs the record-by-record path."""
        if any(map(Message.error, messages)):
            return None
        offsets = list(map(Message.offset, messages))
        if max(offsets) >= min(ends.values()):
            return None
        stamps = list(map(_STAMP, map(Message.timestamp, messages)))
        if min(stamps) < low or max(stamps) >= high:
            return None
        values = list(map(Message.value, messages))
        if None in values:  # a tombstone: not a record of any schema
            return None
        headers = set(map(_HEAD, values))
        if len(headers) != 1:
            return None
        branch = self._copied.get(headers.pop())
        if branch is None:
            return None
        bodies = list(map(_BODY, values))
        return branch.join([b"", *bodies]) if branch else b"".join(bodies)

    def _reencoded(self, data: bytes) -> bytes | None:
        """A record of another version, in the current one (None: not decodable)."""
        try:
            record, _, value = self._decoder.decode(data)
        except (SerdeError, ValueError, EOFError, LookupError):
            return None
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self._parsed[record], value)
        return self._branch[record] + body.getvalue()

    def _write_block(self, count: int, data: bytes) -> None:
        # zlib releases the GIL: a block compresses on another core while the next is read.
        if self._pending is not None:
            self._pending.result()
        self._pending = self._writer.submit(self._compress_and_write, count, data)

    def _compress_and_write(self, count: int, data: bytes) -> None:
        if self._codec == "deflate":
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, -15)
            block = compressor.compress(data) + compressor.flush()
        else:
            block = data
        self._out.write(_zigzag(count) + _zigzag(len(block)) + block + self._sync)

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._writer.shutdown()
        self._out.flush()


_STAMP = operator.itemgetter(1)
_HEAD = operator.itemgetter(slice(0, _HEADER.size))
_BODY = operator.itemgetter(slice(_HEADER.size, None))


def _zigzag(n: int) -> bytes:
    """Avro's variable-length zigzag encoding of a long."""
    value = (n << 1) ^ (n >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def is_jsonl(path: Path, explicit: str | None) -> bool:
    """The format: ``explicit`` (``avro``/``jsonl``) or the file's extension (.jsonl, .ndjson)."""
    if explicit is not None:
        return explicit == "jsonl"
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


# -- moving a group by time --------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    current: int | None
    """The group's committed offset (None: never committed)."""
    planned: int


def reset_plan(
    committed: Mapping[tuple[str, int], int | None],
    by_time: Mapping[tuple[str, int], int],
    ends: Mapping[tuple[str, int], int],
) -> list[Move]:
    """Each partition the group reads, moved to the first offset at or after the time
    (``by_time``; -1 when no record is that late: the log end, ``ends``)."""
    return [
        Move(t, p, current, _or_end(by_time.get((t, p), -1), ends[(t, p)]))
        for (t, p), current in sorted(committed.items())
    ]


class GroupActive(Exception):
    """The group has members: moving its offsets under them would be lost or fought over."""


def group_members(admin: AdminClient, group: str, timeout: float = 10.0) -> int:
    described = admin.describe_consumer_groups([group], request_timeout=timeout)[group]
    return len(described.result().members)


def group_offsets(
    admin: AdminClient, group: str, timeout: float = 10.0
) -> dict[tuple[str, int], int | None]:
    """The partitions the group has committed offsets on, with those offsets."""
    request = [ConsumerGroupTopicPartitions(group)]
    result = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group].result()
    return {
        (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
        for tp in result.topic_partitions or []
        if tp.error is None
    }


def plan_group_reset(
    admin: AdminClient,
    group: str,
    moment: datetime,
    topics: Sequence[str] | None = None,
    timeout: float = 10.0,
) -> list[Move]:
    """Where each partition the group reads (of ``topics``, default all) would go for
    ``moment``; asks the broker, changes nothing."""
    committed = {
        tp: offset
        for tp, offset in group_offsets(admin, group, timeout).items()
        if topics is None or tp[0] in topics
    }
    if not committed:
        return []
    millis = to_millis(moment)
    by_time = _list_offsets(admin, {tp: OffsetSpec.for_timestamp(millis) for tp in committed})
    ends = _list_offsets(admin, {tp: OffsetSpec.latest() for tp in committed})
    return reset_plan(committed, by_time, ends)


def apply_group_reset(
    admin: AdminClient, group: str, moves: Sequence[Move], timeout: float = 10.0
) -> None:
    """Commit ``moves`` for the group; refuses (:class:`GroupActive`) while it has members."""
    members = group_members(admin, group, timeout)
    if members:
        raise GroupActive(f"{group} has {members} active member(s); stop them first")
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(m.topic, m.partition, m.planned) for m in moves]
    )
    result = admin.alter_consumer_group_offsets([request], request_timeout=timeout)[group].result()
    failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
    if failed:
        raise RuntimeError(f"{group}: offsets not moved on {failed}")


def _list_offsets(
    admin: AdminClient, wanted: Mapping[tuple[str, int], OffsetSpec]
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets(
        {TopicPartition(t, p): spec for (t, p), spec in wanted.items()},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=10,
    )
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
