"""`revloop infra` against real processes, in a second stack on free ports in a temporary state dir.

The default stack (9092/5432, which other tests use) is never touched; only its jar directory is
shared, so Maven resolves once.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psycopg
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

import infra.kafka
import infra.registry
from infra.cli import app
from infra.process import LOG_ROTATE_BYTES, pid_alive, rotate_log, spawn_detached
from infra.registry import java_major
from infra.stack import Stack, StackError, State
from revloop.settings import Settings, get_settings
from schemas.registry import ConfluentRegistry, event_names, load_definition, parse
from tests import ROOT
from tests.stack_support import isolated_settings, scratch_state_dir


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with scratch_state_dir() as path:
        yield path


@pytest.fixture
def make_settings(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # These would point settings.dsn / bootstrap_servers away from the isolated stack.
    for var in ("DATABASE_URL", "REVLOOP_DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("REVLOOP_KAFKA_BOOTSTRAP_SERVERS", raising=False)

    def make(**overrides: Any) -> Settings:
        return isolated_settings(overrides.pop("state_dir", state_dir), **overrides)

    return make


@pytest.fixture
def progress() -> list[str]:
    return []


@pytest.fixture
def stacks(progress: list[str]) -> Iterator[Any]:
    """Builds Stacks and always takes down whatever they started."""
    built: list[Stack] = []

    def build(settings: Settings) -> Stack:
        stack = Stack(settings, progress=progress.append, start_timeout=120)
        built.append(stack)
        return stack

    try:
        yield build
    finally:
        for stack in built:
            stack.down()


def test_port_taken_names_port_and_setting(
    make_settings: Any, stacks: Any, state_dir: Path
) -> None:
    for field, env_var in [
        ("kafka_port", "REVLOOP_KAFKA_PORT"),
        ("kafka_controller_port", "REVLOOP_KAFKA_CONTROLLER_PORT"),
        ("postgres_port", "REVLOOP_POSTGRES_PORT"),
        ("registry_port", "REVLOOP_REGISTRY_PORT"),
        ("registry_management_port", "REVLOOP_REGISTRY_MANAGEMENT_PORT"),
    ]:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            stack = stacks(make_settings(**{field: port}))

            started = time.monotonic()
            with pytest.raises(StackError) as raised:
                stack.up()
            assert time.monotonic() - started < 5

            message = str(raised.value)
            assert f"port {port} " in message
            assert env_var in message
            assert f"pid {os.getpid()} " in message  # it says who holds the port
            assert stack.status().stopped
            assert not (state_dir / "kafka" / "kafka.pid").exists()
            assert not (state_dir / "postgres" / "data").exists()


def test_stale_pid_file_is_reported_and_cleaned(
    make_settings: Any, stacks: Any, progress: list[str]
) -> None:
    stack = stacks(make_settings())
    pid_file = stack.kafka.pid_file
    pid_file.path.parent.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write(dead.pid)

    kafka = stack.status()["kafka"]
    assert kafka.state is State.STOPPED
    assert "stale pid file" in kafka.detail

    assert stack.down().changed == ()
    assert not pid_file.path.exists()
    assert progress == [
        f"Kafka broker: removed stale pid file {pid_file.path} (pid {dead.pid} is not running)"
    ]


def test_reused_pid_is_never_signalled(make_settings: Any, stacks: Any) -> None:
    stack = stacks(make_settings())
    stack.kafka.pid_file.path.parent.mkdir(parents=True)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        stack.kafka.pid_file.write(bystander.pid)
        assert stack.status()["kafka"].state is State.STOPPED
        stack.down()
        assert bystander.poll() is None
        assert not stack.kafka.pid_file.path.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_missing_tools_say_how_to_install(
    make_settings: Any, stacks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stacks(make_settings(postgres_bin_dir=tmp_path))
    with pytest.raises(StackError, match="apt-get install postgresql-15"):
        stack.up()

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="apt-get install openjdk-17-jre-headless maven"):
        stack.up()
    assert stack.status().stopped


def test_the_registry_refuses_a_java_older_than_21(make_settings: Any, stacks: Any) -> None:
    java_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
    assert java_major(java_17 / "bin" / "java") == 17
    stack = stacks(make_settings(registry_java_home=java_17))
    with pytest.raises(StackError, match=r"holds Java 17; the schema registry needs Java 21"):
        stack.up()
    assert stack.status().stopped
    # Left to find one itself, it takes the newest JDK on the machine.
    found = stacks(make_settings()).registry.java()
    assert (java_major(found) or 0) >= 21


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands Postgres to another OS user")
def test_state_dir_the_postgres_user_cannot_reach(make_settings: Any, stacks: Any) -> None:
    private = Path(tempfile.mkdtemp())  # mode 0700
    try:
        stack = stacks(make_settings(state_dir=private / "state"))
        with pytest.raises(StackError, match="cannot reach"):
            stack.up()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_cli_status_exits_1_when_stopped(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    settings = make_settings()
    monkeypatch.setenv("REVLOOP_STATE_DIR", str(state_dir))
    monkeypatch.setenv("REVLOOP_KAFKA_PORT", str(settings.kafka_port))
    monkeypatch.setenv("REVLOOP_POSTGRES_PORT", str(settings.postgres_port))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "stopped" in result.output
    assert "revloop infra up" in result.output


@pytest.mark.slow
def test_broker_that_dies_on_startup_reports_its_log(make_settings: Any, stacks: Any) -> None:
    stack = stacks(make_settings(kafka_heap="plenty"))
    with pytest.raises(StackError) as raised:
        stack.up()
    message = str(raised.value)
    assert "Kafka broker exited during startup with code 1." in message
    assert str(stack.kafka.log_file) in message
    assert str(stack.kafka.output_file) in message  # the JVM says why there, not log4j
    assert "Invalid maximum heap size" in message

    # One component failing does not leave the others half-done.
    status = stack.status()
    assert status["postgres"].state is State.HEALTHY
    assert status["kafka"].state is State.STOPPED
    assert "stale pid file" in status["kafka"].detail


@pytest.mark.slow
def test_up_down_up_keeps_data(
    make_settings: Any, stacks: Any, progress: list[str], state_dir: Path
) -> None:
    settings = make_settings()
    assert settings.uses_local_stack
    stack = stacks(settings)

    first = stack.up()
    assert set(first.changed) == {"kafka", "postgres", "registry"}
    status = stack.status()
    assert status.healthy, status
    # The broker logs through log4j's size-rolled file; its stdout holds only the JVM's own.
    assert "Kafka Server started" in stack.kafka.log_file.read_text()
    output = stack.kafka.output_file.read_text()
    assert "revloop infra up: starting" in output
    assert " INFO " not in output
    assert status["kafka"].address == f"127.0.0.1:{settings.kafka_port}"
    assert status["postgres"].data_dir == state_dir / "postgres" / "data"
    pids = {c.name: c.pid for c in status.components}

    topic = f"infra-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(topic, key=b"k", value=b"survives restarts")
    assert producer.flush(30) == 0
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('survives restarts')")
    # `up` registered the catalogue; a version only this stack knows gets the next id.
    assert settings.registry_url == stack.registry.url
    registry = ConfluentRegistry(stack.registry.url)
    ids = {s: registry.id_for(s, load_definition(s)) for s in event_names()}
    extra = {"type": "record", "name": "dev.revloop.test.Kept", "fields": []}
    ids["dev.revloop.test.Kept"] = registry.id_for("dev.revloop.test.Kept", extra)
    assert len(set(ids.values())) == len(ids)

    progress.clear()
    again = stack.up()
    assert again.changed == ()
    assert {c.name: c.pid for c in again.status.components} == pids
    assert progress == []

    assert set(stack.down().changed) == {"kafka", "postgres", "registry"}
    assert stack.status().stopped
    assert stack.down().changed == ()

    # A crash leaves a pid file behind; the next `up` clears it and carries on.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stack.kafka.pid_file.write(dead.pid)

    third = stack.up()
    assert set(third.changed) == {"kafka", "postgres", "registry"}
    assert any("removed stale pid file" in line for line in progress)
    assert not any("formatting" in line or "initialising" in line for line in progress)

    assert _read_one(settings.bootstrap_servers, topic) == b"survives restarts"
    with psycopg.connect(settings.dsn) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("survives restarts",)]
    # The registry serves the same ids from Postgres (a fresh client: nothing cached).
    again_registry = ConfluentRegistry(stack.registry.url, auto_register=False)
    assert {s: again_registry.id_for(s, load_definition(s)) for s in event_names()} == {
        s: ids[s] for s in event_names()
    }
    assert again_registry.id_for("dev.revloop.test.Kept", extra) == ids["dev.revloop.test.Kept"]
    kept = parse(again_registry.definition_of(ids["dev.revloop.test.Kept"]))
    assert kept["name"] == "dev.revloop.test.Kept"

    stack.down()
    assert stack.status().stopped


def _read_one(bootstrap: str, topic: str) -> bytes | None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"infra-test-{uuid.uuid4()}"})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                return msg.value()
        return None
    finally:
        consumer.close()


def test_storage_formats_even_when_the_cluster_id_starts_with_a_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # base64url of a first byte 0xf8 starts with '-': once in 64 random ids, which argparse in
    # kafka-storage used to read as an option.
    monkeypatch.setattr(infra.kafka.uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xf8" + bytes(15)))
    with scratch_state_dir() as state_dir:
        broker = infra.kafka.KafkaBroker(
            isolated_settings(state_dir), state_dir=state_dir, progress=lambda _: None
        )
        broker.prepare()
        meta = (broker.data_dir / "meta.properties").read_text()
        assert "cluster.id=-" in meta


def test_a_log_over_its_cap_is_rotated_before_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    for generation in range(5):  # five restarts, each after the log outgrew the cap
        log.write_text(f"generation {generation}\n" + "x" * 100)
        rotate_log(log, max_bytes=50, keep=3)
    assert not log.exists()
    kept = {p.name: p.read_text().split("\n", 1)[0] for p in tmp_path.iterdir()}
    assert kept == {
        "kafka.log.1": "generation 4",
        "kafka.log.2": "generation 3",
        "kafka.log.3": "generation 2",
    }
    log.write_text("small")
    rotate_log(log, max_bytes=50, keep=3)
    assert log.read_text() == "small"  # under the cap: left alone


def test_extra_jvm_options_come_after_revloop_s_own(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path).model_copy(
        update={"kafka_jvm_options": "-XX:MaxGCPauseMillis=50 '-Dnote=two words'"}
    )
    broker = infra.kafka.KafkaBroker(settings, state_dir=tmp_path, progress=lambda _: None)
    options = broker.jvm_options()
    # The JVM takes the last of repeated options, so the user's must be the later ones.
    assert options.index("-XX:MaxGCPauseMillis=50") > options.index("-XX:MaxGCPauseMillis=20")
    assert options[-2:] == ["-XX:MaxGCPauseMillis=50", "-Dnote=two words"]
    assert f"-Xmx{settings.kafka_heap}" in options


def test_a_restart_banner_opens_the_fresh_log(tmp_path: Path) -> None:
    log = tmp_path / "kafka.out"
    log.write_bytes(b"old run\n" + b"x" * LOG_ROTATE_BYTES)
    pid = spawn_detached(
        [sys.executable, "-c", "print('child output')"],
        log_file=log,
        cwd=tmp_path,
        banner="revloop infra up: starting test",
    )
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Rotated once, before the banner: the banner is not left behind with the old run.
    assert log.read_text() == "\n===== revloop infra up: starting test =====\nchild output\n"
    assert (tmp_path / "kafka.out.1").read_bytes().startswith(b"old run\n")
    assert not (tmp_path / "kafka.out.2").exists()


def test_docker_compose_runs_the_versions_the_local_stack_runs() -> None:
    root = ROOT
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    pom = ElementTree.parse(infra.kafka.POM).getroot()  # noqa: S314 (our own pom)
    kafka_version = pom.findtext("m:properties/m:kafka.version", namespaces=_POM_NS)
    assert kafka_version, "infra/pom.xml names no kafka.version"
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    assert f"Apache Kafka {kafka_version}" in (root / "docs" / "infra.md").read_text()
    # The local stack runs the Postgres of its default bin dir, /usr/lib/postgresql/<major>/bin.
    postgres_major = Settings.model_fields["postgres_bin_dir"].default.parent.name
    assert services["postgres"]["image"] == f"postgres:{postgres_major}"
    registry_pom = ElementTree.parse(infra.registry.POM).getroot()  # noqa: S314 (our own pom)
    apicurio = registry_pom.findtext("m:properties/m:apicurio.version", namespaces=_POM_NS)
    assert apicurio, "infra/registry-pom.xml names no apicurio.version"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{apicurio}"
    registry_db = Settings.model_fields["registry_db"].default
    assert registry_db in services["registry"]["environment"]["APICURIO_DATASOURCE_URL"]
    assert (
        f"CREATE DATABASE {registry_db};" in (ROOT / "infra/postgres-init/registry.sql").read_text()
    )


_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
