"""The local schema registry: Apicurio Registry (Confluent-compatible API), run from its Maven
Central distribution on a JDK 21+, storing schemas in the stack's Postgres so ids survive
`infra down` and `infra up`.

Once healthy, `up` registers the committed catalogue's versions in it, oldest first, with
BACKWARD_TRANSITIVE on every subject (idempotent), so processes starting next find their schemas.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from infra import process
from infra.base import Component, Port, Progress, StackError
from infra.maven import MavenFetch
from revloop.metrics import reachable_host
from revloop.settings import Settings
from schemas.registry import CommittedCatalogue, ConfluentRegistry, SchemaError

POM = Path(__file__).with_name("registry-pom.xml")
DIST = MavenFetch(
    label="Schema registry",
    pom=POM,
    goal=("dependency:unpack@registry", "-Dregistry.dir={dir}"),
    complete=lambda dist: (dist / "quarkus-run.jar").is_file(),
)
MIN_JAVA = 21
JVM_ROOT = Path("/usr/lib/jvm")
INSTALL_HINT = "a JDK 21 or later (Debian: openjdk-21-jre-headless; or any Temurin 21+)"


class SchemaRegistry(Component):
    name = "registry"
    label = "Schema registry"
    requires = ("postgres",)

    def __init__(self, settings: Settings, *, state_dir: Path, progress: Progress) -> None:
        self.base_dir = state_dir / "registry"
        super().__init__(
            host=settings.registry_host,
            progress=progress,
            pid_file=process.PidFile(self.base_dir / "registry.pid"),
            # Its schemas live in Postgres (database ``registry_db``); here are only its files.
            data_dir=self.base_dir,
            log_file=state_dir / "logs" / "registry.log",
        )
        self.settings = settings
        self.dist_dir = (settings.registry_dist_dir or self.base_dir / "dist").resolve()

    @property
    def ports(self) -> tuple[Port, ...]:
        return (
            Port(self.settings.registry_port, "REVLOOP_REGISTRY_PORT"),
            Port(self.settings.registry_management_port, "REVLOOP_REGISTRY_MANAGEMENT_PORT"),
        )

    @property
    def url(self) -> str:
        """The Confluent-compatible API root clients use."""
        return f"http://{reachable_host(self.host)}:{self.settings.registry_port}/apis/ccompat/v7"

    @property
    def _marker(self) -> str:
        # Tells this stack's registry apart from another stack's in `ps` (pids get reused).
        return f"-Drevloop.stack={self.base_dir}"

    def _is_ours(self, argv: list[str]) -> bool:
        return "quarkus-run.jar" in argv and self._marker in argv

    def _probe(self) -> str | None:
        management = f"{reachable_host(self.host)}:{self.settings.registry_management_port}"
        return process.http_probe(f"http://{management}/health/ready")

    # --- starting ------------------------------------------------------------------------------

    def check_can_start(self) -> None:
        self.java()
        if not DIST.is_current(self.dist_dir) and shutil.which("mvn") is None:
            raise StackError(
                "mvn is not on PATH; it fetches the schema registry: apt-get install maven"
            )
        self.check_ports_free()

    def java(self) -> Path:
        """The ``java`` of a JDK new enough for the registry (StackError if there is none)."""
        configured = self.settings.registry_java_home
        if configured is not None:
            binary = configured / "bin" / "java"
            version = java_major(binary)
            if version is None or version < MIN_JAVA:
                found = "no java" if version is None else f"Java {version}"
                raise StackError(
                    f"REVLOOP_REGISTRY_JAVA_HOME={configured} holds {found}; the schema registry "
                    f"needs Java {MIN_JAVA} or later: {INSTALL_HINT}"
                )
            return binary
        candidates = [home / "bin" / "java" for home in sorted(JVM_ROOT.glob("*"))]
        on_path = shutil.which("java")
        if on_path is not None:
            candidates.append(Path(on_path))
        versions = {c: java_major(c) for c in candidates}
        usable = [(v, c) for c, v in versions.items() if v is not None and v >= MIN_JAVA]
        if not usable:
            raise StackError(
                f"the schema registry needs Java {MIN_JAVA} or later and none was found "
                f"(looked in {JVM_ROOT} and PATH): {INSTALL_HINT}, or point "
                "REVLOOP_REGISTRY_JAVA_HOME at one"
            )
        return max(usable)[1]

    def prepare(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        DIST.resolve(
            self.dist_dir, log_file=self.log_file.with_name("mvn.log"), progress=self.progress
        )

    def start(self) -> None:
        s = self.settings
        argv = [
            str(self.java()),
            f"-Xmx{s.registry_heap}",
            self._marker,
            f"-Dquarkus.http.host={s.registry_host}",
            f"-Dquarkus.http.port={s.registry_port}",
            # Without these it also opens 0.0.0.0:9000 for health and metrics.
            f"-Dquarkus.management.host={s.registry_host}",
            f"-Dquarkus.management.port={s.registry_management_port}",
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=postgresql",
            # One client at a time writes here; its default pool holds 20 connections open.
            "-Dapicurio.datasource.jdbc.initial-size=1",
            "-Dapicurio.datasource.jdbc.min-size=1",
            "-Dapicurio.datasource.jdbc.max-size=8",
            "-Dapicurio.rules.global.compatibility=BACKWARD_TRANSITIVE",
            # `-jar`, not `-cp`: on Java 25 a -cp launch breaks its worker threads.
            "-jar",
            "quarkus-run.jar",
        ]
        # The database credentials go through the environment, which `ps` does not show.
        env = {
            "APICURIO_DATASOURCE_URL": (
                f"jdbc:postgresql://{s.postgres_host}:{s.postgres_port}/{s.registry_db}"
            ),
            "APICURIO_DATASOURCE_USERNAME": s.postgres_user,
            "APICURIO_DATASOURCE_PASSWORD": s.postgres_password.get_secret_value(),
        }
        self.progress(f"{self.label}: starting on {self.address}")
        pid = process.spawn_detached(
            argv,
            log_file=self.log_file,
            cwd=self.dist_dir,
            banner=f"revloop infra up: starting {self.label}",
            env=env,
        )
        self.pid_file.write(pid)

    def wait_healthy(self, timeout: float) -> None:
        super().wait_healthy(timeout)
        self.register_catalogue()

    def register_catalogue(self) -> None:
        registry = ConfluentRegistry(self.url)
        try:
            before = {s: registry.versions(s) for s in _subjects()}
            registry.register_catalogue(CommittedCatalogue.load())
            after = {s: registry.versions(s) for s in _subjects()}
        except SchemaError as exc:
            raise StackError(
                self._with_log(f"{self.label}: registering schemas failed: {exc}")
            ) from exc
        finally:
            registry.close()
        added = sum(len(after[s]) - len(before[s]) for s in after)
        if added:
            self.progress(
                f"{self.label}: registered {added} schema versions of {len(after)} subjects"
            )


def _subjects() -> list[str]:
    return sorted({e.subject for e in CommittedCatalogue.load()})


def java_major(binary: Path) -> int | None:
    """The major version of a ``java`` binary (None if it does not run)."""
    release = binary.resolve().parent.parent / "release"
    try:
        match = re.search(r'^JAVA_VERSION="(\d+)', release.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match is not None:
        return int(match.group(1))
    try:
        result = subprocess.run(
            [str(binary), "-version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "(\d+)', result.stderr)
    return int(found.group(1)) if found else None
