"""PgBouncer in transaction pooling mode, in front of a PostgreSQL server, for tests.

Debian's ``pgbouncer`` package; started as the ``postgres`` user (it refuses to run as
root), on a free loopback port, every database forwarded to the server and logged in
as the server's user. ``PgBouncer.available()`` says whether the binary is installed;
under ``CI=true`` a test that needs it fails instead of skipping (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.test_support import free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    def __init__(self, *, server_host: str = "127.0.0.1", server_port: int = 5432, user: str = "postgres",
                 pool_mode: str = "transaction") -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.dir.chmod(0o777)
        self.config = self.dir / "pgbouncer.ini"
        self.config.write_text(f"""[databases]
* = host={server_host} port={server_port} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
ignore_startup_parameters = extra_float_digits, options
pool_mode = {pool_mode}
max_client_conn = 200
default_pool_size = 10
logfile = {self.dir / 'pgbouncer.log'}
pidfile = {self.dir / 'pgbouncer.pid'}
""")
        self.config.chmod(0o644)
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return Path(BINARY).exists()

    def start(self) -> PgBouncer:
        command = [BINARY, str(self.config)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, dbname="postgres", user="postgres",
                                     connect_timeout=1, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                return self
            except psycopg.Error:
                if self.process.poll() is not None:
                    raise RuntimeError(f"pgbouncer exited: {self.log()}") from None
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not accept connections: {self.log()}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
