"""`revloop contracts ...`: what downstream teams read, generated from the topic catalogue and
the Avro schemas (schemas/contracts.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from schemas.contracts import (
    DEFAULT_KAFKA,
    DEFAULT_SCHEMA_REGISTRY,
    DOC_PATH,
    REGENERATE,
    Contracts,
    asyncapi_document,
    asyncapi_yaml,
    build_contracts,
    topics_markdown,
)
from schemas.registry import CommittedCatalogue
from schemas.topics import TOPICS

contracts_app = typer.Typer(
    help="Contracts for downstream teams: an AsyncAPI document and docs/topics.md.",
    no_args_is_help=True,
)

# Fixed defaults, not settings: the committed docs must not depend on the developer's env.
KAFKA = typer.Option(DEFAULT_KAFKA, "--kafka", help="Kafka bootstrap server to document.")
SCHEMA_REGISTRY = typer.Option(
    DEFAULT_SCHEMA_REGISTRY, "--schema-registry", help="Schema registry URL to document."
)


def _contracts(kafka: str, schema_registry: str) -> Contracts:
    return build_contracts(TOPICS, CommittedCatalogue.load(), kafka, schema_registry)


@contracts_app.command("asyncapi")
def asyncapi(
    output: Path | None = typer.Option(  # noqa: B008
        None, "--output", "-o", help="Write the YAML here instead of stdout."
    ),
    kafka: str = KAFKA,
    schema_registry: str = SCHEMA_REGISTRY,
) -> None:
    """Print the AsyncAPI 3.0 document (YAML) of every topic and event."""
    text = asyncapi_yaml(asyncapi_document(_contracts(kafka, schema_registry)))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@contracts_app.command("docs")
def docs(
    output: Path = typer.Option(  # noqa: B008
        DOC_PATH, "--output", "-o", help="The Markdown file."
    ),
    check: bool = typer.Option(
        False, "--check", help="Change nothing; exit 1 if the file is not current."
    ),
    kafka: str = KAFKA,
    schema_registry: str = SCHEMA_REGISTRY,
) -> None:
    """Write docs/topics.md, what each topic carries."""
    text = topics_markdown(_contracts(kafka, schema_registry))
    if check:
        current = output.read_text() if output.exists() else None
        if current != text:
            typer.echo(f"{output} is stale: run `{REGENERATE}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} is current")
        return
    output.write_text(text)
    typer.echo(f"wrote {output}")
