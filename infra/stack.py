"""`revloop infra`: the local stack (a Kafka broker, a Postgres cluster and a schema registry) as
one unit, and an optional Prometheus (`up(with_monitoring=True)`) that `down` stops with the
rest.

Everything lives under ``settings.state_dir``::

    kafka/lib/            broker jars from Maven (settings.kafka_lib_dir may move it)
    kafka/data/           KRaft metadata and topic data
    kafka/server.properties, kafka/kafka.pid
    postgres/data/        the cluster (postmaster.pid is Postgres's own pid file)
    registry/dist/        Apicurio Registry from Maven (settings.registry_dist_dir may move it)
    registry/registry.pid its schemas live in Postgres (database settings.registry_db)
    prometheus/           prometheus.yml (rendered on every start), data/, prometheus.pid
    logs/                 kafka.log, kafka.out, kafka-gc.log, postgres.log, registry.log, mvn.log,
                          prometheus.log
    .lock                 serialises concurrent `up`/`down`
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra import process
from infra.base import Component, ComponentStatus, Progress, StackError, State
from infra.kafka import KafkaBroker
from infra.postgres import PostgresCluster
from infra.prometheus import PrometheusServer
from infra.registry import SchemaRegistry
from revloop.settings import Settings

__all__ = ["ComponentStatus", "Stack", "StackChange", "StackError", "StackStatus", "State"]


@dataclass(frozen=True)
class StackStatus:
    state_dir: Path
    components: tuple[ComponentStatus, ...]
    optional: frozenset[str] = frozenset()
    """Components the stack is healthy without (Prometheus): only a running one must be healthy."""

    @property
    def healthy(self) -> bool:
        return all(
            c.state is State.HEALTHY or (c.name in self.optional and c.state is State.STOPPED)
            for c in self.components
        )

    @property
    def stopped(self) -> bool:
        return all(c.state is State.STOPPED for c in self.components)

    def __getitem__(self, name: str) -> ComponentStatus:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)


@dataclass(frozen=True)
class StackChange:
    """What `up` started or `down` stopped; both empty-handed means nothing changed."""

    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    status: StackStatus


def _quiet(_: str) -> None:
    pass


class Stack:
    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress = _quiet,
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.kafka = KafkaBroker(settings, state_dir=self.state_dir, progress=progress)
        self.postgres = PostgresCluster(settings, state_dir=self.state_dir, progress=progress)
        self.registry = SchemaRegistry(settings, state_dir=self.state_dir, progress=progress)
        self.prometheus = PrometheusServer(settings, state_dir=self.state_dir, progress=progress)

    @property
    def components(self) -> tuple[Component, ...]:
        # Start order: the broker's JVM boots while Postgres initialises; the registry, which
        # keeps its schemas in Postgres, starts once Postgres is healthy. Stop order: the same.
        return (self.kafka, self.postgres, self.registry, self.prometheus)

    @property
    def optional(self) -> frozenset[str]:
        """Started only when asked for; status shows them and down stops them all the same."""
        return frozenset({self.prometheus.name})

    def status(self) -> StackStatus:
        return StackStatus(
            self.state_dir, tuple(c.status() for c in self.components), self.optional
        )

    def up(self, *, with_monitoring: bool = False) -> StackChange:
        """Start whatever is not running and wait until everything is healthy; Prometheus only
        ``with_monitoring`` (one already running is left running either way).

        Every check that can fail cheaply (tools, ports, permissions) runs before anything starts.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with process.file_lock(self.state_dir / ".lock"):
            for component in self.components:
                component.clean_stale()
            wanted = [
                c
                for c in self.components
                if c.name not in self.optional or with_monitoring or c.running_pid() is not None
            ]
            to_start = [c for c in wanted if c.running_pid() is None]
            for component in to_start:
                component.check_can_start()
            by_name = {c.name: c for c in self.components}
            for component in to_start:
                for required in component.requires:
                    by_name[required].wait_healthy(self.start_timeout)
                component.prepare()
                component.start()
            # Also for ones already running: they may still be booting from an earlier `up`.
            # Every component gets its chance even if another failed, so one error does not
            # leave the rest half-initialised.
            errors: list[str] = []
            for component in wanted:
                try:
                    component.wait_healthy(self.start_timeout)
                except StackError as exc:
                    errors.append(str(exc))
            if errors:
                raise StackError("\n\n".join(errors))
            return self._change(to_start)

    def down(self) -> StackChange:
        """Stop whatever runs (data stays); SIGKILL only after stop_timeout."""
        if not self.state_dir.exists():
            return self._change([])
        with process.file_lock(self.state_dir / ".lock"):
            for component in self.components:
                component.clean_stale()
            to_stop = [c for c in self.components if c.running_pid() is not None]
            for component in to_stop:
                component.stop(self.stop_timeout)
            return self._change(to_stop)

    def _change(self, changed: list[Component]) -> StackChange:
        return StackChange(
            changed=tuple(c.name for c in changed),
            unchanged=tuple(c.name for c in self.components if c not in changed),
            status=self.status(),
        )
