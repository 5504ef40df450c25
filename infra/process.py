"""Process, pid-file and port helpers for the local stack, the demo and the bench (Linux: they
read /proc)."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Popen objects for the processes this interpreter spawned. Holding them lets us reap our own
# children (otherwise a stopped broker lingers as a zombie that still "exists") without
# ResourceWarnings; processes started by an earlier CLI run are not our children at all.
_children: dict[int, subprocess.Popen[bytes]] = {}
_exit_codes: dict[int, int] = {}


LOG_ROTATE_BYTES = 20 * 1024 * 1024
LOG_KEEP = 3


def spawn_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    cwd: Path,
    banner: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a long-running process in its own session, with stdout/stderr appended to log_file
    (rotated first, then ``banner`` on a line of its own, if given). ``env`` adds to this
    process's environment: the place for secrets, which a command line would show to `ps`.

    Its own session means it outlives the CLI and ignores the terminal's Ctrl-C.
    """
    rotate_log(log_file, LOG_ROTATE_BYTES, LOG_KEEP)
    with log_file.open("ab") as log:
        if banner is not None:
            log.write(f"\n===== {banner} =====\n".encode())
            log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )
    _children[proc.pid] = proc
    return proc.pid


def rotate_log(path: Path, max_bytes: int, keep: int) -> None:
    """Before a (re)start: a log over ``max_bytes`` becomes ``<name>.1`` (older ones shift up
    to ``<name>.<keep>``; the oldest is dropped), so restarts keep the logs bounded."""
    if not path.exists() or path.stat().st_size <= max_bytes:
        return
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        code = child.poll()
        if code is None:
            return True
        _exit_codes[pid] = code
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in (None, "Z", "X")


def exit_code(pid: int) -> int | None:
    """The exit status of a process this interpreter started and that has ended, else None."""
    pid_alive(pid)
    return _exit_codes.get(pid)


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may itself contain spaces or parentheses.
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def terminate(pid: int, *, sig: signal.Signals = signal.SIGTERM, timeout: float) -> bool:
    """Ask a process to exit, escalating to SIGKILL after timeout. True if it had to be killed."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    if wait_for_exit(pid, timeout):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    wait_for_exit(pid, 10.0)
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


@dataclass(frozen=True)
class PidFile:
    path: Path

    def read(self) -> int | None:
        """The pid on its first line (as in Postgres's postmaster.pid); None if absent/garbled."""
        try:
            first = self.path.read_text().splitlines()[0]
            return int(first.strip())
        except (OSError, IndexError, ValueError):
            return None

    def write(self, pid: int) -> None:
        self.path.write_text(f"{pid}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers set it: leftover TIME_WAIT connections must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str | None:
    """Best effort "pid 123 (java)" for whoever has port bound; None if unknown (e.g. not root)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            # Unconnected sockets (listening or merely bound) have remote port 0.
            if int(local.rsplit(":", 1)[1], 16) == port and remote.endswith(":0000"):
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    comm = (proc / "comm").read_text().strip()
                    return f"pid {proc.name} ({comm})"
        except OSError:
            continue
    return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the block (released if we crash: the fd closes)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Child:
    """A process this one runs and stops, in its own session (a terminal's Ctrl-C reaches only
    the parent, which stops it; its group can be killed whole), its output in a log file."""

    def __init__(
        self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            env=None if env is None else dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def how_it_ended(self) -> str | None:
        """None while it runs; else "exited with status N" or "was killed by signal N"."""
        code = self.process.poll()
        if code is None:
            return None
        return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"

    def tail(self, lines: int = 25) -> str:
        self._log.flush()
        return tail(self.log_path, lines)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, so it can flush and leave its group; SIGKILL to its whole group after
        ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def http_probe(url: str) -> str | None:
    """None when ``GET url`` answers 200, else why not (a health check's reason)."""
    parts = urlsplit(url)
    client = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=2)
    try:
        client.request("GET", parts.path or "/")
        status = client.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"no answer on {url} yet ({type(exc).__name__})"
    finally:
        client.close()
    return None if status == 200 else f"{url} answered {status}"


def wait_until_ok(url: str, timeout: float, *, check: Callable[[], None] = lambda: None) -> bool:
    """Poll ``GET url`` until it answers 200; False if ``timeout`` seconds pass first. ``check``
    runs before each attempt: raise there to give up early (e.g. the server exited)."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        if http_probe(url) is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
