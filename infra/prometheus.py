"""An optional local Prometheus (Debian's ``prometheus`` binary) scraping every revloop process,
with the alert rules of infra/monitoring/rules; `revloop infra up --with-monitoring` starts it.

Its configuration is rendered from the settings' ports on every start; infra/monitoring/
prometheus.yml is the reference (and docker-compose's) copy with the default ports, and holds the
same jobs (tests/infra/test_monitoring.py checks).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import process
from infra.base import Component, Port, Progress, StackError
from revloop.metrics import reachable_host
from revloop.settings import Settings

MONITORING_DIR = Path(__file__).with_name("monitoring")
RULES_GLOB = MONITORING_DIR / "rules" / "*.yml"
INSTALL_HINT = "apt-get install prometheus"
RETENTION = ("--storage.tsdb.retention.time=7d", "--storage.tsdb.retention.size=1GB")
"""A development machine's Prometheus: a week of history, bounded on disk either way."""


@dataclass(frozen=True)
class ScrapeJob:
    job: str
    port_setting: str
    """The settings field holding its port (0: the process serves no /metrics)."""
    scrape_interval: str | None = None
    """None: the global 15 s."""
    runs_unless_zero: str | None = None
    """A settings field whose 0 means `revloop up` does not run the process at all."""


# Every long-running process, by the name `revloop up` supervises it under (the job name).
SCRAPE_JOBS = (
    ScrapeJob("ingest", "ingest_port"),
    # The exporter samples every 5 s (`revloop lag --serve`); faster would only repeat a sample.
    ScrapeJob("lag-exporter", "lag_exporter_port", scrape_interval="5s"),
    ScrapeJob("normalize", "normalizer_metrics_port"),
    ScrapeJob("worker", "worker_metrics_port"),
    ScrapeJob("sink-postgres", "sink_metrics_port"),
    ScrapeJob("connect-hydrate", "hydrator_metrics_port"),
    ScrapeJob("connect-ads", "ads_metrics_port"),
    ScrapeJob("reconcile", "reconcile_metrics_port", runs_unless_zero="reconcile_every_seconds"),
    # The local stack's schema registry (Quarkus/Micrometer metrics on its management port).
    ScrapeJob("schema-registry", "registry_management_port"),
)


def render_config(settings: Settings, *, rules: str = str(RULES_GLOB)) -> dict[str, Any]:
    """The scrape configuration for these settings: Prometheus itself, then every job whose
    port is not 0 (and whose process runs), with the rule files at their absolute path."""
    host = reachable_host(settings.metrics_host)
    jobs: list[dict[str, Any]] = [_job("prometheus", f"{host}:{settings.prometheus_port}", None)]
    for spec in SCRAPE_JOBS:
        port = int(getattr(settings, spec.port_setting))
        if port == 0 or (spec.runs_unless_zero and not getattr(settings, spec.runs_unless_zero)):
            continue
        job_host = {
            "ingest": reachable_host(settings.ingest_host),
            "schema-registry": reachable_host(settings.registry_host),
        }.get(spec.job, host)
        jobs.append(_job(spec.job, f"{job_host}:{port}", spec.scrape_interval))
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [rules],
        "scrape_configs": jobs,
    }


def _job(name: str, target: str, interval: str | None) -> dict[str, Any]:
    job: dict[str, Any] = {"job_name": name}
    if interval is not None:
        job["scrape_interval"] = interval
    job["static_configs"] = [{"targets": [target]}]
    return job


class PrometheusServer(Component):
    name = "prometheus"
    label = "Prometheus"

    def __init__(self, settings: Settings, *, state_dir: Path, progress: Progress) -> None:
        self.base_dir = state_dir / "prometheus"
        super().__init__(
            host=settings.metrics_host,
            progress=progress,
            pid_file=process.PidFile(self.base_dir / "prometheus.pid"),
            data_dir=self.base_dir / "data",
            log_file=state_dir / "logs" / "prometheus.log",
        )
        self.settings = settings
        self.config_file = self.base_dir / "prometheus.yml"

    @property
    def ports(self) -> tuple[Port, ...]:
        return (Port(self.settings.prometheus_port, "REVLOOP_PROMETHEUS_PORT"),)

    @property
    def url(self) -> str:
        return f"http://{reachable_host(self.host)}:{self.ports[0].number}"

    def _is_ours(self, argv: list[str]) -> bool:
        return bool(argv) and argv[0].endswith("prometheus") and self._config_flag in argv

    @property
    def _config_flag(self) -> str:
        return f"--config.file={self.config_file}"

    def _probe(self) -> str | None:
        return process.http_probe(f"{self.url}/-/ready")

    def check_can_start(self) -> None:
        if _binary() is None:
            raise StackError(
                f"prometheus is not on PATH; `revloop infra up --with-monitoring` needs it: "
                f"{INSTALL_HINT} (or leave out --with-monitoring)"
            )
        self.check_ports_free()

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Written by `revloop infra up --with-monitoring` on every start; JSON is YAML.\n"
            + json.dumps(render_config(self.settings), indent=2)
            + "\n"
        )

    def start(self) -> None:
        binary = _binary()
        assert binary is not None  # check_can_start ran first
        argv = [
            binary,
            self._config_flag,
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            *RETENTION,
        ]
        self.progress(f"{self.label}: starting on {self.address}")
        pid = process.spawn_detached(
            argv,
            log_file=self.log_file,
            cwd=self.base_dir,
            banner=f"revloop infra up: starting {self.label}",
        )
        self.pid_file.write(pid)


def _binary() -> str | None:
    return shutil.which("prometheus")
