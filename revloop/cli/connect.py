"""`revloop backfill` and `revloop reconcile`: a store's platform API read into the pipeline
(docs/connectors.md). The connector jobs, the registry and the sink's baseline tables meet
here, in the composition root."""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import psycopg
import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from connectors.backfill import RESOURCES, Checkpoint, Job, JobStopped, PageDone
from connectors.http import ApiError
from connectors.metrics import ReconcileMetrics
from connectors.store_apis.base import StoreApi
from connectors.store_apis.connect import NotConnected, store_api
from platforms.events import Emit, NormalizeContext
from revloop.baseline import Baseline, baseline
from revloop.cli.common import fail
from revloop.crypto import CryptoError, SecretBox
from revloop.kafka import serde_for
from revloop.metrics import serve_metrics
from revloop.settings import Settings, get_settings
from revloop.stores import Store, StoreRegistry
from sinks.postgres.reconciliation import pipeline_counts, unheld
from sinks.postgres.store_baselines import (
    order_currencies,
    order_facts,
    record_order_facts,
    store_computed_baseline,
)

_SPAN = re.compile(r"^([0-9]{1,4})(mo|h|d|w|y)$")
RECONCILE_OVERLAP = timedelta(minutes=5)
RUN_AGAIN = "run again to resume"
NEXT_ROUND = "the next round resumes it"
STOPPED = 3
"""Exit status of a job stopped by a signal: its checkpoints hold where it was."""


def since_instant(value: str, now: datetime) -> datetime:
    """``12mo``, ``90d``, ``12h``, ``2w``, ``1y`` before ``now``, or an ISO date or instant
    (UTC)."""
    found = _SPAN.fullmatch(value.strip())
    if found:
        count, unit = int(found[1]), found[2]
        if unit == "h":
            return now - timedelta(hours=count)
        if unit == "d":
            return now - timedelta(days=count)
        if unit == "w":
            return now - timedelta(weeks=count)
        months = count * 12 if unit == "y" else count
        year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
        day = min(now.day, 28)  # a month back from the 31st lands in every month
        return now.replace(year=year, month=month + 1, day=day)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: give 12mo, 90d, 2w, 1y or an ISO date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _store(settings: Settings, store_id: str) -> Store:
    try:
        registry = StoreRegistry.load(settings.stores_file, SecretBox.from_settings(settings))
    except (CryptoError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    store = registry.get(store_id)
    if store is None:
        raise fail(f"no store {store_id!r} in {settings.stores_file}")
    return store


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.fields[pages]} pages · {task.fields[records]} records"),
        TextColumn("· {task.fields[events]} events"),
        TimeElapsedColumn(),
        console=console,
    )


@dataclass
class _Opened:
    """A job on one store, with what it holds open."""

    store: Store
    job: Job
    api: StoreApi
    conn: psycopg.Connection[Any]

    def close(self) -> None:
        self.job.close()
        self.api.close()
        self.conn.close()


def _open(settings: Settings, store: Store, job_name: str, source: str) -> _Opened:
    """The store's API client, Postgres, and the job, started (a killed run's page fenced)."""
    try:
        salt = settings.customer_salt
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        api = store_api(settings, store.store_id, store.connection(store.platform))
    except NotConnected as exc:
        raise fail(f"{exc}: `revloop stores connect --channel {store.platform}` first") from None
    context = NormalizeContext(
        customer_salt=salt,
        store_currency={store.store_id: store.currency} if store.currency else {},
        source=source,
    )
    try:
        conn = psycopg.connect(settings.dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        api.close()
        raise fail(f"cannot reach Postgres: {exc.args[0]}") from None
    serde = serde_for(settings)
    job = Job(settings, job_name, store.store_id, store.platform, api, serde, context)
    try:
        job.start()
    except KafkaException as exc:
        api.close()
        conn.close()
        raise fail(f"Kafka: {exc}") from None
    return _Opened(store, job, api, conn)


def _run(
    console: Console, job: Job, plan: Sequence[Checkpoint], then: str = RUN_AGAIN
) -> dict[str, Checkpoint]:
    """The plan run under a progress display and stopped cleanly by SIGTERM or SIGINT. Maps a
    stop, a platform failure or Kafka failing to a clear exit (its message ending ``then``);
    the checkpoints hold the rest."""
    try:
        with _progress(console) as progress, _stop_on_signals() as stop:
            tasks = {
                state.resource: progress.add_task(
                    f"{job.store_id} {state.resource}",
                    total=1 if state.done else None,
                    completed=1 if state.done else 0,
                    pages=state.pages,
                    records=state.records,
                    events=state.events,
                )
                for state in plan
            }

            def on_page(done: PageDone) -> None:
                task = tasks[done.resource]
                fields: dict[str, Any] = progress.tasks[task].fields
                progress.update(
                    task,
                    pages=fields["pages"] + 1,
                    records=fields["records"] + done.records,
                    events=fields["events"] + done.events,
                )
                if done.done:
                    progress.update(task, total=1, completed=1)

            job.on_page = on_page
            return job.run(plan, stop)
    except JobStopped as exc:
        console.print(f"[yellow]{exc}[/]")
        raise typer.Exit(STOPPED) from None
    except ApiError as exc:
        raise fail(f"{exc}; {then}") from None
    except KafkaException as exc:
        raise fail(f"Kafka: {exc}; {then}") from None


def backfill_command(
    store_id: str = typer.Option(..., "--store", help="The store to read history from."),
    since: str = typer.Option("12mo", "--since", help="How far back: 12mo, 90d, 2w, 1y or a date."),
    page_size: int | None = typer.Option(
        None, "--page-size", help="Records per API page (default: the platform's largest)."
    ),
    restart: bool = typer.Option(
        False, "--restart", help="Start over instead of resuming from the last checkpoint."
    ),
) -> None:
    """Read a store's history from its platform API into the canonical topics (source
    backfill, the same event ids as webhooks), then compute and store its baseline. Resumable:
    run it again after a stop or a crash and it goes on from its last committed page."""
    settings = get_settings()
    console = Console(stderr=True)
    window_since = since_instant(since, datetime.now(UTC))
    opened = _open(settings, _store(settings, store_id), "backfill", "backfill")
    job = opened.job
    job.page_size = page_size
    job.on_orders = lambda facts: record_order_facts(opened.conn, store_id, facts)
    try:
        resume = {} if restart else job.checkpoints()
        kept = next(iter(resume.values()), None)
        if kept is not None and not all(c.done for c in resume.values()):
            window_since = kept.since or window_since
            console.print(f"resuming the backfill started {kept.until:%Y-%m-%d %H:%M} UTC")
        elif kept is not None:
            # Finished: its events are published; only the baseline is computed again.
            window_since = kept.since or window_since
            console.print(
                f"the backfill started {kept.until:%Y-%m-%d %H:%M} UTC is complete "
                "(--restart reads the history again)"
            )
        plan = job.plan(RESOURCES[opened.store.platform], window_since, resume)
        final = _run(console, job, plan)
        computed = _baseline(opened.conn, settings, opened.store, window_since, final)
    finally:
        opened.close()
    _print_baseline(store_id, computed)


def reconcile_command(
    store_id: str | None = typer.Option(
        None, "--store", help="One store (default: every store with its platform connected)."
    ),
    lookback: str = typer.Option(
        "1d",
        "--lookback",
        help="On a store's first reconciliation, how far back to compare: 1d, 12h, 2w...",
    ),
    every: str | None = typer.Option(
        None,
        "--every",
        help="Run again at this interval until interrupted: 15m, 1h... A store that fails is "
        "reported and tried again next round; /metrics on REVLOOP_RECONCILE_METRICS_PORT.",
    ),
) -> None:
    """Compare each store's recent changes (read from its platform API since the last
    reconciliation) with what the pipeline holds (the sink's tables), and publish what webhooks
    missed as ordinary events. Prints per store and resource what was read, held and
    published."""
    settings = get_settings()
    console = Console(stderr=True)
    if every is None:
        for store in _reconcilable(settings, store_id):
            _reconcile(settings, console, store, lookback)
        return
    interval = _interval(every)
    metrics = ReconcileMetrics()
    server = serve_metrics(
        metrics.registry,
        settings.reconcile_metrics_port,
        settings.metrics_host,
        process="reconcile",
    )
    try:
        while True:
            for store in _reconcilable(settings, store_id):
                _reconcile_in_turn(settings, console, store, lookback, metrics)
            metrics.rounds.inc()
            with _stop_on_signals() as stop:
                if stop.wait(interval.total_seconds()):
                    return
    finally:
        if server is not None:
            server.close()


def _reconcile_in_turn(
    settings: Settings, console: Console, store: Store, lookback: str, metrics: ReconcileMetrics
) -> None:
    """One store's run in a schedule. Its failure is reported and counted, and the other stores
    and the next round go on: a store's platform being down must not stop the rest. The next
    round resumes it from its checkpoints."""
    try:
        read, published = _reconcile(settings, console, store, lookback, NEXT_ROUND)
    except typer.Exit as exc:
        if exc.exit_code == STOPPED:
            raise  # a signal: the schedule ends
        metrics.failed(store.store_id)  # fail() has said why
    except (psycopg.Error, KafkaException) as exc:
        # The type and state only: a database error's detail may quote row values.
        state = getattr(exc, "sqlstate", None) or ""
        typer.secho(
            f"error: store {store.store_id}: {type(exc).__name__} {state}".rstrip()
            + f"; {NEXT_ROUND}",
            fg=typer.colors.RED,
            err=True,
        )
        metrics.failed(store.store_id)
    else:
        metrics.succeeded(store.store_id, read, published)


def _reconcile(
    settings: Settings,
    console: Console,
    store: Store,
    lookback: str,
    then: str = RUN_AGAIN,
) -> tuple[int, int]:
    """(events read, events published) of one store's reconciliation."""
    opened = _open(settings, store, "reconcile", "reconcile")
    job, read = opened.job, {"events": 0}

    def keep(events: list[Emit]) -> list[Emit]:
        read["events"] += len(events)
        return unheld(opened.conn, events)

    job.keep = keep
    try:
        previous = job.checkpoints()
        first_since = since_instant(lookback, datetime.now(UTC))
        plan = []
        for state in job.plan(RESOURCES[store.platform], first_since):
            before = previous.get(state.resource)
            if before is not None and not before.done:
                plan.append(before)  # a run killed midway: resumed
            elif before is not None:
                # Overlap the last run a little: a change stamped just before it ended.
                plan.append(replace(state, since=before.until - RECONCILE_OVERLAP))
            else:
                plan.append(state)
        final = _run(console, job, plan, then)
        held = pipeline_counts(
            opened.conn, store.store_id, min(s.since or first_since for s in plan)
        )
    finally:
        opened.close()
    published = sum(c.events for c in final.values())
    records = sum(c.records for c in final.values())
    typer.echo(
        f"{store.store_id}: read {records} changed records from {store.platform} "
        f"({', '.join(f'{c.resource} {c.records}' for c in final.values())}); "
        f"{read['events'] - published} events already held, {published} published; "
        f"the pipeline holds {', '.join(f'{k} {v}' for k, v in held.items())} changed since"
    )
    return read["events"], published


def _reconcilable(settings: Settings, store_id: str | None) -> list[Store]:
    if store_id is not None:
        return [_store(settings, store_id)]
    try:
        registry = StoreRegistry.load(settings.stores_file, SecretBox.from_settings(settings))
    except (CryptoError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    return [s for s in registry if s.connection(s.platform) is not None]


def _interval(value: str) -> timedelta:
    found = re.fullmatch(r"([0-9]{1,5})(s|m|h|d)", value.strip())
    if not found:
        raise typer.BadParameter(f"{value!r}: give 30s, 15m, 1h or 1d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
    return timedelta(**{unit: int(found[1])})


def _baseline(
    conn: psycopg.Connection[Any],
    settings: Settings,
    store: Store,
    since: datetime,
    final: dict[str, Checkpoint],
) -> Baseline | None:
    currencies = order_currencies(conn, store.store_id)
    currency = store.currency if store.currency in currencies else next(iter(currencies), None)
    if currency is None:
        return None
    until = max(c.until for c in final.values())
    computed = baseline(order_facts(conn, store.store_id), currency, since, until)
    store_computed_baseline(conn, settings, store.store_id, computed, datetime.now(UTC))
    return computed


def _print_baseline(store_id: str, computed: Baseline | None) -> None:
    if computed is None:
        typer.echo(f"{store_id}: no orders in the window; no baseline stored")
        return
    c = computed
    typer.echo(
        f"{store_id}: baseline {c.start:%Y-%m-%d} to {c.end:%Y-%m-%d} ({c.currency}, minor "
        f"units): revenue {c.revenue_minor}, {c.orders} orders, average {c.average_order_minor}, "
        f"{c.unique_customers} customers ({c.repeat_rate_bp / 100:.2f}% repeat), "
        f"{c.monthly_revenue_minor} a month; stored for settlement (source backfill)"
    )
