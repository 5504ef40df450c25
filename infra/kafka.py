"""A single-node KRaft Kafka broker (combined broker + controller) run straight from Maven jars."""

from __future__ import annotations

import base64
import logging
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra import process
from infra.base import Component, Port, Progress, StackError
from infra.maven import MavenFetch
from revloop.settings import Settings

POM = Path(__file__).with_name("pom.xml")
LOG4J2_CONFIG = Path(__file__).with_name("log4j2.yaml")
INSTALL_HINT = "apt-get install openjdk-17-jre-headless maven"

# librdkafka reports every refused connection; while we poll a booting broker that is just noise.
_client_log = logging.getLogger("revloop.infra.kafka-client")
_client_log.addHandler(logging.NullHandler())
_client_log.propagate = False


class KafkaBroker(Component):
    name = "kafka"
    label = "Kafka broker"

    def __init__(self, settings: Settings, *, state_dir: Path, progress: Progress) -> None:
        self.base_dir = state_dir / "kafka"
        super().__init__(
            host=settings.kafka_host,
            progress=progress,
            pid_file=process.PidFile(self.base_dir / "kafka.pid"),
            data_dir=self.base_dir / "data",
            log_file=state_dir / "logs" / "kafka.log",
        )
        self.settings = settings
        self.lib_dir = (settings.kafka_lib_dir or self.base_dir / "lib").resolve()
        self.properties_file = self.base_dir / "server.properties"
        self.output_file = state_dir / "logs" / "kafka.out"
        """The JVM's own stdout and stderr (a failed start, a crash); the broker's logging goes
        to ``log_file``, which log4j rolls by size (infra/log4j2.yaml)."""

    @property
    def ports(self) -> tuple[Port, ...]:
        return (
            Port(self.settings.kafka_port, "REVLOOP_KAFKA_PORT"),
            Port(self.settings.kafka_controller_port, "REVLOOP_KAFKA_CONTROLLER_PORT"),
        )

    def _is_ours(self, argv: list[str]) -> bool:
        return "kafka.Kafka" in argv and str(self.properties_file) in argv

    def _probe(self) -> str | None:
        # A plain TCP check first: cheap, and spares librdkafka's retry loop while the JVM boots.
        if not process.accepts_connections(self.host, self.settings.kafka_port):
            return f"nothing accepts connections on {self.address} yet"
        config: dict[str, Any] = {"bootstrap.servers": self.address, "logger": _client_log}
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=5)
        except KafkaException as exc:
            return f"metadata request failed: {exc.args[0]}"
        if not metadata.brokers:
            return "metadata lists no brokers yet"
        return None

    # --- starting ------------------------------------------------------------------------------

    def check_can_start(self) -> None:
        if shutil.which("java") is None:
            raise StackError(f"java is not on PATH; the Kafka broker needs it: {INSTALL_HINT}")
        if not self._jars_current() and shutil.which("mvn") is None:
            raise StackError(f"mvn is not on PATH; it fetches the Kafka jars: {INSTALL_HINT}")
        self.check_ports_free()

    def prepare(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._resolve_jars()
        self._write_properties()
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage()

    def jvm_options(self) -> list[str]:
        heap = self.settings.kafka_heap
        gc_log = self.log_file.parent / "kafka-gc.log"
        return [
            # The JVM options of Apache Kafka's own start scripts: a fixed heap and G1 aiming at
            # 20 ms pauses. Without them the JVM picks its defaults, and a young collection can
            # hold every ack for longer than the ingest p99 budget (docs/benchmarks.md).
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15",
            f"-Xlog:gc*:file={gc_log}:time,tags:filecount=5,filesize=20M",
            "-Djava.awt.headless=true",
            # Last, so that the JVM takes these over revloop's own where both set something.
            *shlex.split(self.settings.kafka_jvm_options),
        ]

    def start(self) -> None:
        argv = [
            "java",
            *self.jvm_options(),
            *self._java_common(),
            "kafka.Kafka",
            str(self.properties_file),
        ]
        self.progress(f"{self.label}: starting on {self.address}")
        pid = process.spawn_detached(
            argv,
            log_file=self.output_file,
            cwd=self.base_dir,
            banner=f"revloop infra up: starting {self.label}",
        )
        self.pid_file.write(pid)

    def _java_common(self) -> list[str]:
        return [
            "-cp",
            f"{self.lib_dir}/*",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
        ]

    def _with_log(self, message: str) -> str:
        return (
            f"{super()._with_log(message)}\n"
            f"Last lines of {self.output_file}:\n{process.tail(self.output_file)}"
        )

    def _jars_current(self) -> bool:
        return JARS.is_current(self.lib_dir)

    def _resolve_jars(self) -> None:
        JARS.resolve(
            self.lib_dir, log_file=self.log_file.with_name("mvn.log"), progress=self.progress
        )

    def _write_properties(self) -> None:
        s = self.settings
        host = s.kafka_host
        text = "\n".join(
            [
                "# Written by `revloop infra up` on every start; edit revloop settings instead.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={host}:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://{host}:{s.kafka_port},"
                f"CONTROLLER://{host}:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{host}:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir}",
                "num.partitions=1",
                # Topics come from our catalogue (`revloop topics`), never from a typo'd producer.
                "auto.create.topics.enable=false",
                # One node: every internal topic can only have one replica.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
        if not self.properties_file.exists() or self.properties_file.read_text() != text:
            self.properties_file.write_text(text)

    def _format_storage(self) -> None:
        self.progress(f"{self.label}: formatting storage in {self.data_dir}")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        argv = [
            "java",
            *self._java_common(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            # Joined with '=': a base64url id starts with '-' one time in 64, and argparse would
            # read it as an option (the flaky "Formatting Kafka storage failed").
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.properties_file),
        ]
        with self.output_file.open("ab") as output:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise StackError(
                self._with_log(f"Formatting Kafka storage failed (exit {result.returncode}).")
            )


JARS = MavenFetch(
    label="Kafka broker",
    pom=POM,
    goal=("dependency:copy-dependencies", "-DoutputDirectory={dir}", "-DincludeScope=runtime"),
    complete=lambda lib: any(lib.glob("kafka_2.13-*.jar")),
)
