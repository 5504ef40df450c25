"""`revloop infra up | down | status`: a thin shell over infra.stack."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infra.stack import ComponentStatus, Stack, StackChange, StackError, StackStatus, State
from revloop.settings import get_settings

app = typer.Typer(
    help="The local stack: a Kafka broker and a Postgres cluster, run without Docker (and, "
    "optionally, Prometheus).",
    no_args_is_help=True,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

_STATE_STYLE = {State.HEALTHY: "green", State.STOPPED: "dim", State.UNHEALTHY: "red"}

P = ParamSpec("P")
R = TypeVar("R")


def exit_on(*errors: type[Exception]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A command decorator: any of ``errors`` is printed in red and exits 1, without a
    traceback (they are the operator's problem to fix, not a bug)."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except errors as exc:
                # markup=False: messages quote log lines, which are full of [brackets].
                err.print(str(exc), style="red", markup=False)
                raise typer.Exit(1) from None

        return wrapper

    return decorate


_stack_errors = exit_on(StackError)


def _stack() -> Stack:
    return Stack(get_settings(), progress=lambda line: err.print(line, style="dim", markup=False))


@app.command()
@_stack_errors
def up(
    with_monitoring: bool = typer.Option(
        False,
        "--with-monitoring",
        help="Also start Prometheus (Debian's `prometheus`) scraping every revloop process, "
        "with the alert rules of infra/monitoring.",
    ),
) -> None:
    """Start the stack (fetching and initialising on first use) and wait until it is healthy.

    Running it again when everything is healthy changes nothing.
    """
    change = _stack().up(with_monitoring=with_monitoring)
    print_change(change, verb="started", idle="already running")
    print_status(change.status)
    _print_whereabouts(change.status)


@app.command()
@_stack_errors
def down() -> None:
    """Stop the stack (and Prometheus, if running) gracefully. Data stays; the next `up` picks
    it up again."""
    change = _stack().down()
    print_change(change, verb="stopped", idle="was not running")


@app.command()
@_stack_errors
def status() -> None:
    """Show each component's state, pid, address, data dir and log; exit 1 unless all healthy.

    Exit code 0 when every component is healthy, 1 otherwise (stopped or unhealthy), so scripts
    can use `revloop infra status` as a health check.
    """
    current = _stack().status()
    print_status(current)
    if not current.healthy:
        raise typer.Exit(1)


def print_change(change: StackChange, *, verb: str, idle: str) -> None:
    for component in change.status.components:
        if _idle_optional(component, change.status) and component.name not in change.changed:
            continue
        did = verb if component.name in change.changed else idle
        out.print(f"{component.label}: {did}", markup=False)
    if not change.changed:
        out.print("Nothing changed.")


def status_table(title: str) -> Table:
    """The look of every status table: lean borders and padding, as the paths need the width."""
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        show_edge=False,
    )


def print_status(status: StackStatus) -> None:
    table = status_table(f"revloop local stack in {status.state_dir}")
    table.add_column("Component", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("PID", no_wrap=True)
    table.add_column("Address", no_wrap=True)
    table.add_column("Data dir", overflow="fold")
    table.add_column("Log file", overflow="fold")
    for c in status.components:
        if _idle_optional(c, status):
            continue
        table.add_row(
            c.label,
            Text(c.state.value, style=_STATE_STYLE[c.state]),
            str(c.pid) if c.pid is not None else "-",
            c.address,
            Text(short(c.data_dir, status.state_dir)),
            Text(short(c.log_file, status.state_dir)),
        )
    out.print(table)
    for c in status.components:
        if _idle_optional(c, status):
            out.print(f"{c.label}: off (revloop infra up --with-monitoring)", markup=False)
    for c in status.components:
        if c.detail:
            out.print(f"{c.label}: {c.detail}", markup=False)
    if not status.healthy:
        out.print("Start it with: revloop infra up", markup=False)
    if not status.stopped:
        out.print("Stop it with: revloop infra down", markup=False)


def _idle_optional(component: ComponentStatus, status: StackStatus) -> bool:
    """An optional component (Prometheus) that is simply off: not worth a row of its own."""
    return (
        component.name in status.optional
        and component.state is State.STOPPED
        and not component.detail
    )


def short(path: Path, state_dir: Path) -> str:
    # The table's title names the state dir; repeating it in every cell only truncates the rest.
    return str(path.relative_to(state_dir)) if path.is_relative_to(state_dir) else str(path)


def _print_whereabouts(status: StackStatus) -> None:
    settings = get_settings()
    kafka, postgres, prometheus = status["kafka"], status["postgres"], status["prometheus"]
    registry = _stack().registry
    registry_url = registry.url
    management = f"{registry.host}:{settings.registry_management_port}"
    monitoring = (
        [f"Prometheus: http://{prometheus.address} (alerts: /alerts, targets: /targets)"]
        if prometheus.state is State.HEALTHY
        else []
    )
    out.print(
        "\n".join(
            [
                f"Kafka bootstrap servers: {kafka.address}",
                f"Postgres: postgresql://{settings.postgres_user}@{postgres.address}/"
                f"{settings.postgres_db} (password: REVLOOP_POSTGRES_PASSWORD)",
                f"Schema registry: {registry_url} (Confluent-compatible;"
                f" health: http://{management}/health/ready)",
                *monitoring,
                f"Everything lives under {status.state_dir} (REVLOOP_STATE_DIR);"
                f" ports move with REVLOOP_KAFKA_PORT, REVLOOP_KAFKA_CONTROLLER_PORT,"
                f" REVLOOP_POSTGRES_PORT, REVLOOP_REGISTRY_PORT, REVLOOP_REGISTRY_MANAGEMENT_PORT.",
            ]
        ),
        markup=False,
    )
    if not settings.uses_local_stack:
        err.print(
            "Note: KAFKA_BOOTSTRAP_SERVERS or DATABASE_URL is set, so other revloop commands "
            "talk to those servers, not to this stack.",
            style="yellow",
            markup=False,
        )
