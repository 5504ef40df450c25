"""`revloop lag`: every consumer group's lag in messages and seconds, with Burrow's statuses
(docs/ops.md, "Consumer lag")."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import typer
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from rich.console import Console
from rich.live import Live
from rich.table import Table

from revloop.consumer_lag import Status
from revloop.lag_sampler import LagSampler, Report, as_json
from revloop.metrics import serve_metrics
from revloop.settings import get_settings

_STYLE = {
    Status.OK: "green",
    Status.WARN: "yellow",
    Status.REWIND: "magenta",
    Status.STALL: "red",
    Status.STOP: "bold red",
}


log = logging.getLogger(__name__)


def render(report: Report) -> Table:
    table = Table(title="Consumer lag", title_justify="left", show_edge=False)
    for column in ("group", "topic", "partition", "committed", "end", "lag", "lag s", "status"):
        table.add_column(column, justify="left" if column in ("group", "topic") else "right")
    for r in report.rows:
        table.add_row(
            r.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            str(r.lag),
            f"{r.lag_seconds:.1f}",
            f"[{_STYLE[r.status]}]{r.status.value}[/]",
        )
    for g in report.groups:
        table.add_row(
            f"[bold]{g.group}[/]",
            f"{g.partitions} partitions, {g.members} members",
            "",
            "",
            "",
            str(g.lag),
            f"{g.max_lag_seconds:.1f}",
            f"[bold {_STYLE[g.status]}]{g.status.value}[/]",
        )
    return table


class LagCollector:
    """The last sample as Prometheus metrics, named as kafka-lag-exporter names them."""

    def __init__(self) -> None:
        self.report: Report | None = None

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        labels = ["group", "topic", "partition"]
        offset = GaugeMetricFamily(
            "kafka_consumergroup_group_offset", "Committed offset.", labels=labels
        )
        lag = GaugeMetricFamily(
            "kafka_consumergroup_group_lag", "Readable messages not yet read.", labels=labels
        )
        seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_lag_seconds",
            "Age of the oldest unread message.",
            labels=labels,
        )
        latest = GaugeMetricFamily(
            "kafka_partition_latest_offset", "Log-end offset.", labels=["topic", "partition"]
        )
        ends = {}
        for r in report.rows:
            key = [r.group, r.topic, str(r.partition)]
            if r.committed is not None:
                offset.add_metric(key, r.committed)
            lag.add_metric(key, r.lag)
            seconds.add_metric(key, r.lag_seconds)
            ends[(r.topic, str(r.partition))] = r.end
        for (topic, partition), end in sorted(ends.items()):
            latest.add_metric([topic, partition], end)
        max_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag", "Largest partition lag.", labels=["group"]
        )
        max_seconds = GaugeMetricFamily(
            "kafka_consumergroup_group_max_lag_seconds",
            "Largest partition lag in seconds.",
            labels=["group"],
        )
        sum_lag = GaugeMetricFamily(
            "kafka_consumergroup_group_sum_lag", "Total lag of the group.", labels=["group"]
        )
        status = GaugeMetricFamily(
            "revloop_consumergroup_status",
            "The group's status: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP.",
            labels=["group"],
        )
        for g in report.groups:
            own = [r.lag for r in report.rows if r.group == g.group]
            max_lag.add_metric([g.group], max(own, default=0))
            max_seconds.add_metric([g.group], g.max_lag_seconds)
            sum_lag.add_metric([g.group], g.lag)
            status.add_metric([g.group], g.status.severity)
        yield from (offset, lag, seconds, latest, max_lag, max_seconds, sum_lag, status)


def lag_command(
    watch: bool = typer.Option(False, "--watch", help="Sample again every --interval, live."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between samples."),
    groups: str | None = typer.Option(
        None, "--groups", help="Only groups starting with this (default: the topic prefix)."
    ),
    as_json_output: bool = typer.Option(False, "--json", help="One JSON document per sample."),
    serve: int | None = typer.Option(
        None,
        "--serve",
        min=1,
        max=65535,
        help="Serve the figures as Prometheus metrics on this port (on REVLOOP_METRICS_HOST), "
        "sampling every --interval, until interrupted.",
    ),
) -> None:
    """Each consumer group's committed offset, log-end offset and lag per partition, the lag in
    seconds, and its status (OK, WARN, STALL, STOP, REWIND) over the last samples. A one-shot
    run keeps its samples in the state directory, so statuses build up across runs."""
    settings = get_settings()
    sampler = LagSampler(settings, groups_prefix=groups)
    state = settings.state_dir / "lag-samples.json"
    sampler.load(state)
    console = Console()

    def show(report: Report) -> None:
        if as_json_output:
            typer.echo(json.dumps(as_json(report)))
        else:
            console.print(render(report))

    try:
        if serve is not None:
            collector = LagCollector()
            registry = CollectorRegistry()
            registry.register(collector)
            # Serving is this mode's whole point: a port it cannot bind ends it (exit 1), for
            # the supervisor to retry, rather than sampling for nobody.
            try:
                serve_metrics(registry, serve, settings.metrics_host, process="lag", required=True)
            except OSError as exc:
                where = f"{settings.metrics_host}:{serve}"
                typer.secho(
                    f"error: cannot serve on {where}: {exc.strerror or exc}",
                    fg=typer.colors.RED,
                    err=True,
                )
                raise typer.Exit(1) from None
            while True:
                try:
                    collector.report = sampler.sample()
                except KafkaException as exc:
                    # Keep serving, with no figures rather than stale ones; the next sample
                    # may find the broker back.
                    collector.report = None
                    log.warning("lag sample failed: %s", exc)
                time.sleep(interval)
        if not watch:
            show(sampler.sample())
            sampler.save(state)
            return
        if as_json_output:
            while True:
                show(sampler.sample())
                time.sleep(interval)
        with Live(render(sampler.sample()), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(interval)
                live.update(render(sampler.sample()))
    except KafkaException as exc:
        typer.secho(f"error: Kafka: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        sampler.save(state)
