"""A private Postgres cluster (initdb + pg_ctl) listening on 127.0.0.1 only."""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra import process
from infra.base import Component, Port, Progress, StackError
from revloop.settings import Settings

INSTALL_HINT = "apt-get install postgresql-15"


class PostgresCluster(Component):
    name = "postgres"
    label = "Postgres"

    def __init__(self, settings: Settings, *, state_dir: Path, progress: Progress) -> None:
        self.base_dir = state_dir / "postgres"
        super().__init__(
            host=settings.postgres_host,
            progress=progress,
            # Postgres writes this itself; its first line is the postmaster's pid.
            pid_file=process.PidFile(self.base_dir / "data" / "postmaster.pid"),
            data_dir=self.base_dir / "data",
            log_file=state_dir / "logs" / "postgres.log",
        )
        self.settings = settings
        self.state_dir = state_dir
        self.bin_dir = settings.postgres_bin_dir

    @property
    def ports(self) -> tuple[Port, ...]:
        return (Port(self.settings.postgres_port, "REVLOOP_POSTGRES_PORT"),)

    def conninfo(self, dbname: str | None = None) -> str:
        """Connection string for this cluster (secret: never log it).

        Built from the postgres_* settings rather than settings.dsn, which DATABASE_URL may point
        at some other server, and quoted properly whatever the password contains.
        """
        s = self.settings
        return make_conninfo(
            host=s.postgres_host,
            port=s.postgres_port,
            user=s.postgres_user,
            password=s.postgres_password.get_secret_value(),
            dbname=dbname or s.postgres_db,
            connect_timeout=3,
        )

    def _is_ours(self, argv: list[str]) -> bool:
        return bool(argv) and Path(argv[0]).name == "postgres" and str(self.data_dir) in argv

    def _probe(self) -> str | None:
        try:
            with psycopg.connect(self.conninfo()) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"cannot connect to database {self.settings.postgres_db!r}: {_first_line(exc)}"
        return None

    def _probe_server(self) -> str | None:
        try:
            with psycopg.connect(self.conninfo("postgres")):
                return None
        except psycopg.Error as exc:
            return f"cannot connect: {_first_line(exc)}"

    # --- running as the postgres OS user -------------------------------------------------------

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _os_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.settings.postgres_os_user)
        except KeyError:
            raise StackError(
                f"Postgres refuses to run as root, and OS user {self.settings.postgres_os_user!r} "
                f"(REVLOOP_POSTGRES_OS_USER) does not exist; {INSTALL_HINT} creates 'postgres'."
            ) from None

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        if self._as_root:
            return ["runuser", "-u", self.settings.postgres_os_user, "--", *argv]
        return argv

    def _give_to_postgres(self, path: Path) -> None:
        if self._as_root:
            user = self._os_user()
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(tool, *args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.base_dir,  # the postgres user cannot enter root's cwd
            timeout=timeout,
            check=False,
            # pg_ctl's postmaster inherits the session: keep it away from the terminal's Ctrl-C.
            start_new_session=True,
        )

    # --- starting ------------------------------------------------------------------------------

    def check_can_start(self) -> None:
        missing = [t for t in ("initdb", "pg_ctl", "postgres") if not (self.bin_dir / t).exists()]
        if missing:
            raise StackError(
                f"Postgres binaries {', '.join(missing)} not found in {self.bin_dir}: "
                f"{INSTALL_HINT} (or point REVLOOP_POSTGRES_BIN_DIR at them)."
            )
        if self._as_root:
            self._os_user()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # test -x on a directory fails unless every ancestor is searchable for that user.
            user = self.settings.postgres_os_user
            reachable = subprocess.run(
                ["runuser", "-u", user, "--", "test", "-x", str(self.state_dir)], check=False
            )
            if reachable.returncode != 0:
                raise StackError(
                    f"OS user {self.settings.postgres_os_user!r} runs Postgres (it refuses root) "
                    f"but cannot reach {self.state_dir}: some directory on that path is not "
                    "searchable by others. Use a state dir on a world-searchable path "
                    "(REVLOOP_STATE_DIR) or chmod o+x the directories on the way."
                )
        self.check_ports_free()

    def prepare(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_postgres(self.base_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        self._give_to_postgres(self.log_file)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        self.progress(f"{self.label}: initialising a cluster in {self.data_dir}")
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_postgres(self.data_dir)
        pwfile = self.base_dir / ".initdb-pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.settings.postgres_password.get_secret_value() + "\n")
            self._give_to_postgres(pwfile)
            result = self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.settings.postgres_user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed (exit {result.returncode}):\n{_last_lines(result)}")

    def start(self) -> None:
        s = self.settings
        options = " ".join(
            [
                f"-p {s.postgres_port}",
                f"-c listen_addresses={shlex.quote(s.postgres_host)}",
                # Socket in the data dir: no clash with a system cluster's /var/run/postgresql.
                f"-c unix_socket_directories={shlex.quote(str(self.data_dir))}",
            ]
        )
        self.progress(f"{self.label}: starting on {self.address}")
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        if result.returncode != 0:
            raise StackError(
                self._with_log(
                    f"pg_ctl start failed (exit {result.returncode}):\n{_last_lines(result)}"
                )
            )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._wait_until(self._probe_server, deadline)
        self._create_database()
        self._wait_until(self._probe, deadline)

    def _create_database(self) -> None:
        # revloop's own, and the schema registry's (its tables have generic names: config,
        # versions, outbox; a database of its own keeps them apart from ours).
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            for db in (self.settings.postgres_db, self.settings.registry_db):
                found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if found.fetchone() is None:
                    self.progress(f"{self.label}: creating database {db!r}")
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))

    # --- stopping ------------------------------------------------------------------------------

    def stop(self, timeout: float) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        self.progress(f"{self.label}: stopping pid {pid}")
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            f"{timeout:.0f}",
            "stop",
            timeout=timeout + 10,
        )
        if result.returncode != 0 and process.pid_alive(pid):
            # SIGINT is Postgres's own "fast shutdown"; terminate() escalates to SIGKILL.
            process.terminate(pid, sig=signal.SIGINT, timeout=timeout)
            self.progress(f"{self.label}: pg_ctl stop failed, signalled pid {pid} directly")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _last_lines(result: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])
