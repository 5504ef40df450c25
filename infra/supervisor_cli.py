"""`revloop up | down | status`: the whole local pipeline as one unit (docs/operations.md).

:func:`pipeline` is the one list of the pipeline's long-running processes; a new one (the
worker, a sink, a connector) is one more line there.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.text import Text

from infra import process
from infra.cli import exit_on, print_change, print_status, short, status_table
from infra.stack import Stack, StackError, StackStatus
from infra.supervisor import (
    PipelineStatus,
    ProcessSpec,
    ProcState,
    RunPaths,
    Supervisor,
    SupervisorError,
    pipeline_status,
    read_state,
    revloop_command,
    run_lock,
    running_supervisor,
    start_detached,
    stop_pipeline,
    wait_started,
)
from revloop.crypto import CryptoError, SecretBox
from revloop.kafka import ensure_topics
from revloop.metrics import local_url
from revloop.settings import Settings, get_settings
from revloop.stores import RegistryError, StoreRegistry, store_currencies

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

LOCK_TIMEOUT = 180.0
"""How long `up`/`down` wait for another `up`/`down` (a first `up` may fetch the broker)."""


# --- what each process needs ------------------------------------------------------------------


def _salt_problems(settings: Settings) -> list[str]:
    try:
        settings.customer_salt  # noqa: B018  # the property raises when it is missing
    except ValueError as exc:
        return [str(exc)]
    return []


def _stores_file_problem(settings: Settings, load: Callable[[], object]) -> list[str]:
    path = settings.stores_file
    try:
        load()
    except FileNotFoundError:
        return [
            f"the stores file {path} does not exist: register a store with "
            "`revloop stores add` (REVLOOP_STORES_FILE moves the file)"
        ]
    except OSError as exc:
        return [f"cannot read the stores file {path}: {exc.strerror}"]
    except (RegistryError, CryptoError) as exc:
        return [str(exc)]  # they name the file, store and key id; never a secret
    return []


def _ingest_problems(settings: Settings) -> list[str]:
    """What `revloop ingest` (ingest.server.build_service, then uvicorn's bind) would fail on,
    checked without starting a Kafka producer."""
    problems = _salt_problems(settings)
    try:
        secret_box = SecretBox.from_settings(settings)
    except CryptoError as exc:
        problems.append(str(exc))
        if not settings.stores_file.exists():  # the other checks need the keys
            problems += _stores_file_problem(settings, settings.stores_file.stat)
    else:
        problems += _stores_file_problem(
            settings, lambda: StoreRegistry.load(settings.stores_file, secret_box)
        )
    host, port = settings.ingest_host, settings.ingest_port
    if process.port_in_use(host, port):
        owner = process.port_owner(port)
        by = f" by {owner}" if owner else ""
        problems.append(
            f"port {port} on {host} is already in use{by}; stop that process or move ingest "
            "with REVLOOP_INGEST_PORT=<another port>"
        )
    return problems


def _answers_200(url: str) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        response = httpx.get(url, timeout=2.0, trust_env=False)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}"
    return None if response.status_code == 200 else f"{url} answered {response.status_code}"


def _normalizer_problems(settings: Settings) -> list[str]:
    """What build_normalizer needs: the salt and a stores file whose currencies read (none is
    fine: it reads the currencies only, without the master keys)."""
    return _salt_problems(settings) + _stores_file_problem(
        settings,
        lambda: store_currencies(settings.stores_file),
    )


def _registry_problems(settings: Settings) -> list[str]:
    """What a connector needs of the registry: the master keys, and a stores file they open."""
    try:
        secret_box = SecretBox.from_settings(settings)
    except CryptoError as exc:
        return [str(exc)]
    return _stores_file_problem(
        settings, lambda: StoreRegistry.load(settings.stores_file, secret_box)
    )


def _hydrator_problems(settings: Settings) -> list[str]:
    return _salt_problems(settings) + _registry_problems(settings)


def _lag_exporter_problems(settings: Settings) -> list[str]:
    """Serving is the exporter's whole point: a taken port stops `up`, as ingest's does."""
    host, port = settings.metrics_host, settings.lag_exporter_port
    if not process.port_in_use(host, port):
        return []
    owner = process.port_owner(port)
    by = f" by {owner}" if owner else ""
    return [
        f"port {port} on {host} is already in use{by}; move the lag exporter with "
        "REVLOOP_LAG_EXPORTER_PORT=<another port> (0: do not run it)"
    ]


def _ingest_ready(settings: Settings) -> str | None:
    return _answers_200(local_url(settings.ingest_host, settings.ingest_port, "/readyz"))


def _lag_exporter_ready(settings: Settings) -> str | None:
    return _answers_200(local_url(settings.metrics_host, settings.lag_exporter_port, "/metrics"))


def pipeline(settings: Settings) -> tuple[ProcessSpec, ...]:
    """Every long-running process of the pipeline, in start order. Each serves /metrics on its
    ``*_metrics_port`` (docs/operations.md); reconciliation runs unless its interval is 0, the
    lag exporter unless its port is."""
    lag, every = settings.lag_exporter_port, settings.reconcile_every_seconds
    reconcile = ProcessSpec(
        "reconcile",
        revloop_command("reconcile", "--every", f"{every}s"),
        _hydrator_problems,  # the same needs: the salt, the master keys, the stores file
    )
    exporter = ProcessSpec(
        "lag-exporter",
        revloop_command("lag", "--serve", str(lag)),
        _lag_exporter_problems,
        _lag_exporter_ready,
    )
    return (
        ProcessSpec("ingest", revloop_command("ingest"), _ingest_problems, _ingest_ready),
        ProcessSpec("normalize", revloop_command("normalize"), _normalizer_problems),
        ProcessSpec("worker", revloop_command("worker")),
        ProcessSpec("sink-postgres", revloop_command("sink", "postgres")),
        ProcessSpec("connect-hydrate", revloop_command("connect", "hydrate"), _hydrator_problems),
        ProcessSpec("connect-ads", revloop_command("connect", "ads"), _registry_problems),
        *((reconcile,) if every else ()),
        *((exporter,) if lag else ()),
    )


def preflight(settings: Settings) -> list[str]:
    """Every process's problems, as ``<name>: <problem>``."""
    return [
        f"{spec.name}: {problem}"
        for spec in pipeline(settings)
        if spec.preflight is not None
        for problem in spec.preflight(settings)
    ]


def _upgrade_database() -> str:
    """`revloop db upgrade`, for the sink: its tables at the newest revision before it starts.
    A command of its own, run as one (infra does not import the sinks)."""
    try:
        done = subprocess.run(
            revloop_command("db", "upgrade"), capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        raise StackError("`revloop db upgrade` did not finish within 300 s") from None
    if done.returncode != 0:
        raise StackError(f"`revloop db upgrade` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip()


# --- commands ---------------------------------------------------------------------------------

_errors = exit_on(StackError, SupervisorError, ConnectionError, KafkaException, TimeoutError)


def _progress(line: str) -> None:
    err.print(line, style="dim", markup=False)


def _note_external(settings: Settings) -> None:
    _progress(
        f"Local stack: not used (KAFKA_BOOTSTRAP_SERVERS or DATABASE_URL is set; Kafka at "
        f"{settings.bootstrap_servers}), so it is left alone."
    )


@_errors
def up_command() -> None:
    """Start everything: the local stack (when settings use it), the topics, and the
    pipeline's processes under a supervisor that restarts any that dies (docs/operations.md).

    Checks what every process needs before it starts anything. Running it again while the
    supervisor runs starts nothing and exits 0. Logs: <state dir>/logs/<process>.log.
    """
    settings = get_settings()
    paths = RunPaths.of(settings)
    with run_lock(paths, LOCK_TIMEOUT):
        running = running_supervisor(paths)
        if running is None:
            # A supervisor that was SIGKILLed may leave children behind (holding ingest's port).
            stop_pipeline(paths, settings, _progress)
            problems = preflight(settings)
            if problems:
                err.print(
                    "revloop up: nothing started. Fix these first:\n"
                    + "\n".join(f"  - {p}" for p in problems),
                    style="red",
                    markup=False,
                )
                raise typer.Exit(1)
        if settings.uses_local_stack:
            change = Stack(settings, progress=_progress).up()
            print_change(change, verb="started", idle="already running")
        else:
            _note_external(settings)
        if running is not None:
            out.print(f"Pipeline: already running (supervisor pid {running}); nothing started.")
            _print_pipeline(pipeline_status(paths, pipeline(settings)), paths)
            return
        changes = ensure_topics(settings)
        out.print(
            f"Topics: {len(changes)} change(s) applied" if changes else "Topics: in sync",
            markup=False,
        )
        out.print(f"Database: {_upgrade_database()}", markup=False)
        pid = start_detached(paths)
        _progress(f"Supervisor: started (pid {pid}); waiting for the processes")
        wait_started(
            paths, pid, pipeline(settings), settings, settings.supervisor_start_timeout_seconds
        )
    _print_pipeline(pipeline_status(paths, pipeline(settings)), paths)
    out.print(
        f"Logs: {paths.logs_dir}/<process>.log and supervisor.log. "
        "`revloop status` shows this again; `revloop down` stops everything.",
        markup=False,
    )


@_errors
def down_command(
    keep_infra: bool = typer.Option(
        False, "--keep-infra", help="Leave the local stack (Kafka, Postgres) running."
    ),
) -> None:
    """Stop the pipeline's processes and their supervisor, then the local stack (data stays).

    The processes get REVLOOP_SUPERVISOR_STOP_GRACE_SECONDS after SIGTERM, then SIGKILL; a
    supervisor that does not answer is SIGKILLed with its whole process group.
    """
    settings = get_settings()
    paths = RunPaths.of(settings)
    if paths.run_dir.exists():
        with run_lock(paths, LOCK_TIMEOUT):
            report = stop_pipeline(paths, settings, _progress)
        record = read_state(paths)
        if report.supervisor_pid is None and not report.orphans:
            out.print("Pipeline: was not running")
        elif report.supervisor_pid is None:
            out.print(f"Pipeline: stopped {', '.join(report.orphans)} (no supervisor ran)")
        elif report.killed:
            out.print(
                f"Supervisor (pid {report.supervisor_pid}) and its processes: SIGKILLed",
                markup=False,
            )
        else:
            out.print(f"Supervisor (pid {report.supervisor_pid}): stopped", markup=False)
            for proc in record.processes if record else ():
                last = f" ({proc.last_exit})" if proc.last_exit else ""
                out.print(f"{proc.name}: stopped{last}", markup=False)
    else:
        out.print("Pipeline: was not running")
    if keep_infra:
        out.print("Local stack: left running (--keep-infra)")
    elif not settings.uses_local_stack:
        _note_external(settings)
    else:
        change = Stack(settings, progress=_progress).down()
        print_change(change, verb="stopped", idle="was not running")
    left = pipeline_status(paths, pipeline(settings))
    survivors = [f"{p.name} (pid {p.pid})" for p in left.processes if p.pid is not None]
    if left.supervisor_pid is not None:
        survivors.insert(0, f"the supervisor (pid {left.supervisor_pid})")
    if survivors:
        raise SupervisorError(f"still running: {', '.join(survivors)}")


@_errors
def status_command(
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of tables."),
) -> None:
    """Show the local stack and the pipeline's processes (pid, state, uptime, restarts, last
    exit).

    Exit code 0 when everything that should run runs: the supervisor and every process, and the
    local stack is healthy (when settings use it); 1 otherwise.
    """
    settings = get_settings()
    paths = RunPaths.of(settings)
    stack = Stack(settings).status() if settings.uses_local_stack else None
    processes = pipeline_status(paths, pipeline(settings))
    ok = processes.running and (stack is None or stack.healthy)
    if as_json:
        typer.echo(json.dumps(_status_document(settings, stack, processes, ok), indent=2))
    else:
        if stack is not None:
            print_status(stack)
        else:
            _note_external(settings)
        _print_pipeline(processes, paths)
    if not ok:
        raise typer.Exit(1)


def supervise_command() -> None:
    """Run the supervisor in the foreground (what `revloop up` starts, detached)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    code = Supervisor(settings, pipeline(settings)).run()
    if code:
        raise typer.Exit(code)


# --- output -----------------------------------------------------------------------------------

_PROC_STYLE = {
    ProcState.RUNNING: "green",
    ProcState.BACKING_OFF: "yellow",
    ProcState.STOPPED: "dim",
    ProcState.ORPHANED: "red",
}


def _print_pipeline(status: PipelineStatus, paths: RunPaths) -> None:
    table = status_table(f"revloop pipeline in {paths.state_dir}")
    for column in ("Process", "State", "PID", "Uptime", "Restarts", "Last exit"):
        table.add_column(column, no_wrap=True)
    table.add_column("Log file", overflow="fold")
    for p in status.processes:
        state = p.state.value
        if p.retry_in_seconds is not None:
            state += f" (retry in {p.retry_in_seconds:.1f}s)"
        table.add_row(
            p.name,
            Text(state, style=_PROC_STYLE[p.state]),
            str(p.pid) if p.pid is not None else "-",
            _duration(p.uptime_seconds),
            str(p.restarts),
            p.last_exit or "-",
            # The title names the state dir; repeating it only truncates the rest.
            Text(str(short(p.log_file, paths.state_dir))),
        )
    out.print(table)
    if status.supervisor_pid is not None and status.record is not None:
        since = f"{status.record.started_at:%Y-%m-%d %H:%M:%S} UTC"
        out.print(f"Supervisor: pid {status.supervisor_pid}, running since {since}", markup=False)
    else:
        out.print("Supervisor: not running", markup=False)
    if any(p.state is ProcState.ORPHANED for p in status.processes):
        out.print("Orphaned processes run without a supervisor; `revloop down` stops them.")
    if status.supervisor_pid is None:
        out.print("Start it with: revloop up", markup=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _status_document(
    settings: Settings, stack: StackStatus | None, pipeline: PipelineStatus, ok: bool
) -> dict[str, Any]:
    record = pipeline.record
    return {
        "ok": ok,
        "checked_at": datetime.now(UTC).isoformat(),
        "stack": None
        if stack is None
        else {
            "healthy": stack.healthy,
            "components": [
                {"name": c.name, "state": c.state.value, "pid": c.pid, "address": c.address}
                for c in stack.components
            ],
        },
        "kafka_bootstrap_servers": settings.bootstrap_servers,
        "supervisor": {
            "pid": pipeline.supervisor_pid,
            "running": pipeline.supervisor_pid is not None,
            "started_at": record.started_at.isoformat()
            if record and pipeline.supervisor_pid
            else None,
        },
        "processes": [
            {
                "name": p.name,
                "state": p.state.value,
                "pid": p.pid,
                "uptime_seconds": p.uptime_seconds,
                "restarts": p.restarts,
                "last_exit": p.last_exit,
                "retry_in_seconds": p.retry_in_seconds,
                "log_file": str(p.log_file),
            }
            for p in pipeline.processes
        ],
    }
