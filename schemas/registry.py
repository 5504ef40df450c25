"""Where schema ids come from.

Every Avro message carries a 4-byte schema id (Confluent wire format), so every process must
agree on ids. Two sources, one interface:

* ``CommittedCatalogue``: ``schemas/catalogue.json``, committed with the code. ``revloop schemas
  lock`` appends a version when an ``.avsc`` changes; old versions stay so old data decodes.
* ``ConfluentRegistry``: a Confluent-compatible Schema Registry at ``SCHEMA_REGISTRY_URL``.

Subjects are record full names (Confluent's RecordNameStrategy) because entity topics carry more
than one record type, e.g. ProductUpsert and ProductDelete share the products topic to stay ordered.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import fastavro
import httpx
from fastavro.types import Schema

AVRO_DIR = Path(__file__).resolve().parent / "avro"
CATALOGUE_PATH = Path(__file__).resolve().parent / "catalogue.json"
EVENT_NAMESPACE = "dev.revloop.events"


class SchemaError(Exception):
    """A schema is missing, not registered, or incompatible."""


def load_definition(full_name: str, avro_dir: Path = AVRO_DIR) -> dict[str, Any]:
    """The self-contained schema of a record: each named type it references is defined inline at
    its first use (files are found by full name, e.g. ``dev.revloop.common.Money.avsc``)."""
    path = avro_dir / f"{full_name}.avsc"
    if not path.exists():
        raise SchemaError(f"no schema file {path.name} in {avro_dir}")
    definition = fastavro.schema.load_schema(str(path), _write_hint=False)
    if not isinstance(definition, dict):
        raise SchemaError(f"{path.name} is not a record schema")
    return definition


def event_names(avro_dir: Path = AVRO_DIR) -> list[str]:
    """Full names of every top-level event record (shared types excluded)."""
    return sorted(p.name.removesuffix(".avsc") for p in avro_dir.glob(f"{EVENT_NAMESPACE}.*.avsc"))


def fingerprint(definition: dict[str, Any]) -> str:
    """Identity of a schema version. Unlike Parsing Canonical Form it keeps defaults and logical
    types, which change how data resolves."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Registry(Protocol):
    def id_for(self, subject: str, definition: dict[str, Any]) -> int: ...
    def definition_of(self, schema_id: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CatalogueEntry:
    schema_id: int
    subject: str
    version: int
    fingerprint: str
    definition: dict[str, Any]


class CommittedCatalogue:
    """Schema ids from the committed ``catalogue.json``. Read-only at run time: a schema that was
    never locked is refused, so no process can invent an id another process doesn't know."""

    def __init__(self, entries: list[CatalogueEntry]) -> None:
        self._by_id = {e.schema_id: e for e in entries}
        self._by_fingerprint = {(e.subject, e.fingerprint): e for e in entries}

    @classmethod
    def load(cls, path: Path = CATALOGUE_PATH) -> CommittedCatalogue:
        if not path.exists():
            return cls([])
        raw = json.loads(path.read_text())
        return cls(
            [
                CatalogueEntry(**{**e, "fingerprint": fingerprint(e["definition"])})
                for e in raw["schemas"]
            ]
        )

    def __iter__(self) -> Iterator[CatalogueEntry]:
        return iter(sorted(self._by_id.values(), key=lambda e: e.schema_id))

    def id_for(self, subject: str, definition: dict[str, Any]) -> int:
        entry = self._by_fingerprint.get((subject, fingerprint(definition)))
        if entry is None:
            raise SchemaError(
                f"{subject}: this schema version is not in schemas/catalogue.json; "
                "run `revloop schemas lock` and commit the result"
            )
        return entry.schema_id

    def definition_of(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id].definition
        except KeyError:
            raise SchemaError(f"schema id {schema_id} is not in the committed catalogue") from None

    def versions(self, subject: str) -> list[CatalogueEntry]:
        return sorted((e for e in self if e.subject == subject), key=lambda e: e.version)

    def locked(self, subject: str, definition: dict[str, Any]) -> tuple[CommittedCatalogue, bool]:
        """This catalogue with ``definition`` as the subject's newest version (pure: returns a new
        catalogue), and whether anything was added."""
        if (subject, fingerprint(definition)) in self._by_fingerprint:
            return self, False
        previous = self.versions(subject)
        # Transitive, as the registry's BACKWARD_TRANSITIVE: data of every older version stays
        # readable, not just the newest's.
        for older in reversed(previous):
            problems = backward_incompatibilities(reader=definition, writer=older.definition)
            if problems:
                raise SchemaError(
                    f"{subject}: new version breaks data of v{older.version}: "
                    + "; ".join(problems)
                )
        entry = CatalogueEntry(
            schema_id=max(self._by_id, default=0) + 1,
            subject=subject,
            version=(previous[-1].version + 1) if previous else 1,
            fingerprint=fingerprint(definition),
            definition=definition,
        )
        return CommittedCatalogue([*self, entry]), True

    def dump(self, path: Path = CATALOGUE_PATH) -> None:
        body = {
            "about": "Schema ids for the Confluent wire format. Append-only: edit the .avsc files "
            "and run `revloop schemas lock`.",
            "schemas": [
                {
                    "schema_id": e.schema_id,
                    "subject": e.subject,
                    "version": e.version,
                    "definition": e.definition,
                }
                for e in self
            ],
        }
        path.write_text(json.dumps(body, indent=1) + "\n")


def backward_incompatibilities(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why a consumer holding ``reader`` could not decode data written with ``writer``.

    Covers the rules that matter for evolving records: a field the reader adds needs a default,
    a field's type may not change (Avro's int→long style promotions aside), and an enum may only
    lose symbols if it has a default.
    """
    problems: list[str] = []
    _Comparison(_named_types(reader), _named_types(writer), problems).compare(
        reader, writer, str(reader.get("name", "?"))
    )
    return problems


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_PROMOTIONS = {
    ("long", "int"),
    ("float", "int"),
    ("float", "long"),
    ("double", "int"),
    ("double", "long"),
    ("double", "float"),
    ("string", "bytes"),
    ("bytes", "string"),
}


def _named_types(schema: Any, found: dict[str, Any] | None = None) -> dict[str, Any]:
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            found[schema["name"]] = schema
        for field in schema.get("fields", []):
            _named_types(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], found)
    return found


@dataclass
class _Comparison:
    reader_names: dict[str, Any]
    writer_names: dict[str, Any]
    problems: list[str]

    def compare(self, reader: Any, writer: Any, where: str) -> None:
        reader, writer = (
            self._resolve(reader, self.reader_names),
            self._resolve(writer, self.writer_names),
        )
        r, w = _type_name(reader), _type_name(writer)
        if r == "union" or w == "union":
            self._compare_unions(reader, writer, where)
        elif r != w:
            if (r, w) not in _PROMOTIONS:
                self.problems.append(f"{where}: type changed from {w} to {r}")
        elif r == "record":
            writer_fields = {f["name"]: f for f in writer["fields"]}
            for field in reader["fields"]:
                name = field["name"]
                if name in writer_fields:
                    self.compare(field["type"], writer_fields[name]["type"], f"{where}.{name}")
                elif "default" not in field:
                    self.problems.append(f"{where}.{name}: added without a default")
        elif r == "enum":
            missing = set(writer["symbols"]) - set(reader["symbols"])
            if missing and "default" not in reader:
                self.problems.append(f"{where}: symbols {sorted(missing)} removed, no enum default")
        elif r == "array":
            self.compare(reader["items"], writer["items"], f"{where}[]")
        elif r == "map":
            self.compare(reader["values"], writer["values"], f"{where}{{}}")

    def _compare_unions(self, reader: Any, writer: Any, where: str) -> None:
        readers = reader if isinstance(reader, list) else [reader]
        writers = writer if isinstance(writer, list) else [writer]
        for branch in writers:
            branch = self._resolve(branch, self.writer_names)
            matches = [
                b
                for b in (self._resolve(x, self.reader_names) for x in readers)
                if _type_name(b) == _type_name(branch)
            ]
            if not matches:
                self.problems.append(
                    f"{where}: writer type {_type_name(branch)} has no reader branch"
                )
            else:
                self.compare(matches[0], branch, where)

    @staticmethod
    def _resolve(schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return names.get(schema, schema)
        if (
            isinstance(schema, dict)
            and schema.get("type") in _PRIMITIVES
            and "logicalType" not in schema
        ):
            return schema["type"]
        return schema


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema.get("type"))


COMPATIBILITY = "BACKWARD_TRANSITIVE"
"""Every event subject's rule: a new version must read data written with every older one."""


@dataclass(frozen=True)
class Registered:
    """One catalogue version as the registry numbered it."""

    subject: str
    version: int
    catalogue_id: int
    registry_id: int


class ConfluentRegistry:
    """Client for a Confluent-compatible Schema Registry's REST API (Confluent's own, or
    Apicurio's ``/apis/ccompat/v7``). Ids are cached per process.

    ``auto_register`` False only looks schemas up: for registries that a deploy step
    (`revloop schemas register`) writes to and services only read.
    """

    def __init__(
        self, url: str, *, auto_register: bool = True, client: httpx.Client | None = None
    ) -> None:
        self._url = _without_userinfo(url)
        # httpx takes basic-auth credentials from the URL's userinfo, if any.
        self._client = client or httpx.Client(base_url=url.rstrip("/") + "/", timeout=10.0)
        self._auto_register = auto_register
        self._ids: dict[tuple[str, str], int] = {}
        self._definitions: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConfluentRegistry({self._url!r})"

    @property
    def url(self) -> str:
        """The API root, without any credentials."""
        return self._url

    def close(self) -> None:
        self._client.close()

    def id_for(self, subject: str, definition: dict[str, Any]) -> int:
        key = (subject, fingerprint(definition))
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        path = f"subjects/{subject}/versions" if self._auto_register else f"subjects/{subject}"
        response = self._request("POST", path, {"schema": json.dumps(definition)})
        if response.status_code == 409:
            raise SchemaError(
                f"{subject}: the registry refuses this version, it breaks {COMPATIBILITY} "
                f"compatibility with the registered ones ({_reason(response)})"
            )
        if response.status_code == 404 and not self._auto_register:
            raise SchemaError(
                f"{subject}: this version is not in the registry at {self._url}; "
                "run `revloop schemas register` (services only look schemas up here)"
            )
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url} refused {subject}: {response.status_code} "
                f"{_reason(response)}"
            )
        schema_id = int(response.json()["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._definitions.setdefault(schema_id, definition)
        return schema_id

    def definition_of(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            if schema_id in self._definitions:
                return self._definitions[schema_id]
        response = self._request("GET", f"schemas/ids/{schema_id}")
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url} has no schema id {schema_id}: {response.status_code}"
            )
        definition: dict[str, Any] = json.loads(response.json()["schema"])
        with self._lock:
            self._definitions[schema_id] = definition
        return definition

    # --- administration (`revloop schemas register`, `revloop infra up`) ----------------------

    def register_catalogue(self, catalogue: CommittedCatalogue) -> list[Registered]:
        """Every released version, oldest first, then ``COMPATIBILITY`` on each subject.

        Idempotent: a version the registry holds keeps its id (and version). Oldest first
        matters: each version is checked against those before it, as when it was released.
        """
        registered = [
            Registered(e.subject, e.version, e.schema_id, self.id_for(e.subject, e.definition))
            for e in catalogue
        ]
        for subject in sorted({e.subject for e in catalogue}):
            self.set_compatibility(subject, COMPATIBILITY)
        return registered

    def set_compatibility(self, subject: str, level: str) -> None:
        response = self._request("PUT", f"config/{subject}", {"compatibility": level})
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url} refused {level} for {subject}: "
                f"{response.status_code} {_reason(response)}"
            )

    def compatibility(self, subject: str) -> str | None:
        response = self._request("GET", f"config/{subject}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url}: {response.status_code} {_reason(response)}"
            )
        level = response.json().get("compatibilityLevel")
        return str(level) if level is not None else None

    def is_compatible(self, subject: str, definition: dict[str, Any]) -> bool:
        """Whether the registry would accept ``definition`` as the subject's next version
        (checked against every registered version; a subject it lacks accepts anything)."""
        response = self._request(
            "POST", f"compatibility/subjects/{subject}/versions", {"schema": json.dumps(definition)}
        )
        if response.status_code == 404:
            return True
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url}: {response.status_code} {_reason(response)}"
            )
        return bool(response.json()["is_compatible"])

    def versions(self, subject: str) -> list[int]:
        response = self._request("GET", f"subjects/{subject}/versions")
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            raise SchemaError(
                f"registry at {self._url}: {response.status_code} {_reason(response)}"
            )
        return [int(v) for v in response.json()]

    def delete_subject(self, subject: str) -> None:
        """Remove a subject and its versions for good (a soft delete first, as the API wants)."""
        for path in (f"subjects/{subject}", f"subjects/{subject}?permanent=true"):
            response = self._request("DELETE", path)
            if response.status_code >= 400 and response.status_code != 404:
                raise SchemaError(
                    f"registry at {self._url}: {response.status_code} {_reason(response)}"
                )

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        try:
            return self._client.request(
                method,
                path,
                json=body,
                headers={
                    "Content-Type": "application/vnd.schemaregistry.v1+json",
                    "Accept": "application/vnd.schemaregistry.v1+json, application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise SchemaError(
                f"schema registry at {self._url} did not answer ({type(exc).__name__}: {exc}); "
                "is it running? (`revloop infra status`)"
            ) from exc


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])[:300]
    return response.text[:300]


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def registry_for(schema_registry_url: str | None, *, auto_register: bool = True) -> Registry:
    """The registry every process uses: a real one when configured, else the committed ids."""
    if schema_registry_url:
        return ConfluentRegistry(schema_registry_url, auto_register=auto_register)
    return CommittedCatalogue.load()


def parse(definition: dict[str, Any]) -> Schema:
    # The write hint marks the result as parsed; without it fastavro parses the schema again on
    # every read and write (about half of an event's encode time).
    return fastavro.parse_schema(definition, _force=True)
