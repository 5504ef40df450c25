"""The whole `revloop` command: every layer contributes its own commands and sub-apps."""

from __future__ import annotations

import typer

from connectors.ad_platforms.executor import connect_ads_command
from connectors.hydrator import hydrate_command
from console import console_command
from demo import demo_command
from infra.cli import app as infra_app
from infra.supervisor_cli import down_command, status_command, supervise_command, up_command
from revloop.cli.connect import backfill_command, reconcile_command
from revloop.cli.contracts import contracts_app
from revloop.cli.db import db_app, ledger_app, settle_command, sink_app
from revloop.cli.dlq import dlq_app
from revloop.cli.ingest import serve_command
from revloop.cli.lag import lag_command
from revloop.cli.replay import replay_app
from revloop.cli.schemas import schemas_app, topics_app
from revloop.cli.stores import stores_app
from streams.normalizer import normalize_command
from streams.worker import worker_command

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
app.add_typer(db_app, name="db")
app.add_typer(sink_app, name="sink")
app.add_typer(ledger_app, name="ledger")
app.add_typer(dlq_app, name="dlq")
app.add_typer(replay_app, name="replay")
app.add_typer(contracts_app, name="contracts")
app.command("settle")(settle_command)
app.command("backfill")(backfill_command)
app.command("reconcile")(reconcile_command)
app.command("lag")(lag_command)
app.command("console")(console_command)
connect_app = typer.Typer(
    help="Connectors: the pipeline's decisions carried out on the platforms.", no_args_is_help=True
)
connect_app.command("ads")(connect_ads_command)
connect_app.command("hydrate")(hydrate_command)
app.add_typer(connect_app, name="connect")
app.command("ingest")(serve_command)
app.command("normalize")(normalize_command)
app.command("worker")(worker_command)
app.command("demo")(demo_command)

try:
    from bench import bench_app
except ImportError as missing:
    if missing.name not in (
        "bench",
        "bench.ingest",
        "bench.accept_path",
        "bench.streams",
        "bench.normalizer",
        "bench.sinks",
        "bench.replay",
        "bench.lag",
    ):
        raise

    @app.command(
        "bench",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def _no_bench() -> None:
        """Benchmarks (a development tool; not installed here)."""
        typer.secho(
            "error: the benchmarks are a development tool and are not installed. From a checkout "
            "of the repository run `make install`, or `pip install -e ./bench` beside revloop.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)

else:
    app.add_typer(bench_app, name="bench")
