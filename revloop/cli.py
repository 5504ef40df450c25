"""The `revloop` console command. Each layer contributes its own sub-app."""

from __future__ import annotations

import typer

from infra.cli import app as infra_app
from infra.supervisor_cli import down_command, status_command, supervise_command, up_command
from ingest.bench import bench_app
from ingest.microbench import accept_path_command
from ingest.normalizer import normalize_command
from ingest.server import serve
from ingest.stores_cli import stores_app
from revloop.demo import demo_command
from schemas.cli import schemas_app, topics_app

app = typer.Typer(
    name="revloop",
    help="Closed-loop revenue pipeline for e-commerce on Apache Kafka.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command("up")(up_command)
app.command("down")(down_command)
app.command("status")(status_command)
app.command("supervise", hidden=True)(supervise_command)
app.add_typer(infra_app, name="infra")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(stores_app, name="stores")
app.command("ingest")(serve)
app.add_typer(bench_app, name="bench")
bench_app.command("accept-path")(accept_path_command)
app.command("normalize")(normalize_command)
app.command("demo")(demo_command)


def main() -> None:
    app()
