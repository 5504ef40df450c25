"""The `revloop` console command (:mod:`revloop.cli.root` builds it whole).

The long-running processes the supervisor starts (and restarts after a crash) import only their
own command: the whole command line imports every layer, a second and more that a worker
restarting after a SIGKILL would spend before it takes its partitions back.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

PROCESSES = {
    ("ingest",): ("ingest.server", "serve"),
    ("normalize",): ("streams.normalizer", "normalize_command"),
    ("worker",): ("streams.worker", "worker_command"),
    ("sink", "postgres"): ("sinks.postgres.service", "sink_postgres_command"),
}


def main() -> None:
    args = sys.argv[1:]
    for words, (module, name) in PROCESSES.items():
        if tuple(args[: len(words)]) == words and not {"--help", "-h"} & set(args):
            single = typer.Typer(pretty_exceptions_show_locals=False, add_completion=False)
            single.command()(getattr(importlib.import_module(module), name))
            single(args=args[len(words) :], prog_name=f"revloop {' '.join(words)}")
            return
    from revloop.cli.root import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from revloop.cli.root import app

        return app
    raise AttributeError(name)
