"""Throwaway local stacks on free ports, for tests that stop and start a broker."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from revloop.settings import Settings

SHARED_LIB_DIR = Settings().state_dir.resolve() / "kafka" / "lib"
SHARED_REGISTRY_DIST = Settings().state_dir.resolve() / "registry" / "dist"
_ENDPOINT_OVERRIDES = {
    "kafka_bootstrap_servers": None,
    "database_url": None,
    "schema_registry_url": None,
}


def free_ports(count: int) -> list[int]:
    # Hold all sockets open together so the kernel cannot hand out the same port twice.
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@contextmanager
def scratch_state_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's base directory is private to root, and Postgres runs as `postgres`.
    path = Path(tempfile.mkdtemp(prefix="revloop-test-stack-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def isolated_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings for a stack of its own: free ports, the shared jar and registry dirs, a small
    heap, and endpoints that ignore KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL /
    SCHEMA_REGISTRY_URL from the environment."""
    kafka_port, controller_port, postgres_port, registry_port, management_port = free_ports(5)
    fields: dict[str, Any] = {
        "state_dir": state_dir,
        "kafka_port": kafka_port,
        "kafka_controller_port": controller_port,
        "postgres_port": postgres_port,
        "registry_port": registry_port,
        "registry_management_port": management_port,
        "kafka_lib_dir": SHARED_LIB_DIR,
        "registry_dist_dir": SHARED_REGISTRY_DIST,
        "kafka_heap": "512m",
        **_ENDPOINT_OVERRIDES,
    }
    return Settings(**(fields | overrides))
