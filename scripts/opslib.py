"""Shared pieces of the operations scripts (cluster.py, faults.py, soak.py) and the topology tests.

Instances run through the project's launcher (python -m authservice.serve: granian, the only
server; the scripts' --server accepts granian); deploy/haproxy.cfg
itself runs in front of two of them (ShippedHAProxy);
databases are temporary (created and dropped here, named with a prefix the scripts take
as --db-prefix); a PostgreSQL cluster and a Redis server can be started privately on a
given port, so fault tests never touch a shared server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk" / "src"))

from ocen_sdk.jws import sign_compact  # noqa: E402
from ocen_sdk.key_loading import public_pem, thumbprint  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Tables --------------------------------------------------------------------------------------

def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


# --- Databases and servers ------------------------------------------------------------------------

@contextlib.contextmanager
def temp_database(admin_dsn: str, prefix: str):
    """A fresh database on the server ``admin_dsn`` points at, dropped afterwards; yields its URL."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    url = (f"postgres://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:"
           f"{info.get('port', 5432)}/{name}")
    try:
        yield url
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin_dsn, autocommit=True,
                                                                  connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def initdb_available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


class OwnPostgres:
    """A private PostgreSQL cluster in a temporary directory, on 127.0.0.1:``port``."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.dir = port, workdir / "pg"
        self.socket_dir = workdir / "pgsock"
        self.logfile = workdir / "pg.log"

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        return subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-l", str(self.logfile),
                                            "-o", options, "-w", "-t", "60", *args]),
                              capture_output=True, text=True, check=check, timeout=90)

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        self.socket_dir.mkdir(parents=True)
        self.logfile.touch()
        if os.geteuid() == 0:
            shutil.chown(self.dir.parent, "postgres")
            for path in (self.dir, self.socket_dir, self.logfile):
                shutil.chown(path, "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.dir), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       capture_output=True, text=True, check=True, timeout=120)
        self.start()

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", check=False)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.admin_dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def connection_count(self, database: str | None = None) -> int:
        with psycopg.connect(self.admin_dsn, connect_timeout=2) as conn:
            if database:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                    (database,)).fetchone()[0]
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                                ).fetchone()[0]


class OwnRedis:
    """A private redis-server on 127.0.0.1:``port``, without persistence (as the issue found it)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.dir = port, workdir
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def flushall(self) -> None:
        import redis

        redis.Redis(port=self.port, socket_timeout=2).flushall()


# --- Instances ------------------------------------------------------------------------------------

def service_env(*, database_url: str, redis_url: str, issuer: str, extra: dict | None = None) -> dict:
    """The production-like environment every instance shares (secrets generated per run)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "AUTHSERVICE_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
        "AUTHSERVICE_ISSUER": issuer,
        "LOG_LEVEL": "WARNING",
        "GUNICORN_ACCESS_LOG": "0",
        "PYTHONWARNINGS": "ignore",
        **(extra or {}),
    }


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


@dataclass
class Participant:
    client_id: str
    client_secret: str
    participant_id: str
    key: ec.EllipticCurvePrivateKey

    def assertion(self, audience: str, *, jti: str | None = None) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 120,
                  "jti": jti or uuid.uuid4().hex}
        return sign_compact(json.dumps(claims).encode(), self.key, alg="ES256", kid=thumbprint(self.key))


def onboard(env: dict, name: str, role: str = "LOAN_AGENT") -> Participant:
    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(public_pem(key))
    try:
        data = json.loads(manage(env, "onboard", "--org-name", name, "--role", role, "--base-url",
                                 f"https://{name.lower().replace(' ', '-')}.example", "--public-key", handle.name,
                                 "--json"))
    finally:
        os.unlink(handle.name)
    return Participant(data["client_id"], data["client_secret"], data["participant_id"], key)


# The scopes the scripts grant (grants name scopes of the catalogue).
SCOPES = ("ocen.loan", "soak.0", "soak.1", "soak.2")


def prepare_database(env: dict) -> None:
    manage(env, "migrate", "--noinput")
    manage(env, "bootstrap", "--no-admin")
    for scope in SCOPES:
        manage(env, "define_scope", scope)


# What the launcher (python -m authservice.serve) runs: one server, stock granian.
SERVER = "granian"


def add_server_option(parser) -> None:
    """--server: kept for callers that pass it; the launcher runs one server."""
    parser.add_argument("--server", choices=[SERVER], default=SERVER,
                        help="the HTTP server the instances run (python -m authservice.serve: granian)")


def add_db_prefix_option(parser, default: str) -> None:
    parser.add_argument("--db-prefix", default=default,
                        help="name prefix of the temporary databases (to keep runs that share a server apart)")


def wait_until_ready(process: subprocess.Popen, url: str, timeout: float, *, name: str, log_tail) -> None:
    """Until ``url``/readyz answers 200; an error naming ``name`` (with its log) if the
    process exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_tail()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s: {log_tail()}")


class Instance:
    """One instance (the project's launcher, python -m authservice.serve) on 127.0.0.1:``port``."""

    def __init__(self, name: str, port: int, env: dict, *, workers: int = 2, threads: int | None = None,
                 server: str | None = None) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.var = Path(tempfile.mkdtemp(prefix=f"ocen-{name}-"))
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers),
                    "AUTHSERVICE_VAR_DIR": str(self.var), "PROMETHEUS_MULTIPROC_DIR": str(self.var / "metrics")}
        self.server = server or SERVER
        if threads is not None:
            self.env["GUNICORN_THREADS"] = str(threads)
        self.process: subprocess.Popen | None = None
        self.logfile = self.var / "server.log"

    def start(self, wait: bool = True) -> None:
        self._log = open(self.logfile, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([PY, "-m", "authservice.serve"],
                                        cwd=ROOT, env=self.env, start_new_session=True, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_until_ready(self.process, self.url, timeout, name=self.name, log_tail=self.log_tail)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def worker_pids(self) -> list[int]:
        if not self.process:
            return []
        try:
            return [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
                    .read_text().split()]
        except FileNotFoundError:
            return []

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def kill_all(self) -> None:
        """SIGKILL the master and its workers at once (a machine or container dying)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.var, ignore_errors=True)


def rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")), 0)


class ShippedHAProxy:
    """deploy/haproxy.cfg itself (not a copy), on 127.0.0.1:``port`` in front of two instances:
    its LB_* variables name the addresses; its log (stdout) goes to ``workdir``/haproxy.log."""

    CONFIG = ROOT / "deploy" / "haproxy.cfg"

    def __init__(self, port: int, app1: Instance, app2: Instance, workdir: Path) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        self.env = {**os.environ, "LB_BIND": f"127.0.0.1:{port}", "LB_APP1": f"127.0.0.1:{app1.port}",
                    "LB_APP2": f"127.0.0.1:{app2.port}"}
        self.logfile = workdir / "haproxy.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.CONFIG)], env=self.env, check=True, timeout=30)
        with open(self.logfile, "ab") as output:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.CONFIG)], env=self.env, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_ready(self.process, self.url, timeout, name="HAProxy", log_tail=self.log_tail)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def state_changes(self, server: str) -> list[str]:
        """HAProxy's own lines about ``server`` (app1, app2) going UP or DOWN, oldest first."""
        return re.findall(rf"Server instances/{server} is (UP|DOWN)", self.log_tail(10**7))

    def in_rotation(self, server: str) -> bool:
        """UP as far as HAProxy's log says (servers start UP; a change is logged)."""
        changes = self.state_changes(server)
        return not changes or changes[-1] == "UP"

    def restart(self, instance: Instance, server: str, *, timeout: float = 60.0) -> tuple[float, float]:
        """SIGTERM to ``instance``'s launcher (what an orchestrator sends), wait for it to exit,
        wait for HAProxy to take it out, start it again, wait until HAProxy has it back.
        Returns (seconds to exit, seconds until back in rotation)."""
        seen = len(self.state_changes(server))
        started = time.monotonic()
        instance.signal(signal.SIGTERM)
        instance.process.wait(timeout=timeout)
        exited = time.monotonic() - started
        instance.stop()
        if not self.wait_state(server, "DOWN", after=seen, timeout=timeout):
            raise RuntimeError(f"HAProxy never took {server} out: {self.state_changes(server)}")
        instance.start()
        if not self.wait_state(server, "UP", after=seen + 1, timeout=timeout):
            raise RuntimeError(f"HAProxy never put {server} back: {self.state_changes(server)}")
        return exited, time.monotonic() - started

    def wait_state(self, server: str, state: str, *, after: int = 0, timeout: float = 30.0) -> bool:
        """Until HAProxy reports ``server`` in ``state`` (beyond its first ``after`` changes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state in self.state_changes(server)[after:]:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


# --- Load -----------------------------------------------------------------------------------------

@dataclass
class Sample:
    started: float
    ended: float
    outcome: str  # an HTTP status ("200") or an exception class name
    kind: str = "token"


@dataclass
class Load:
    """``threads`` keep-alive clients sending requests made by ``request(client, n)`` until stopped."""

    request: object
    threads: int = 4
    samples: list[Sample] = field(default_factory=list)
    pause: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    kind, response = self.request(client, index * 1_000_000 + n)
                    outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    kind, outcome = "?", type(exc).__name__
                sample = Sample(started, time.monotonic(), outcome, kind)
                with self._lock:
                    self.samples.append(sample)
                if outcome not in {"200", "400", "401", "429"} and not outcome.startswith("5"):
                    time.sleep(0.02)  # a refused connection: do not spin
                if self.pause:
                    time.sleep(self.pause)

    def start(self) -> Load:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=15)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.snapshot() if start <= s.started < end]


def outcomes(samples) -> Counter:
    return Counter(s.outcome for s in samples)


def token_request(url: str, participant: Participant):
    """A request maker for Load: client_secret_basic token requests against ``url``."""
    auth = (participant.client_id, participant.client_secret)

    def make(client: httpx.Client, n: int):
        return "token", client.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=auth)

    return make
