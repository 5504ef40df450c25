"""What the stack's components share: status types, errors, and the pid/port/health logic."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from infra import process

Progress = Callable[[str], None]
"""Receives one human-readable line per step (e.g. "Kafka broker: formatting storage")."""


class StackError(Exception):
    """Something the user has to act on; the message says what and how."""


class State(StrEnum):
    HEALTHY = "healthy"
    STOPPED = "stopped"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    label: str
    state: State
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path
    detail: str = ""
    """Why it is unhealthy, or a note such as a stale pid file; empty if nothing to say."""


@dataclass(frozen=True)
class Port:
    number: int
    env_var: str
    """The setting that moves it, e.g. REVLOOP_KAFKA_PORT."""


class Component(ABC):
    """One managed server process, tracked through a pid file and probed over the network."""

    name: str
    label: str
    requires: tuple[str, ...] = ()
    """Components that must be healthy before this one starts (the registry needs Postgres)."""

    def __init__(
        self,
        *,
        host: str,
        progress: Progress,
        pid_file: process.PidFile,
        data_dir: Path,
        log_file: Path,
    ) -> None:
        self.host = host
        self.progress = progress
        self.pid_file = pid_file
        self.data_dir = data_dir
        self.log_file = log_file

    # --- what each component defines -----------------------------------------------------------

    @property
    @abstractmethod
    def ports(self) -> tuple[Port, ...]:
        """Client port first (that is the address shown), then any others it binds."""

    @abstractmethod
    def _is_ours(self, argv: list[str]) -> bool:
        """Whether a live process's command line is this component (pids get reused)."""

    @abstractmethod
    def _probe(self) -> str | None:
        """None when healthy, else a short reason."""

    @abstractmethod
    def check_can_start(self) -> None:
        """Raise StackError if starting would fail for a reason we can name up front."""

    @abstractmethod
    def prepare(self) -> None:
        """Make everything the process needs (binaries, config, initialised storage); idempotent."""

    @abstractmethod
    def start(self) -> None: ...

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; Postgres has its own way."""
        pid = self.running_pid()
        if pid is not None:
            self.progress(f"{self.label}: stopping pid {pid}")
            if process.terminate(pid, timeout=timeout):
                self.progress(f"{self.label}: did not stop within {timeout:.0f}s, killed it")
        self.pid_file.remove()

    # --- shared behaviour ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports[0].number}"

    def running_pid(self) -> int | None:
        pid = self.pid_file.read()
        if pid is not None and process.pid_alive(pid) and self._is_ours(process.cmdline(pid)):
            return pid
        return None

    def stale_reason(self) -> str | None:
        """Why the pid file is stale (its process is gone or is now another program), else None."""
        if not self.pid_file.path.exists() or self.running_pid() is not None:
            return None
        pid = self.pid_file.read()
        if pid is None:
            return "it holds no pid"
        if process.pid_alive(pid):
            return f"pid {pid} is now another program"
        return f"pid {pid} is not running"

    def clean_stale(self) -> None:
        reason = self.stale_reason()
        if reason is not None:
            self.pid_file.remove()
            self.progress(f"{self.label}: removed stale pid file {self.pid_file.path} ({reason})")

    def status(self) -> ComponentStatus:
        pid = self.running_pid()
        detail = ""
        if pid is None:
            state = State.STOPPED
            stale = self.stale_reason()
            if stale is not None:
                detail = f"stale pid file ({stale}); `up` removes it"
        else:
            reason = self._probe()
            state = State.HEALTHY if reason is None else State.UNHEALTHY
            detail = reason or ""
        return ComponentStatus(
            name=self.name,
            label=self.label,
            state=state,
            pid=pid,
            address=self.address,
            data_dir=self.data_dir,
            log_file=self.log_file,
            detail=detail,
        )

    def check_ports_free(self) -> None:
        for port in self.ports:
            if process.port_in_use(self.host, port.number):
                owner = process.port_owner(port.number)
                by = f" by {owner}" if owner else ""
                raise StackError(
                    f"{self.label}: port {port.number} on {self.host} is already in use{by}, "
                    f"and not by this stack. Stop that process, or move this stack with "
                    f"{port.env_var}=<another port>."
                )

    def wait_healthy(self, timeout: float) -> None:
        self._wait_until(self._probe, time.monotonic() + timeout)

    def _wait_until(self, probe: Callable[[], str | None], deadline: float) -> None:
        reason: str | None = "not probed yet"
        while True:
            pid = self.pid_file.read()
            if pid is None or not process.pid_alive(pid):
                code = process.exit_code(pid) if pid is not None else None
                how = f" with code {code}" if code is not None else ""
                raise StackError(self._with_log(f"{self.label} exited during startup{how}."))
            reason = probe()
            if reason is None:
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    self._with_log(
                        f"{self.label} (pid {pid}) did not become healthy in time: {reason}. "
                        "It is still running; `revloop infra down` stops it."
                    )
                )
            time.sleep(0.25)

    def _with_log(self, message: str) -> str:
        return f"{message}\nLast lines of {self.log_file}:\n{process.tail(self.log_file)}"
