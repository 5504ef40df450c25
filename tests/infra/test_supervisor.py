"""`revloop up | status | down`, run as real subprocesses against the test broker.

Each deployment has a scratch state dir, its own topic prefix, a free ingest port, master keys
from `revloop stores keygen` and one Shopify store. The supervisor and its processes are real;
the crash loop is a real one (ingest's port taken by another socket).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra import process
from infra.supervisor import (
    Backoff,
    ProcState,
    RunPaths,
    SupervisorRecord,
    read_state,
    running_supervisor,
)
from revloop.kafka import consumer_config, delete_topics
from revloop.settings import Settings
from schemas.topics import prefixed
from tests import FIXTURES
from tests.ingest_support import SERDE, SHOP_SECRET, shopify_delivery
from tests.stack_support import free_ports

GRACE = 2.0
BACKOFF = Backoff(initial=0.5, cap=4.0, reset_after=60.0)


@dataclass
class Deployment:
    state_dir: Path
    env: dict[str, str]
    port: int
    prefix: str
    metrics_ports: dict[str, int] = field(default_factory=dict)
    """Each supervised process's /metrics port (ingest serves it on ``port``)."""

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.state_dir)

    def revloop(
        self, *args: str, stdin: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "revloop", *args],
            env=self.env | env,
            cwd=self.state_dir,  # no .env of the checkout's
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> tuple[int, dict[str, Any]]:
        result = self.revloop("status", "--json")
        return result.returncode, json.loads(result.stdout)

    def state(self) -> SupervisorRecord:
        record = read_state(self.paths)
        assert record is not None
        return record

    def pid_of(self, name: str) -> int:
        proc = self.state().process(name)
        assert proc is not None and proc.pid is not None, proc
        return proc.pid

    def every_pid(self) -> set[int]:
        supervisor = running_supervisor(self.paths)
        record = read_state(self.paths)
        pids = {p.pid for p in record.processes if p.pid} if record else set()
        return pids | ({supervisor} if supervisor else set()) | ({record.pid} if record else set())

    def readyz(self) -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code
        except httpx.HTTPError:
            return 0


def _isolated_env() -> dict[str, str]:
    """This machine's environment minus every setting, so only what a test sets applies."""
    drop = {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SCHEMA_REGISTRY_URL"}
    return {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_") and k not in drop}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took until ``check()``; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _force_cleanup(deployment: Deployment) -> None:
    """Whatever `down` left (it failed, or the test did before calling it): SIGKILL."""
    supervisor = running_supervisor(deployment.paths)
    if supervisor is not None:
        os.killpg(supervisor, signal.SIGKILL)
    record = read_state(deployment.paths)
    for proc in record.processes if record else ():
        if proc.pid and process.pid_alive(proc.pid) and process.cmdline(proc.pid) == [*proc.argv]:
            os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def prepared(settings: Settings) -> Iterator[Deployment]:
    state_dir = Path(tempfile.mkdtemp(prefix="revloop-test-up-"))
    prefix = f"test-up-{uuid.uuid4().hex[:10]}."
    port, *ports = free_ports(8)
    metrics = dict(
        zip(
            (
                "lag-exporter",
                "normalize",
                "worker",
                "sink-postgres",
                "connect-hydrate",
                "connect-ads",
                "reconcile",
            ),
            ports,
            strict=True,
        )
    )
    deployment = Deployment(
        state_dir,
        _isolated_env()
        | {
            "REVLOOP_STATE_DIR": str(state_dir),
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "DATABASE_URL": settings.dsn,
            "REVLOOP_TOPIC_PREFIX": prefix,
            "REVLOOP_INGEST_PORT": str(port),
            "REVLOOP_CUSTOMER_KEY_SALT": secrets.token_urlsafe(32),
            "REVLOOP_SUPERVISOR_BACKOFF_INITIAL_SECONDS": str(BACKOFF.initial),
            "REVLOOP_SUPERVISOR_BACKOFF_MAX_SECONDS": str(BACKOFF.cap),
            "REVLOOP_SUPERVISOR_BACKOFF_RESET_SECONDS": str(BACKOFF.reset_after),
            "REVLOOP_SUPERVISOR_STOP_GRACE_SECONDS": str(GRACE),
            "REVLOOP_LAG_EXPORTER_PORT": str(metrics["lag-exporter"]),
            "REVLOOP_NORMALIZER_METRICS_PORT": str(metrics["normalize"]),
            "REVLOOP_WORKER_METRICS_PORT": str(metrics["worker"]),
            "REVLOOP_SINK_METRICS_PORT": str(metrics["sink-postgres"]),
            "REVLOOP_HYDRATOR_METRICS_PORT": str(metrics["connect-hydrate"]),
            "REVLOOP_ADS_METRICS_PORT": str(metrics["connect-ads"]),
            "REVLOOP_RECONCILE_METRICS_PORT": str(metrics["reconcile"]),
        },
        port,
        prefix,
        metrics,
    )
    try:
        keygen = deployment.revloop("stores", "keygen")
        assert keygen.returncode == 0, keygen.stderr
        deployment.env["REVLOOP_MASTER_KEYS"] = keygen.stdout.strip()
        added = deployment.revloop(
            "stores",
            "add",
            "--store-id=acme-shopify",
            "--platform=shopify",
            "--identity=acme.myshopify.com",
            "--currency=USD",
            "--secret=-",
            stdin=SHOP_SECRET.decode(),
        )
        assert added.returncode == 0, added.stderr
        yield deployment
    finally:
        _force_cleanup(deployment)
        # The catalogue, and the worker's own topics (their names carry its prefixed group).
        admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
        ours = [n for n in admin.list_topics(timeout=10).topics if prefix in n]
        delete_topics(settings, sorted({*ours, *(t.name for t in prefixed(prefix))}))
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def deployment(prepared: Deployment) -> Iterator[Deployment]:
    try:
        yield prepared
    finally:
        prepared.revloop("down", "--keep-infra", timeout=60)
        _force_cleanup(prepared)


def test_backoff_doubles_to_its_cap() -> None:
    assert [BACKOFF.delay(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert Backoff(1.0, 30.0, 60.0).delay(10_000) == 30.0


def test_up_checks_what_every_process_needs_before_starting_anything(
    deployment: Deployment, admin: AdminClient
) -> None:
    prefix = f"test-up-refused-{uuid.uuid4().hex[:8]}."
    before = read_state(deployment.paths)
    env = {k: v for k, v in deployment.env.items() if k != "REVLOOP_CUSTOMER_KEY_SALT"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "revloop", "up"],
            env=env
            | {
                "REVLOOP_TOPIC_PREFIX": prefix,
                "REVLOOP_INGEST_PORT": str(taken_port),
                "REVLOOP_LAG_EXPORTER_PORT": str(taken_port),
                "REVLOOP_STORES_FILE": str(deployment.state_dir / "no-such-stores.json"),
            },
            cwd=deployment.state_dir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert "nothing started" in message
    assert "ingest: REVLOOP_CUSTOMER_KEY_SALT is not set" in message
    assert "normalize: REVLOOP_CUSTOMER_KEY_SALT is not set" in message
    assert f"port {taken_port} on 127.0.0.1 is already in use by pid {os.getpid()}" in message
    assert "REVLOOP_INGEST_PORT" in message
    assert f"lag-exporter: port {taken_port} on 127.0.0.1 is already in use" in message
    assert "REVLOOP_LAG_EXPORTER_PORT" in message
    assert "no-such-stores.json does not exist" in message
    assert deployment.env["REVLOOP_MASTER_KEYS"] not in result.stdout + result.stderr
    # Nothing started, not even the topics.
    assert running_supervisor(deployment.paths) is None
    assert read_state(deployment.paths) == before
    assert not any(name.startswith(prefix) for name in admin.list_topics(timeout=10).topics)


def test_up_supervises_the_pipeline_and_down_stops_it(
    deployment: Deployment, settings: Settings
) -> None:
    up = deployment.revloop("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Local stack: not used" in up.stderr  # the endpoints point at the test broker
    assert deployment.readyz() == 200

    table = deployment.revloop("status")
    assert table.returncode == 0, table.stdout + table.stderr
    supervisor = running_supervisor(deployment.paths)
    assert supervisor is not None
    assert f"Supervisor: pid {supervisor}, running since" in table.stdout
    assert "Database: database at revision" in up.stdout  # the sink's tables are ready
    for name in (
        "ingest",
        "normalize",
        "worker",
        "sink-postgres",
        "connect-hydrate",
        "connect-ads",
        "reconcile",
        "lag-exporter",
    ):
        pid = deployment.pid_of(name)
        assert re.search(rf"{name}\s+running\s+{pid}\s+\d+s\s+0\s+-", table.stdout), table.stdout
        assert os.getpgid(pid) == supervisor  # in the supervisor's group
        assert (deployment.state_dir / "logs" / f"{name}.log").exists()

    again = deployment.revloop("up")
    assert again.returncode == 0, again.stderr
    assert f"already running (supervisor pid {supervisor})" in " ".join(again.stdout.split())
    assert running_supervisor(deployment.paths) == supervisor

    # A signed delivery to the supervised ingest becomes a canonical order event.
    body = (FIXTURES / "shopify" / "orders__create.json").read_bytes()
    headers = shopify_delivery(body)
    response = httpx.post(
        f"http://127.0.0.1:{deployment.port}/webhooks/shopify", content=body, headers=headers
    )
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    [order] = read_caused_by(settings, f"{deployment.prefix}commerce.orders.v1", event_id)
    assert order["envelope"]["store_id"] == "acme-shopify"

    # ...which the supervised sink writes to Postgres, its offset with it.
    def sink_wrote_it() -> bool:
        with psycopg.connect(settings.dsn) as conn:
            found = conn.execute(
                "SELECT next_offset FROM kafka_offsets WHERE group_id = %s AND topic = %s",
                (
                    f"{deployment.prefix}revloop.sinks.postgres",
                    f"{deployment.prefix}commerce.orders.v1",
                ),
            ).fetchall()
        return sum(offset for (offset,) in found) >= 1

    wait_for(sink_wrote_it, 60, "the sink wrote the order")

    # Every supervised process serves /metrics on its port, with its own families.
    orders = f"{deployment.prefix}commerce.orders.v1"
    expected = {
        "normalize": 'revloop_normalizer_records_total{outcome="normalized",platform="shopify"',
        "worker": 'revloop_circuit_breaker_actions_total{action="pause"} 0.0',
        "sink-postgres": f'revloop_sink_records_total{{topic="{orders}"}}',
        "connect-hydrate": 'revloop_connector_dead_letters_total{connector="hydrate"} 0.0',
        "connect-ads": 'revloop_connector_dead_letters_total{connector="ads"} 0.0',
        # No store has its platform API connected: a round of nothing, then a 900 s wait.
        "reconcile": "revloop_reconcile_rounds_total 1.0",
        "lag-exporter": f'kafka_consumergroup_group_lag{{group="{deployment.prefix}',
    }
    for name, family in expected.items():
        url = f"http://127.0.0.1:{deployment.metrics_ports[name]}/metrics"
        try:
            wait_for(lambda: family in _get(url), 30, f"{name} serves {family}")  # noqa: B023
        except AssertionError:
            log = (deployment.state_dir / "logs" / f"{name}.log").read_text()[-2000:]
            raise AssertionError(f"{name}: no {family} in\n{_get(url)}\nlog:\n{log}") from None
        assert "process_cpu_seconds_total" in _get(url)
    assert "revloop_sink_ops_views_up 1.0" in _get(
        f"http://127.0.0.1:{deployment.metrics_ports['sink-postgres']}/metrics"
    )

    # SIGKILL the normalizer: the supervisor starts it again after the first backoff.
    killed = deployment.pid_of("normalize")
    os.kill(killed, signal.SIGKILL)

    def normalizer_restarted() -> bool:
        proc = deployment.state().process("normalize")
        return proc is not None and proc.state is ProcState.RUNNING and proc.pid != killed

    took = wait_for(normalizer_restarted, BACKOFF.initial + 5, "the normalizer restarted")
    assert took >= BACKOFF.initial
    assert not process.pid_alive(killed)
    code, status = deployment.status()
    normalize = next(p for p in status["processes"] if p["name"] == "normalize")
    assert (code, normalize["state"], normalize["restarts"]) == (0, "running", 1)
    assert normalize["pid"] not in (killed, None)
    assert normalize["last_exit"] == "signal SIGKILL"

    # Take ingest's port from under it: each restart dies at once, and the waits grow.
    ingest = deployment.pid_of("ingest")
    log_offset = deployment.paths.supervisor_log.stat().st_size
    os.kill(ingest, signal.SIGKILL)
    blocker = socket.socket()
    # As uvicorn sets it; the kill may leave TIME_WAIT connections on the port.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        wait_for(lambda: _bound(blocker, deployment.port), 3, "ingest's port is free to take")
        wait_for(lambda: len(_ingest_exits(deployment, log_offset)) >= 4, 30, "ingest died 4 times")
        exits = _ingest_exits(deployment, log_offset)
        assert exits[0] == ("signal SIGKILL", BACKOFF.delay(0))
        assert [how for how, _ in exits[1:]] == [exits[1][0]] * (len(exits) - 1)
        assert exits[1][0].startswith("exit ") and exits[1][0] != "exit 0"
        assert [delay for _, delay in exits] == [BACKOFF.delay(n) for n in range(len(exits))]
        code, status = deployment.status()
        ingest_now = next(p for p in status["processes"] if p["name"] == "ingest")
        assert ingest_now["restarts"] >= 3
        assert (code == 0) == (ingest_now["state"] == "running")
        assert "address already in use" in (deployment.state_dir / "logs/ingest.log").read_text()
    finally:
        blocker.close()
    # Once the port is free again, the next restart (at most the cap away) stays up.
    wait_for(lambda: deployment.readyz() == 200, BACKOFF.cap + 15, "ingest is back")

    pids = deployment.every_pid() | {killed, ingest}
    started = time.monotonic()
    down = deployment.revloop("down", "--keep-infra")
    took = time.monotonic() - started
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Local stack: left running (--keep-infra)" in down.stdout
    assert took < GRACE + 10
    assert [pid for pid in pids if process.pid_alive(pid)] == []
    assert deployment.readyz() == 0
    code, status = deployment.status()
    assert code == 1 and not status["ok"]
    assert status["supervisor"]["running"] is False
    assert {p["state"] for p in status["processes"]} == {"stopped"}


def test_down_kills_a_supervisor_that_does_not_answer(deployment: Deployment) -> None:
    up = deployment.revloop("up")
    assert up.returncode == 0, up.stdout + up.stderr
    pids = deployment.every_pid()
    # The supervisor, ingest, normalizer, worker, sink, 2 connectors, reconcile, the exporter.
    assert len(pids) == 9
    supervisor = running_supervisor(deployment.paths)
    assert supervisor is not None
    os.kill(supervisor, signal.SIGSTOP)  # alive, but deaf to SIGTERM

    started = time.monotonic()
    down = deployment.revloop("down", "--keep-infra")
    took = time.monotonic() - started
    assert down.returncode == 0, down.stdout + down.stderr
    said = " ".join(down.stdout.split())
    assert f"Supervisor (pid {supervisor}) and its processes: SIGKILLed" in said
    assert GRACE + 5 <= took < GRACE + 20
    assert [pid for pid in pids if process.pid_alive(pid)] == []
    # The state file still says "running"; status believes /proc, not a dead supervisor's notes.
    code, status = deployment.status()
    assert code == 1
    assert {p["state"] for p in status["processes"]} == {"stopped"}


def _get(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def _bound(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    sock.listen()
    return True


_EXIT_LINE = re.compile(r"ingest \(pid \d+\) ended with (.+?) after .*; restarting in ([\d.]+) s")


def _ingest_exits(deployment: Deployment, offset: int) -> list[tuple[str, float]]:
    """(how it ended, the backoff chosen) for each of ingest's exits the supervisor logged
    after ``offset``."""
    with deployment.paths.supervisor_log.open("rb") as log:
        log.seek(offset)
        text = log.read().decode()
    return [(m[1], float(m[2])) for m in _EXIT_LINE.finditer(text)]


def read_caused_by(settings: Settings, topic: str, event_id: str) -> list[dict[str, Any]]:
    """The committed events on ``topic`` caused by the raw delivery ``event_id``, waiting until
    there is at least one."""
    consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 45
        while not found and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                if message.error() is None:
                    value = SERDE.decode(message.value() or b"").value
                    if event_id in value["envelope"]["caused_by"]:
                        found.append(value)
        assert found, f"nothing on {topic} caused by {event_id}"
        return found
    finally:
        consumer.close()
