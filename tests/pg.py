"""A throwaway PostgreSQL 15 cluster on loopback, for the store tests and bench/ingest_scale.

`PgCluster` runs Debian's server binaries (postgresql-15, installed by `make test`): initdb in
a fresh directory, the postmaster on 127.0.0.1 and a free port (no Unix socket outside its
own directory), stopped by its PID (SIGINT: fast shutdown) and the directory removed. As root
the server runs as the `postgres` user (it refuses to run as root) and owns its directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def pg_missing() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    for exe in ("initdb", "postgres"):
        if not (PG_BIN / exe).exists():
            return f"{PG_BIN / exe} absent: install Debian postgresql-15 (make test does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres user to run the server as (Debian postgresql-15 creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One cluster; `start()` returns once it accepts connections, `stop()` by PID."""

    def __init__(self, *, durable: bool = True, settings: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="netopt-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable  # False: fsync off, for tests (a crash loses nothing we keep)
        self.settings = settings or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _as_server(self, argv: list[str]) -> list[str]:
        return argv if self._user is None else ["runuser", "-u", self._user, "--", *argv]

    def start(self, timeout_s: float = 30.0) -> str:
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        log = (self.root / "initdb.log").open("wb")
        subprocess.run(
            self._as_server([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                             "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        opts = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                "unix_socket_directories": str(self.root), "max_connections": "60",
                "shared_buffers": "128MB", **({} if self.durable else
                {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}),
                **self.settings}  # fmt: skip
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data)]
        for k, v in opts.items():
            argv += ["-c", f"{k}={v}"]
        self.proc = subprocess.Popen(
            self._as_server(argv),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "server.log").open("wb"),
        )
        self._wait_ready(timeout_s)
        return self.dsn

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_tail()}")
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres not ready in {timeout_s} s: {self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def log_tail(self) -> str:
        p = self.root / "server.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else "(no log)"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown by the postmaster's PID (from postmaster.pid), then remove it all."""
        if self.proc is not None and self.proc.poll() is None:
            pid_file = self.data / "postmaster.pid"
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)  # not written yet: signal what we started
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
