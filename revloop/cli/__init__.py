"""The `revloop` console command (:mod:`revloop.cli.root` builds it whole).

A command imports only the module that owns it: the whole command line imports every layer
(quixstreams, FastAPI, the demo), about three seconds that `revloop ledger verify` or a worker
restarting after a SIGKILL would otherwise spend before doing anything. `revloop` alone and
`revloop --help` build the whole app, to list everything.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    # Long-running processes (the supervisor starts and restarts them).
    ("ingest",): ("revloop.cli.ingest", "serve_command"),
    ("normalize",): ("streams.normalizer", "normalize_command"),
    ("worker",): ("streams.worker", "worker_command"),
    ("sink", "postgres"): ("sinks.postgres.service", "sink_postgres_command"),
    ("connect", "ads"): ("connectors.ad_platforms.executor", "connect_ads_command"),
    ("connect", "hydrate"): ("connectors.hydrator", "hydrate_command"),
    # One-off commands.
    ("settle",): ("revloop.cli.db", "settle_command"),
    ("backfill",): ("revloop.cli.connect", "backfill_command"),
    ("reconcile",): ("revloop.cli.connect", "reconcile_command"),
    ("lag",): ("revloop.cli.lag", "lag_command"),
    ("console",): ("console", "console_command"),
    ("demo",): ("demo", "demo_command"),
    ("up",): ("infra.supervisor_cli", "up_command"),
    ("down",): ("infra.supervisor_cli", "down_command"),
    ("status",): ("infra.supervisor_cli", "status_command"),
}
"""Words → the module and function of a single command."""

GROUPS: dict[tuple[str, ...], tuple[str, str]] = {
    ("stores",): ("revloop.cli.stores", "stores_app"),
    ("ledger",): ("revloop.cli.db", "ledger_app"),
    ("db",): ("revloop.cli.db", "db_app"),
    ("topics",): ("revloop.cli.schemas", "topics_app"),
    ("schemas",): ("revloop.cli.schemas", "schemas_app"),
    ("infra",): ("infra.cli", "app"),
    ("dlq",): ("revloop.cli.dlq", "dlq_app"),
    ("replay",): ("revloop.cli.replay", "replay_app"),
    ("contracts",): ("revloop.cli.contracts", "contracts_app"),
}
"""Words → the module and Typer app of a group of commands (`bench` is built with the whole
app: it may not be installed)."""


def main() -> None:
    args = sys.argv[1:]
    for words, (module, name) in COMMANDS.items():
        if tuple(args[: len(words)]) == words:
            single = typer.Typer(pretty_exceptions_show_locals=False, add_completion=False)
            single.command()(getattr(importlib.import_module(module), name))
            single(args=args[len(words) :], prog_name=f"revloop {' '.join(words)}")
            return
    for words, (module, name) in GROUPS.items():
        if tuple(args[: len(words)]) == words:
            group: typer.Typer = getattr(importlib.import_module(module), name)
            group(args=args[len(words) :], prog_name=f"revloop {' '.join(words)}")
            return
    from revloop.cli.root import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from revloop.cli.root import app

        return app
    raise AttributeError(name)
