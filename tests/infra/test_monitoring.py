"""infra/monitoring: every dashboard query and alert names metrics the project exports, every
alert has a promtool test, and `revloop infra up --with-monitoring`'s Prometheus runs them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.core import Metric
from typer.testing import CliRunner

from infra.cli import app
from infra.prometheus import MONITORING_DIR, render_config
from infra.stack import ComponentStatus, Stack, StackStatus, State
from revloop.consumer_lag import Status
from revloop.lag_sampler import GroupSummary, Report, Row
from revloop.settings import Settings, get_settings
from tests import ROOT
from tests.stack_support import SHARED_LIB_DIR, SHARED_REGISTRY_DIST, free_ports, scratch_state_dir

RULES = MONITORING_DIR / "rules" / "revloop.yml"
RULE_TESTS = MONITORING_DIR / "tests" / "revloop_test.yml"
DASHBOARDS = sorted((MONITORING_DIR / "grafana" / "dashboards").glob("*.json"))

# --- what the project exports ---------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def _exposed(families: Iterable[Metric]) -> set[str]:
    """The names a query can use: a counter family ``x`` is scraped as ``x_total``, etc."""
    names: set[str] = set()
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def _lag_exporter_names() -> set[str]:
    from revloop.cli.lag import LagCollector

    collector = LagCollector()
    collector.report = Report(  # it exports nothing before its first sample
        at=0.0,
        rows=[Row("g", "t", 0, 1, 2, 1, 1.0, Status.OK)],
        groups=[GroupSummary("g", Status.OK, 1, 1.0, 1, 1)],
    )
    return _exposed(collector.collect())


def _recorded() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


@pytest.fixture(scope="module")
def known_metrics() -> set[str]:
    from connectors.metrics import ConnectorMetrics, ReconcileMetrics
    from ingest.metrics import IngestMetrics
    from sinks.postgres.metrics import OpsViewsCollector, SinkMetrics
    from streams.normalizer.processor import NormalizerMetrics
    from streams.runtime.metrics import WorkerMetrics

    names = _lag_exporter_names() | _recorded() | {"up"}  # `up`: Prometheus's own, per target
    for registry in (
        IngestMetrics().registry,
        NormalizerMetrics().registry,
        WorkerMetrics().registry,
        SinkMetrics(None).registry,
        ConnectorMetrics("ads").registry,
        ReconcileMetrics().registry,
    ):
        names |= _exposed(registry.collect())
    # The sink's gauges read from Postgres at scrape time; describe() names them without it.
    names |= _exposed(OpsViewsCollector("postgresql://unused").describe())
    return names


# --- reading PromQL -------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords,
    label names (in matchers and grouping clauses), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings may hold anything
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def test_metric_names_reads_what_promql_reads() -> None:
    expr = (
        'sum by (platform) (rate(a_total{outcome="x or y"}[5m])) / on (platform) '
        "max without (instance) (b:rec) > 0.01 and histogram_quantile(0.9, c_bucket)"
    )
    assert metric_names(expr) == {"a_total", "b:rec", "c_bucket"}


# --- the files ------------------------------------------------------------------------------


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def test_dashboards_query_only_metrics_that_exist(known_metrics: set[str]) -> None:
    assert DASHBOARDS
    exprs = list(_dashboard_exprs())
    titles = " ".join(where for where, _ in exprs).lower()
    for panel in ("lag in seconds", "lag in messages", "per topic", "webhook outcomes"):
        assert panel in titles
    for panel in ("open circuit breakers", "ledger totals"):
        assert panel in titles
    unknown = {
        where: sorted(metric_names(expr) - known_metrics)
        for where, expr in exprs
        if metric_names(expr) - known_metrics
    }
    assert unknown == {}
    assert all(metric_names(expr) for _, expr in exprs)  # each panel reads something


def test_alerts_read_existing_metrics_link_a_runbook_and_have_a_promtool_test(
    known_metrics: set[str],
) -> None:
    rules = _rules()
    unknown = {
        r.get("alert") or r["record"]: sorted(metric_names(r["expr"]) - known_metrics)
        for r in rules
        if metric_names(r["expr"]) - known_metrics
    }
    assert unknown == {}

    alerts = {r["alert"] for r in _alerts()}
    assert {
        "ConsumerGroupLagOverSLO",
        "ConsumerGroupStalled",
        "DeadLettersGrowing",
        "CircuitBreakerFlapping",
        "IngestErrorRate",
        "IngestUnavailableRate",
        "ReconcileFailing",
        "ScrapeTargetDown",
    } <= alerts
    for rule in _alerts():
        assert rule["annotations"]["runbook"] == f"docs/ops.md#{rule['alert'].lower()}"

    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - firing == set(), "alerts without a promtool test that makes them fire"
    # Every group with a lag SLO is tested against its own threshold.
    slo = next(r for r in rules if r.get("record") == "revloop:consumergroup_lag_slo_seconds")
    slo_groups = set(re.findall(r'group=~"\.\*([^"]+)"', slo["expr"]))
    tested = {
        series["series"].split('group="', 1)[1].split('"', 1)[0]
        for test in tests
        for series in test["input_series"]
        if series["series"].startswith("kafka_consumergroup_group_max_lag_seconds")
    }
    assert {g.replace("\\\\", "").replace("\\", "") for g in slo_groups} <= tested


def test_promtool_passes_the_rule_tests() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_checked_in_config_has_the_jobs_the_local_one_renders() -> None:
    checked_in = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    rendered = render_config(Settings.model_construct())  # every default, no environment
    assert rendered["scrape_configs"] == checked_in["scrape_configs"]
    assert rendered["global"] == checked_in["global"]
    assert rendered["rule_files"] == [str(MONITORING_DIR / checked_in["rule_files"][0])]

    moved = Settings.model_construct(
        worker_metrics_port=0, reconcile_every_seconds=0, ingest_host="::", metrics_host="::"
    )
    jobs = {
        j["job_name"]: j["static_configs"][0]["targets"]
        for j in render_config(moved)["scrape_configs"]
    }
    assert "worker" not in jobs  # port 0: no /metrics
    assert "reconcile" not in jobs  # not run at all
    assert jobs["ingest"] == ["127.0.0.1:8080"]  # a wildcard bind is scraped on loopback
    assert jobs["lag-exporter"] == ["127.0.0.1:9400"]


def test_compose_runs_the_prometheus_the_rules_are_tested_with() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = shutil.which("prometheus")
    assert prometheus is not None, "prometheus is not installed: apt-get install prometheus"
    version = subprocess.run(
        [prometheus, "--version"], capture_output=True, text=True, check=True
    ).stdout
    debian = re.search(r"version (\d+\.\d+\.\d+)", version + "")
    assert debian is not None
    assert services["prometheus"]["image"] == f"prom/prometheus:v{debian.group(1)}"
    mounts = services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    for mount in mounts:
        source = mount.split(":", 1)[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), mount


def test_healthy_needs_no_monitoring_but_a_running_one_must_be_healthy(tmp_path: Path) -> None:
    stack = Stack(Settings.model_construct(state_dir=tmp_path))
    status = stack.status()
    assert status["prometheus"].state is State.STOPPED

    def with_prometheus(state: State) -> tuple[ComponentStatus, ...]:
        return tuple(
            replace(c, state=state if c.name == "prometheus" else State.HEALTHY)
            for c in status.components
        )

    assert StackStatus(tmp_path, with_prometheus(State.STOPPED), stack.optional).healthy
    assert StackStatus(tmp_path, with_prometheus(State.HEALTHY), stack.optional).healthy
    assert not StackStatus(tmp_path, with_prometheus(State.UNHEALTHY), stack.optional).healthy
    assert not StackStatus(tmp_path, with_prometheus(State.STOPPED)).healthy  # not optional


# --- a real Prometheus ----------------------------------------------------------------------


def _get(url: str, **params: str) -> Any:
    response = httpx.get(url, params=params, timeout=5, trust_env=False)
    response.raise_for_status()
    return response.json()


def test_local_prometheus_scrapes_every_job_and_evaluates_every_query() -> None:
    with scratch_state_dir() as state_dir:
        port, ingest_port = free_ports(2)
        settings = Settings(
            state_dir=state_dir,
            prometheus_port=port,
            ingest_port=ingest_port,
            kafka_bootstrap_servers=None,
            database_url=None,
            # The defaults, whatever the environment says (tests/conftest.py turns them off).
            **{
                name: field.default
                for name, field in Settings.model_fields.items()
                if name.endswith("_metrics_port")
            },
        )
        stack = Stack(settings)
        server = stack.prometheus
        server.check_can_start()
        server.prepare()
        server.start()
        try:
            server.wait_healthy(30)
            assert stack.status()["prometheus"].state is State.HEALTHY

            # The discovery manager hands targets over after ~5 s.
            deadline = time.monotonic() + 15
            while True:
                targets = _get(f"{server.url}/api/v1/targets")["data"]["activeTargets"]
                if targets or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            jobs = {t["labels"]["job"]: t["scrapeUrl"] for t in targets}
            assert set(jobs) == {"prometheus", *(j["job_name"] for j in _expected_jobs())}
            assert jobs["ingest"] == f"http://127.0.0.1:{ingest_port}/metrics"
            assert jobs["prometheus"] == f"http://127.0.0.1:{port}/metrics"

            groups = _get(f"{server.url}/api/v1/rules")["data"]["groups"]
            loaded = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
            assert loaded == {r["alert"] for r in _alerts()}

            # Prometheus's own parser on every dashboard query (Grafana cannot run here).
            for where, expr in _dashboard_exprs():
                answer = _get(f"{server.url}/api/v1/query", query=expr)
                assert answer["status"] == "success", (where, answer)

            # `infra down` stops it with the rest (nothing else runs in this state dir).
            assert stack.down().changed == ("prometheus",)
            assert stack.status()["prometheus"].state is State.STOPPED
        finally:
            server.stop(10)


def _expected_jobs() -> list[dict[str, Any]]:
    checked_in = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
    return [j for j in checked_in["scrape_configs"] if j["job_name"] != "prometheus"]


def test_with_monitoring_without_prometheus_says_how_to_install_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with scratch_state_dir() as tools, scratch_state_dir() as state_dir:
        # A PATH with what the broker's and Postgres's checks run (as the postgres user, hence
        # not pytest's private tmp_path), but no prometheus.
        for tool in ("java", "mvn", "runuser", "test"):
            found = shutil.which(tool)
            if found:
                (tools / tool).symlink_to(found)
        kafka_port, controller_port, postgres_port, prometheus_port, *registry = free_ports(6)
        for var, value in {
            "REVLOOP_STATE_DIR": state_dir,
            "REVLOOP_KAFKA_LIB_DIR": SHARED_LIB_DIR,
            "REVLOOP_REGISTRY_DIST_DIR": SHARED_REGISTRY_DIST,
            "REVLOOP_KAFKA_PORT": kafka_port,
            "REVLOOP_KAFKA_CONTROLLER_PORT": controller_port,
            "REVLOOP_POSTGRES_PORT": postgres_port,
            "REVLOOP_REGISTRY_PORT": registry[0],
            "REVLOOP_REGISTRY_MANAGEMENT_PORT": registry[1],
            "REVLOOP_PROMETHEUS_PORT": prometheus_port,
            "PATH": tools,
        }.items():
            monkeypatch.setenv(var, str(value))
        for var in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REVLOOP_DATABASE_URL"):
            monkeypatch.delenv(var, raising=False)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["up", "--with-monitoring"])
            status = Stack(get_settings()).status()
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 1, result.output
        assert "apt-get install prometheus" in " ".join(result.output.split())
        assert status.stopped  # checked before anything started
        assert not (state_dir / "kafka" / "data").exists()
