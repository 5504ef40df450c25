"""The pipeline's supervisor: one detached process that runs every pipeline process, restarts
one that dies (exponential backoff), and records what it did for `revloop status`.

`revloop up` starts it (``python -m revloop supervise``) in its own session, so it is the leader
of a process group that also holds its children: `revloop down` can SIGKILL the lot at once when
the supervisor does not answer SIGTERM. Under ``settings.state_dir``::

    run/supervisor.pid    its pid, flock'ed while it runs: the lock (not the pid) says whether a
                          supervisor runs, so two cannot, and a reused pid never fools anyone
    run/supervisor.json   the state file: each process's pid, state, restarts, last exit
    run/.lock             serialises `revloop up` and `revloop down`
    logs/supervisor.log   what it did: starts, exits, backoff
    logs/<name>.log       each process's stdout and stderr

See docs/operations.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ConfigDict, ValidationError

from infra import process
from revloop.settings import Settings

__all__ = [
    "ALREADY_RUNNING",
    "Backoff",
    "PipelineStatus",
    "ProcState",
    "ProcessRecord",
    "ProcessSpec",
    "ProcessView",
    "RunPaths",
    "StopReport",
    "Supervisor",
    "SupervisorError",
    "SupervisorRecord",
    "pipeline_status",
    "read_state",
    "revloop_command",
    "run_lock",
    "running_supervisor",
    "start_detached",
    "stop_pipeline",
    "wait_started",
]

log = logging.getLogger(__name__)

ALREADY_RUNNING = 3
"""`revloop supervise` exits with this when another supervisor holds the pid file."""
POLL_SECONDS = 0.1


class SupervisorError(Exception):
    """Something the user has to act on; the message says what and how."""


class ProcState(StrEnum):
    RUNNING = "running"
    BACKING_OFF = "backing-off"
    STOPPED = "stopped"
    ORPHANED = "orphaned"
    """Only in `status`: alive, but its supervisor is gone (`revloop down` stops it)."""


Preflight = Callable[[Settings], list[str]]
Probe = Callable[[Settings], str | None]


@dataclass(frozen=True)
class ProcessSpec:
    """One long-running pipeline process."""

    name: str
    argv: tuple[str, ...]
    preflight: Preflight | None = None
    """What would stop it from running, one sentence each; `revloop up` checks every process's
    before it starts anything."""
    ready: Probe | None = None
    """None once it serves (ingest: /readyz answers 200), else why not; `revloop up` waits."""


def revloop_command(*args: str) -> tuple[str, ...]:
    """``python -P -m revloop <args>`` with this interpreter, so children run the same install.
    ``-P`` keeps the working directory off ``sys.path``: a folder there named like one of
    revloop's packages (``demo``, ``bench``, ``ingest``...) would otherwise shadow it."""
    return (sys.executable, "-P", "-m", "revloop", *args)


@dataclass(frozen=True)
class Backoff:
    initial: float
    cap: float
    reset_after: float
    """A process that stayed up this long starts its next backoff from ``initial`` again."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(
            settings.supervisor_backoff_initial_seconds,
            settings.supervisor_backoff_max_seconds,
            settings.supervisor_backoff_reset_seconds,
        )

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th quick death in a row (0-based): initial, doubling,
        capped."""
        return min(self.initial * 2.0 ** min(failures, 64), self.cap)


@dataclass(frozen=True)
class RunPaths:
    state_dir: Path

    @classmethod
    def of(cls, settings: Settings) -> RunPaths:
        return cls(settings.state_dir.resolve())

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "supervisor.pid"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "supervisor.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / ".lock"

    @property
    def supervisor_log(self) -> Path:
        return self.logs_dir / "supervisor.log"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"


# --- the state file ---------------------------------------------------------------------------


class ProcessRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    argv: tuple[str, ...]
    log_file: Path
    state: ProcState
    pid: int | None = None
    started_at: datetime | None = None
    restarts: int = 0
    last_exit: str | None = None
    """``exit <code>`` or ``signal <NAME>``; None until it first ended."""
    last_exit_at: datetime | None = None
    backoff_seconds: float | None = None
    """While backing off: how long this wait is."""
    next_start_at: datetime | None = None


class SupervisorRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int = 1
    pid: int
    state: str
    """running, stopping or stopped."""
    started_at: datetime
    updated_at: datetime
    cwd: Path
    processes: tuple[ProcessRecord, ...]

    def process(self, name: str) -> ProcessRecord | None:
        return next((p for p in self.processes if p.name == name), None)


def read_state(paths: RunPaths) -> SupervisorRecord | None:
    """The last state the supervisor wrote; None when there is none (or it is unreadable)."""
    try:
        return SupervisorRecord.model_validate_json(paths.state_file.read_bytes())
    except (OSError, ValidationError):
        return None


def _write_state(paths: RunPaths, record: SupervisorRecord) -> None:
    # tmp + rename: a reader sees the old state or the new one, never half of either.
    tmp = paths.state_file.with_name(f".{paths.state_file.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n")
    tmp.replace(paths.state_file)


# --- the pid file and its lock ----------------------------------------------------------------


class _PidLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        # Emptied, not unlinked: unlinking a locked file lets a second opener lock a new inode.
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def running_supervisor(paths: RunPaths) -> int | None:
    """The pid of the supervisor holding the pid file's lock; None when none runs."""
    try:
        fd = os.open(paths.pid_file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # The holder writes its pid right after locking; give it that moment.
            for _ in range(50):
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if text.isdigit():
                    return int(text)
                time.sleep(0.02)
            raise SupervisorError(f"{paths.pid_file} is locked but holds no pid") from None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(paths: RunPaths, timeout: float) -> Iterator[None]:
    """Held by `revloop up` and `revloop down` for their whole run, so they never interleave."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SupervisorError(
                        f"another `revloop up` or `revloop down` still runs after {timeout:.0f} s "
                        f"({paths.lock_file} is locked); try again when it has finished"
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the supervisor process -------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervisor is SIGKILLed (the OOM killer,
    # say), its children get SIGTERM instead of running on unsupervised.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Slot:
    spec: ProcessSpec
    log_file: Path
    state: ProcState = ProcState.STOPPED
    popen: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    started_mono: float = 0.0
    restarts: int = 0
    failures: int = 0
    """Quick deaths in a row; a run longer than the backoff's ``reset_after`` clears it."""
    last_exit: str | None = None
    last_exit_at: datetime | None = None
    backoff: float | None = None
    next_start_mono: float = 0.0
    next_start_at: datetime | None = None

    def record(self) -> ProcessRecord:
        return ProcessRecord(
            name=self.spec.name,
            argv=self.spec.argv,
            log_file=self.log_file,
            state=self.state,
            pid=self.popen.pid if self.state is ProcState.RUNNING and self.popen else None,
            started_at=self.started_at if self.state is ProcState.RUNNING else None,
            restarts=self.restarts,
            last_exit=self.last_exit,
            last_exit_at=self.last_exit_at,
            backoff_seconds=self.backoff if self.state is ProcState.BACKING_OFF else None,
            next_start_at=self.next_start_at if self.state is ProcState.BACKING_OFF else None,
        )


@dataclass
class Supervisor:
    """Run with :meth:`run` in a process of its own (`revloop supervise`)."""

    settings: Settings
    specs: Sequence[ProcessSpec]
    paths: RunPaths = field(init=False)
    backoff: Backoff = field(init=False)
    _slots: list[_Slot] = field(init=False)
    _state: str = field(default="running", init=False)
    _started_at: datetime = field(default_factory=_now, init=False)
    _stop_requested: bool = field(default=False, init=False)
    _env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.paths = RunPaths.of(self.settings)
        self.backoff = Backoff.from_settings(self.settings)
        self._slots = [_Slot(spec, self.paths.log_file(spec.name)) for spec in self.specs]
        # Unbuffered: a child's prints reach its log as they happen, not when it exits.
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def run(self) -> int:
        """Start everything, keep it running until SIGTERM/SIGINT/SIGHUP, then stop it all.
        Returns the exit code (:data:`ALREADY_RUNNING` when another supervisor runs)."""
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        self.paths.logs_dir.mkdir(parents=True, exist_ok=True)
        lock = _PidLock(self.paths.pid_file)
        if not lock.acquire():
            log.error("another supervisor (pid %s) is running; exiting", self._other())
            return ALREADY_RUNNING
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._request_stop)
        log.info(
            "supervisor pid %d: running %s (backoff %g s doubling to %g s, reset after %g s up)",
            os.getpid(),
            ", ".join(s.name for s in self.specs),
            self.backoff.initial,
            self.backoff.cap,
            self.backoff.reset_after,
        )
        try:
            for slot in self._slots:
                self._start(slot)
            self._save()
            while not self._stop_requested:
                if self._tick():
                    self._save()
                time.sleep(POLL_SECONDS)
            log.info("stop requested: stopping %d process(es)", len(self._running()))
            self._state = "stopping"
            self._save()
        finally:
            # Also on a crash of the loop itself: never leave children unsupervised.
            self._stop_all()
            self._state = "stopped"
            self._save()
            lock.release()
        log.info("supervisor stopped")
        return 0

    def _other(self) -> int | None:
        try:
            return running_supervisor(self.paths)
        except SupervisorError:
            return None

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_requested = True

    def _running(self) -> list[_Slot]:
        return [s for s in self._slots if s.state is ProcState.RUNNING]

    def _tick(self) -> bool:
        """Notice exits, start what is due; True if anything changed."""
        changed = False
        now = time.monotonic()
        for slot in self._slots:
            if slot.state is ProcState.RUNNING:
                assert slot.popen is not None
                code = slot.popen.poll()
                if code is not None:
                    self._exited(slot, _describe_exit(code), now - slot.started_mono)
                    changed = True
            elif slot.state is ProcState.BACKING_OFF and now >= slot.next_start_mono:
                slot.restarts += 1
                self._start(slot)
                changed = True
        return changed

    def _start(self, slot: _Slot) -> None:
        process.rotate_log(slot.log_file, process.LOG_ROTATE_BYTES, process.LOG_KEEP)
        attempt = f" (restart {slot.restarts})" if slot.restarts else ""
        try:
            with slot.log_file.open("ab") as out:
                out.write(
                    f"\n===== revloop supervisor: starting {slot.spec.name}{attempt} "
                    f"at {_now():%Y-%m-%d %H:%M:%S} UTC =====\n".encode()
                )
                out.flush()
                slot.popen = subprocess.Popen(
                    slot.spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    preexec_fn=_die_with_parent,  # safe: the supervisor is single-threaded
                )
        except OSError as exc:
            # Say, the interpreter vanished in an upgrade: counts as a quick death.
            self._exited(slot, f"failed to start ({exc.strerror})", 0.0)
            return
        slot.state = ProcState.RUNNING
        slot.started_at = _now()
        slot.started_mono = time.monotonic()
        slot.backoff = None
        slot.next_start_at = None
        log.info(
            "%s started%s: pid %d, log %s", slot.spec.name, attempt, slot.popen.pid, slot.log_file
        )

    def _exited(self, slot: _Slot, how: str, uptime: float) -> None:
        if uptime >= self.backoff.reset_after:
            slot.failures = 0
        delay = self.backoff.delay(slot.failures)
        slot.failures += 1
        pid = slot.popen.pid if slot.popen else None
        slot.state = ProcState.BACKING_OFF
        slot.last_exit = how
        slot.last_exit_at = _now()
        slot.backoff = delay
        slot.next_start_mono = time.monotonic() + delay
        slot.next_start_at = datetime.fromtimestamp(time.time() + delay, UTC)
        log.warning(
            "%s (pid %s) ended with %s after %.1f s up; restarting in %g s (log %s)",
            slot.spec.name,
            pid,
            how,
            uptime,
            delay,
            slot.log_file,
        )

    def _stop_all(self) -> None:
        running = self._running()
        for slot in running:
            assert slot.popen is not None
            with contextlib.suppress(ProcessLookupError):
                slot.popen.send_signal(signal.SIGTERM)
        grace = self.settings.supervisor_stop_grace_seconds
        deadline = time.monotonic() + grace
        while any(s.popen and s.popen.poll() is None for s in running):
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        for slot in running:
            assert slot.popen is not None
            if slot.popen.poll() is None:
                log.warning(
                    "%s (pid %d) still runs %g s after SIGTERM: SIGKILL",
                    slot.spec.name,
                    slot.popen.pid,
                    grace,
                )
                slot.popen.kill()
                slot.popen.wait()
            slot.last_exit = _describe_exit(slot.popen.returncode)
            slot.last_exit_at = _now()
            log.info("%s (pid %d) stopped: %s", slot.spec.name, slot.popen.pid, slot.last_exit)
        for slot in self._slots:
            slot.state = ProcState.STOPPED

    def _save(self) -> None:
        _write_state(
            self.paths,
            SupervisorRecord(
                pid=os.getpid(),
                state=self._state,
                started_at=self._started_at,
                updated_at=_now(),
                cwd=Path.cwd(),
                processes=tuple(slot.record() for slot in self._slots),
            ),
        )


# --- what the CLI does with it ----------------------------------------------------------------


def start_detached(paths: RunPaths) -> int:
    """Start `revloop supervise` in its own session (it outlives the CLI), in this working
    directory and with this environment, which its children inherit (settings, .env)."""
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    return process.spawn_detached(
        revloop_command("supervise"),
        log_file=paths.supervisor_log,
        cwd=Path.cwd(),
        banner=f"revloop up: starting the supervisor at {_now():%Y-%m-%d %H:%M:%S} UTC",
    )


def wait_started(
    paths: RunPaths,
    supervisor_pid: int,
    specs: Sequence[ProcessSpec],
    settings: Settings,
    timeout: float,
) -> SupervisorRecord:
    """Wait until the supervisor runs every process and each answers its ready probe.

    Raises as soon as the supervisor dies or a process ends during startup (preflight passed,
    so that is a surprise worth stopping `up` for), or at the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not process.pid_alive(supervisor_pid):
            code = process.exit_code(supervisor_pid)
            how = f" with code {code}" if code is not None else ""
            raise SupervisorError(
                f"the supervisor exited during startup{how}." + _log_tail(paths.supervisor_log)
            )
        record = read_state(paths)
        waiting: list[str] = []
        if record is None or record.pid != supervisor_pid:
            waiting.append("the supervisor's first state")
        else:
            for spec in specs:
                waiting.extend(_not_started(spec, record, settings))
        if not waiting:
            assert record is not None
            return record
        if time.monotonic() >= deadline:
            raise SupervisorError(
                f"not started within {timeout:g} s (REVLOOP_SUPERVISOR_START_TIMEOUT_SECONDS): "
                + "; ".join(waiting)
                + ". The supervisor keeps trying; `revloop status` shows it, `revloop down` "
                "stops it."
            )
        time.sleep(0.2)


def _not_started(spec: ProcessSpec, record: SupervisorRecord, settings: Settings) -> list[str]:
    proc = record.process(spec.name)
    if proc is None:
        return [f"{spec.name} is not in the state file"]
    if proc.restarts or proc.last_exit is not None:
        raise SupervisorError(
            f"{spec.name} ended during startup ({proc.last_exit or 'restarted'}). The supervisor "
            "keeps restarting it with backoff; `revloop status` shows it, `revloop down` stops "
            "everything." + _log_tail(proc.log_file)
        )
    if proc.state is not ProcState.RUNNING:
        return [f"{spec.name} is {proc.state.value}"]
    reason = spec.ready(settings) if spec.ready else None
    return [] if reason is None else [f"{spec.name} is not ready ({reason})"]


def _log_tail(path: Path) -> str:
    return f"\nLast lines of {path}:\n{process.tail(path)}"


@dataclass(frozen=True)
class ProcessView:
    """One process as `revloop status` shows it."""

    name: str
    state: ProcState
    pid: int | None
    uptime_seconds: float | None
    restarts: int
    last_exit: str | None
    retry_in_seconds: float | None
    log_file: Path


@dataclass(frozen=True)
class PipelineStatus:
    supervisor_pid: int | None
    record: SupervisorRecord | None
    processes: tuple[ProcessView, ...]

    @property
    def running(self) -> bool:
        """The supervisor runs and so does every process."""
        return self.supervisor_pid is not None and all(
            p.state is ProcState.RUNNING for p in self.processes
        )


def pipeline_status(paths: RunPaths, specs: Sequence[ProcessSpec]) -> PipelineStatus:
    supervisor = running_supervisor(paths)
    record = read_state(paths)
    now = _now()
    views = []
    for spec in specs:
        proc = record.process(spec.name) if record else None
        if proc is None:
            views.append(
                ProcessView(
                    spec.name,
                    ProcState.STOPPED,
                    None,
                    None,
                    0,
                    None,
                    None,
                    paths.log_file(spec.name),
                )
            )
            continue
        state, pid = proc.state, proc.pid
        if supervisor is None or record is None or record.pid != supervisor:
            # Nobody keeps this record up to date: trust only what /proc says.
            alive = pid is not None and _is_alive_as(pid, proc.argv)
            state = ProcState.ORPHANED if alive else ProcState.STOPPED
            pid = pid if alive else None
        running = state in (ProcState.RUNNING, ProcState.ORPHANED)
        views.append(
            ProcessView(
                name=proc.name,
                state=state,
                pid=pid,
                uptime_seconds=(now - proc.started_at).total_seconds()
                if running and proc.started_at
                else None,
                restarts=proc.restarts,
                last_exit=proc.last_exit,
                retry_in_seconds=max(0.0, (proc.next_start_at - now).total_seconds())
                if state is ProcState.BACKING_OFF and proc.next_start_at
                else None,
                log_file=proc.log_file,
            )
        )
    return PipelineStatus(supervisor, record, tuple(views))


def _is_alive_as(pid: int, argv: Sequence[str]) -> bool:
    # pids get reused: only a process still running this exact command line is ours.
    return process.pid_alive(pid) and process.cmdline(pid) == list(argv)


@dataclass(frozen=True)
class StopReport:
    supervisor_pid: int | None
    killed: bool
    """The supervisor did not stop in time and was SIGKILLed with its process group."""
    orphans: tuple[str, ...]
    """Processes found running without a supervisor, and stopped."""
    record: SupervisorRecord | None


def stop_pipeline(
    paths: RunPaths, settings: Settings, progress: Callable[[str], None]
) -> StopReport:
    """SIGTERM the supervisor (it stops its children within the grace period, then exits);
    SIGKILL its whole process group if it has not exited by grace + 5 s. Then stop whatever
    the state file names that still runs without a supervisor. Bounded: about grace + 15 s."""
    grace = settings.supervisor_stop_grace_seconds
    pid = running_supervisor(paths)
    killed = False
    if pid is not None:
        progress(f"Supervisor (pid {pid}): SIGTERM; its processes get {grace:g} s to stop")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not process.wait_for_exit(pid, grace + 5.0):
            progress(
                f"Supervisor (pid {pid}) did not exit in {grace + 5:g} s: SIGKILL to its group"
            )
            _kill_group(pid)
            killed = True
            process.wait_for_exit(pid, 5.0)
    orphans = []
    record = read_state(paths)
    for proc in record.processes if record else ():
        if proc.pid is not None and _is_alive_as(proc.pid, proc.argv):
            progress(f"{proc.name} (pid {proc.pid}) runs without a supervisor: stopping it")
            process.terminate(proc.pid, timeout=grace)
            orphans.append(proc.name)
    return StopReport(pid, killed, tuple(orphans), record)


def _kill_group(pid: int) -> None:
    try:
        # The supervisor leads its own group (start_new_session) unless something changed it.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
