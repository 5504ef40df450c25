"""`revloop topics ...` and `revloop schemas ...`."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal

import typer
from rich.console import Console
from rich.table import Table

from revloop.settings import get_settings
from schemas.registry import (
    CATALOGUE_PATH,
    CommittedCatalogue,
    SchemaError,
    event_names,
    load_definition,
)
from schemas.topics import TOPICS, TopicDriftError, catalogue_markdown

topics_app = typer.Typer(help="The topic catalogue and the broker's topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro schemas and their committed ids.", no_args_is_help=True)
console = Console()


@topics_app.command("list")
def list_topics(
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table."),
) -> None:
    """Print the topic catalogue."""
    if markdown:
        typer.echo(catalogue_markdown(), nl=False)
        return
    table = Table()
    # A topic name is what people copy: never cut or wrapped. On a narrow terminal the other
    # columns give way, folded rather than cut with an ellipsis; key fields and value records go
    # one per line so those columns need little width.
    table.add_column("topic", no_wrap=True, min_width=max(len(t.name) for t in TOPICS))
    table.add_column("key", overflow="fold")
    table.add_column("values", overflow="fold")
    table.add_column("partitions", justify="right", overflow="fold")
    table.add_column("cleanup", overflow="fold")
    table.add_column("retention", overflow="fold")
    for t in TOPICS:
        retention = "forever" if t.retention_ms < 0 else f"{t.retention_ms // 86_400_000} d"
        values = "\n".join(v.rsplit(".", 1)[-1] for v in t.values)
        table.add_row(
            t.name, "\n".join(t.key), values, str(t.partitions), t.cleanup.value, retention
        )
    Console().print(table)  # made now, so it measures the terminal (or COLUMNS) of this run


@topics_app.command("ensure")
def ensure(
    timeout: float = typer.Option(30.0, help="Seconds to wait for the broker."),
) -> None:
    """Create or update the catalogue's topics on the broker. Safe to run again: an in-sync
    broker is left untouched."""
    from revloop.kafka import ensure_topics

    settings = get_settings()
    try:
        changes = ensure_topics(settings, timeout=timeout)
    except (ConnectionError, TopicDriftError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for change in changes:
        console.print(f"{change.action:>15}  {change.topic}  ({change.detail})")
    console.print(
        f"{len(changes)} change(s); {len(TOPICS)} topics in the catalogue "
        f"at {settings.bootstrap_servers}"
        + (f" under the prefix {settings.topic_prefix!r}" if settings.topic_prefix else "")
    )


@schemas_app.command("lock")
def lock() -> None:
    """Give every new or changed .avsc a schema id in schemas/catalogue.json (append-only).
    Refuses a change that would stop consumers decoding data already written."""
    catalogue = CommittedCatalogue.load()
    added = []
    try:
        for name in event_names():
            catalogue, changed = catalogue.locked(name, load_definition(name))
            if changed:
                added.append(name)
    except SchemaError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if added:
        catalogue.dump()
    for name in added:
        entry = catalogue.versions(name)[-1]
        console.print(f"locked {name} v{entry.version} as id {entry.schema_id}")
    console.print(f"{len(added)} new version(s) in {CATALOGUE_PATH.name}")


@schemas_app.command("register")
def register(
    url: str = typer.Option(
        None,
        "--url",
        help="The registry's API root (Apicurio: .../apis/ccompat/v7); default: the one the "
        "settings name (SCHEMA_REGISTRY_URL, else the local stack's).",
    ),
) -> None:
    """Register every released schema version, oldest first, and set each subject to
    BACKWARD_TRANSITIVE. Safe to run again: a version the registry holds keeps its id.

    Run it before deploying services that only look schemas up (REVLOOP_SCHEMA_AUTO_REGISTER=
    false); `revloop infra up` does it for the local registry."""
    from schemas.registry import COMPATIBILITY, ConfluentRegistry

    target = url or get_settings().registry_url
    if target is None:
        console.print(
            "[red]error:[/red] REVLOOP_SCHEMA_IDS=catalogue: ids come from schemas/catalogue.json "
            "and no registry is configured; give --url"
        )
        raise typer.Exit(2)
    registry = ConfluentRegistry(target)
    try:
        registered = registry.register_catalogue(CommittedCatalogue.load())
    except SchemaError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        registry.close()
    table = Table(title=f"Schemas in {registry.url}", title_justify="left")
    table.add_column("subject", no_wrap=True)
    table.add_column("released version", justify="right")
    table.add_column("registry id", justify="right")
    table.add_column("catalogue id", justify="right")  # the ids of REVLOOP_SCHEMA_IDS=catalogue
    for entry in registered:
        table.add_row(
            entry.subject, str(entry.version), str(entry.registry_id), str(entry.catalogue_id)
        )
    console.print(table)
    subjects = len({e.subject for e in registered})
    console.print(
        f"{len(registered)} version(s) of {subjects} subjects registered; each subject is "
        f"{COMPATIBILITY}"
    )


@schemas_app.command("check")
def check() -> None:
    """Exit 1 if any .avsc differs from its newest locked version."""
    catalogue = CommittedCatalogue.load()
    stale = []
    for name in event_names():
        try:
            catalogue.id_for(name, load_definition(name))
        except SchemaError:
            stale.append(name)
    for name in stale:
        console.print(f"[red]not locked:[/red] {name}")
    if stale:
        console.print("run `revloop schemas lock` and commit schemas/catalogue.json")
        raise typer.Exit(1)
    console.print(f"all {len(event_names())} event schemas are locked")


@topics_app.command("read")
def read(
    name: str = typer.Argument(help="A catalogue topic, e.g. commerce.orders.v1."),
    last: int = typer.Option(10, min=1, help="How many of the newest records to print."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for the broker."),
) -> None:
    """Print the newest committed records of a topic, one JSON object a line: partition,
    offset, key and the decoded Avro value (bytes as UTF-8 text where they are, else base64)."""
    from revloop.kafka import read_newest, serde_for
    from schemas.serde import SerdeError
    from schemas.topics import topic

    settings = get_settings()
    try:
        catalogued = topic(name)
    except KeyError as exc:
        console.print(f"[red]error:[/red] {exc.args[0]}")
        raise typer.Exit(2) from exc
    serde = serde_for(settings)
    try:
        records = read_newest(settings, settings.topic_name(catalogued), last, timeout=timeout)
    except ConnectionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for partition, offset, key, value in records:
        try:
            decoded: object = serde.decode(value).value
        except SerdeError as exc:
            decoded = {"undecodable": str(exc)}
        line = {"partition": partition, "offset": offset, "key": _shown(key), "value": decoded}
        typer.echo(json.dumps(line, default=_shown, ensure_ascii=False))


def _shown(value: object) -> object:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not shown")
