"""The launcher (python -m authservice.serve) serves the service under gunicorn and granian alike.

Each server, started the way `make run` and the deployment files start it, with two
workers on a temporary SQLite database: a token is issued; /metrics sums both workers'
samples; the token activity counters are written when the workers exit on SIGTERM;
under granian, a worker killed outright is replaced and its live gauges are dropped
from /metrics, and a secret set in the environment never reaches request.META; a
health check without a Host header (HTTP/1.0) is answered as under gunicorn.
"""

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from scripts.opslib import manage, onboard

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.ops_smoke


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class Served:
    """The service under ``server`` on a free port, two workers, SQLite in ``tmp_path``."""

    def __init__(self, server: str, tmp_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.worker_count = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = tmp_path / "db.sqlite3"
        self.var = tmp_path
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_",
                                                                                 "GUNICORN_", "PROMETHEUS_"))},
                    "DATABASE_URL": f"sqlite:///{self.database}", "REDIS_URL": "", "AUTHSERVICE_VAR_DIR": str(tmp_path),
                    "AUTHSERVICE_SERVER": server, "GUNICORN_BIND": f"127.0.0.1:{self.port}",
                    "GUNICORN_WORKERS": str(workers),
                    "DJANGO_SECRET_KEY": "launcher-test-secret-0123456789abcdef0123456789",
                    "AUTHSERVICE_KEY_ENCRYPTION_KEY": "launcher-test-kek", "PYTHONWARNINGS": "ignore"}
        self.log = tmp_path / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "bootstrap", "--no-admin")
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "authservice.serve"], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if (httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
                        and len(self.workers()) == self.worker_count):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log.read_text()[-3000:]}")

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def terminate(self) -> int:
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=40)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(params=["gunicorn", "granian"])
def served(request, tmp_path):
    service = Served(request.param, tmp_path)
    service.start()
    yield service
    service.kill()


def tokens(service: Served, participant, count: int) -> None:
    """``count`` tokens, each on a new connection (new connections land on either worker)."""
    for _ in range(count):
        response = httpx.post(f"{service.url}/oauth2/token", data={"grant_type": "client_credentials"},
                              auth=(participant.client_id, participant.client_secret), timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["token_type"].lower() == "bearer"


def host_less_status(service: Served, path: str) -> str:
    """The status line of an HTTP/1.0 request without a Host header (HAProxy's plain httpchk)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def test_both_servers_issue_tokens_count_them_over_both_workers_and_flush_activity_on_sigterm(served):
    assert " 200 " in host_less_status(served, "/readyz")
    agent = onboard(served.env, "Launcher Agent")
    before = served.metric("authservice_tokens_issued_total")
    tokens(served, agent, 12)
    assert served.metric("authservice_tokens_issued_total") == before + 12
    samples = list((served.var / "metrics").glob("histogram_*.db"))
    assert len(samples) == 2, samples  # both workers served and wrote their samples
    assert served.terminate() == 0
    # The activity counters (flushed every 5 s otherwise) were written as the workers exited.
    with sqlite3.connect(served.database) as conn:
        issued = conn.execute("SELECT COALESCE(SUM(issued), 0) FROM registry_participantactivity").fetchone()[0]
    assert issued == 12, served.log.read_text()[-3000:]


@pytest.mark.parametrize("server", ["granian"])
def test_a_killed_granian_worker_is_replaced_and_its_live_gauges_leave_the_metrics(server, tmp_path):
    service = Served(server, tmp_path)
    service.start()
    try:
        agent = onboard(service.env, "Launcher Agent")
        tokens(service, agent, 4)
        victim = service.workers()[0]
        assert list((tmp_path / "metrics").glob(f"gauge_live*_{victim}.db"))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(set(service.workers()) - {victim}) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert victim not in service.workers() and len(service.workers()) == 2
        tokens(service, agent, 4)
        assert service.metric("authservice_tokens_issued_total") >= 4  # the dead worker's counters stay
        assert not list((tmp_path / "metrics").glob(f"gauge_live*_{victim}.db"))
    finally:
        service.kill()


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_no_secret_from_the_environment_reaches_a_request(server, tmp_path):
    """granian copies the process environment into every request's environ (gunicorn does
    not); the launcher drops the secrets from a worker's environment once it has loaded."""
    service = Served(server, tmp_path)
    env = {**service.env, "PYTHONPATH": str(ROOT), "REDIS_URL": "redis://:password@127.0.0.1:1/0"}
    with service.log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "authservice.serve", "tests.ops.environ_app"], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None and time.monotonic() < deadline, service.log.read_text()[-2000:]
            try:
                answer = httpx.get(f"{service.url}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert answer.text == "-"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_both_servers_refuse_an_oversized_request_line_or_header_field(served):
    """gunicorn's limits (4,094-byte request line, 8,190-byte header field) hold under
    granian too, which would otherwise pass a 100 KB header value on to Django."""
    url = f"{served.url}/healthz"
    assert httpx.get(url, headers={"X-Fine": "v" * 8000}, timeout=10).status_code == 200
    assert httpx.get(url, headers={"X-Big": "v" * 9000}, timeout=10).status_code == 431
    assert httpx.get(url, headers={"X-Big": "v" * 100_000}, timeout=10).status_code == 431
    assert httpx.get(f"{url}?q={'a' * 4000}", timeout=10).status_code == 200
    assert httpx.get(f"{url}?q={'a' * 10_000}", timeout=10).status_code == 414
    response = httpx.post(f"{served.url}/oauth2/token", data={"grant_type": "client_credentials"},
                          headers={"Authorization": "Basic " + "A" * 20_000}, timeout=10)
    assert response.status_code == 431


ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                         r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<sent>\d+|None) '
                         r'\d+\.\d{6}s "(?P<agent>[^"]*)"$')


def test_both_servers_write_gunicorns_access_line_with_no_query_string(served):
    body = httpx.get(f"{served.url}/healthz?token=secret-in-the-url", headers={"User-Agent": "line-check"},
                     timeout=10).content
    httpx.post(f"{served.url}/oauth2/token", data={"grant_type": "client_credentials"},
               headers={"User-Agent": "line-check"}, timeout=10)
    deadline = time.monotonic() + 10
    lines: list[re.Match] = []
    while len(lines) < 2 and time.monotonic() < deadline:
        lines = [match for line in served.log.read_text().splitlines()
                 if (match := ACCESS_LINE.match(line)) and match["agent"] == "line-check"]
        time.sleep(0.1)
    assert [(m["method"], m["path"], m["status"]) for m in lines] == [("GET", "/healthz", "200"),
                                                                      ("POST", "/oauth2/token", "401")]
    assert lines[0]["sent"] == str(len(body))  # the body's bytes, under both servers
    assert "secret-in-the-url" not in served.log.read_text()


def test_granian_stops_accepting_then_closes_each_kept_alive_connection_with_its_answer(tmp_path):
    """SIGTERM to granian's main process: new connections are refused at once; a kept-alive
    connection still gets its answer, with "Connection: close", for the drain period; then
    the server exits cleanly. (Closing idle kept-alive connections at once, as granian
    does by itself, left a client's request unanswered in the faults smoke.)"""
    service = Served("granian", tmp_path)
    service.env["AUTHSERVICE_DRAIN_SECONDS"] = "5"
    service.start()
    try:
        with httpx.Client(timeout=10) as kept:
            first = kept.get(f"{service.url}/healthz")
            assert first.status_code == 200 and first.headers.get("connection", "").lower() != "close"
            os.kill(service.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 4
            refused = False
            while not refused and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", service.port), timeout=1):
                        time.sleep(0.05)
                except ConnectionRefusedError:
                    refused = True
            assert refused, "a new connection was still accepted while draining"
            assert service.process.poll() is None  # still draining
            during = kept.get(f"{service.url}/healthz")  # on the kept-alive connection
            assert during.status_code == 200
            assert during.headers["connection"].lower() == "close"
        assert service.process.wait(timeout=30) == 0, service.log.read_text()[-3000:]
        assert "Draining" in service.log.read_text()
    finally:
        service.kill()


def wait_ready(url: str, process: subprocess.Popen, log) -> None:
    """Until ``url``/readyz answers 200; fails, with ``log()``, if ``process`` exits first or
    a minute passes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log()
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


def listening_ports_of_anyone() -> set[int]:
    """Every listening TCP port on the host's loopback (this network namespace)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def reload_under_load(service: Served, workers: int) -> list[str]:
    """SIGHUP to ``service`` while 4 keep-alive clients ask /healthz; the failed requests."""
    errors: list[str] = []
    answered = [0]
    stop = threading.Event()

    def keep_asking():
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get(f"{service.url}/healthz")
                    answered[0] += 1
                    if response.status_code != 200:
                        errors.append(str(response.status_code))
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    clients = [threading.Thread(target=keep_asking) for _ in range(4)]
    assert service.process.poll() is None, service.log.read_text()[-3000:]
    try:
        old = set(service.workers())
        for client in clients:
            client.start()
        time.sleep(0.5)
        os.kill(service.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while (set(service.workers()) & old or len(service.workers()) != workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=20)
    assert not set(service.workers()) & old, service.log.read_text()[-3000:]
    assert answered[0] > 100
    return errors


@pytest.mark.parametrize("workers", [1, 2])
def test_granian_reload_on_sighup_replaces_every_worker_and_loses_no_kept_alive_request(tmp_path, workers):
    """SIGHUP: granian replaces each worker in turn; each old one first drains alone (its
    own slot of the flag) once its replacement listens. Stock granian closed the old
    worker's kept-alive connections under its clients (5 lost requests in 4 reloads)."""
    service = Served("granian", tmp_path, workers)
    service.start()
    try:
        assert reload_under_load(service, workers) == []
        log = service.log.read_text()
        assert log.count("Draining old worker") == workers
        assert "does not listen" not in log
        assert service.terminate() == 0
    finally:
        service.kill()


def test_granian_reload_stops_the_old_worker_only_once_its_slow_replacement_listens(tmp_path):
    """One worker, whose replacement takes 6 s to load (granian stops the old one 3.5 s
    after starting the new one): stopped then, the port would have no listener and
    every client told to reconnect would be refused."""
    service = Served("granian", tmp_path, workers=1)
    marker = tmp_path / "slow"
    service.env["AUTHSERVICE_TEST_SLOW_MARKER"] = str(marker)
    service.start()
    service.kill()  # started as the stock service (migrations, bootstrap); now the slow app, on the same port
    deadline = time.monotonic() + 10
    while service.port in listening_ports_of_anyone() and time.monotonic() < deadline:
        time.sleep(0.1)
    with service.log.open("w") as out:
        service.process = subprocess.Popen([sys.executable, "-m", "authservice.serve", "tests.ops.slow_app"],
                                           cwd=ROOT, env=service.env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
    try:
        wait_ready(service.url, service.process, lambda: service.log.read_text()[-2000:])
        marker.write_text("")
        assert reload_under_load(service, 1) == []
        assert "does not listen" not in service.log.read_text()
    finally:
        service.kill()


def test_drain_flag_slots_are_each_workers_own():
    from authservice.serve import DrainFlag

    with tempfile.TemporaryDirectory() as directory:
        main = DrainFlag.create(Path(directory))
        first, second = (DrainFlag.open(main.path, DrainFlag.slot_for(serial)) for serial in (0, 1))
        assert not first and not second
        main.raise_(first.slot)
        assert first and not second  # one worker drains alone (a reload)
        main.lower(first.slot)
        assert not first
        main.raise_()
        assert first and second  # the whole server drains
        assert DrainFlag.slot_for(DrainFlag.SIZE - 1) == 1  # slots are reused, never slot 0
        with pytest.raises(ValueError):
            DrainFlag.open(main.path, DrainFlag.SIZE)


def test_listening_ports_are_those_a_process_listens_on():
    from authservice.serve import listening_ports

    with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))
        ports = listening_ports(os.getpid())
        assert listener.getsockname()[1] in ports
        assert bound_only.getsockname()[1] not in ports
    assert listening_ports(2**22 + 1) == set()  # no such process


def test_stop_accepting_closes_listening_sockets_and_keeps_connections():
    """authservice.serve.stop_accepting, in a process of its own (it replaces every
    listening socket of the process that calls it)."""
    script = """
import socket
from authservice.serve import stop_accepting
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
client = socket.create_connection(("127.0.0.1", port))
served, _ = listener.accept()
assert stop_accepting() == 1
assert stop_accepting() == 0  # called again (as a draining worker does): nothing left to replace
try:
    socket.create_connection(("127.0.0.1", port), timeout=2)
    raise SystemExit("still accepting")
except ConnectionRefusedError:
    pass
client.sendall(b"ping")
assert served.recv(4) == b"ping"
served.sendall(b"pong")
assert client.recv(4) == b"pong"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(("value", "seconds"), [("", 1.0), ("0", 0.0), ("2.5", 2.5)])
def test_drain_seconds(value, seconds):
    from authservice.serve import drain_seconds

    assert drain_seconds({"AUTHSERVICE_DRAIN_SECONDS": value}) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "61"])
def test_drain_seconds_refuses_nonsense_at_start(value):
    from authservice.serve import drain_seconds

    with pytest.raises(SystemExit, match="AUTHSERVICE_DRAIN_SECONDS"):
        drain_seconds({"AUTHSERVICE_DRAIN_SECONDS": value})


def refused_start(env: dict) -> subprocess.CompletedProcess:
    """The launcher run with ``env``, expected to exit at once; killed with its whole
    process group if it serves instead (no worker outlives the test)."""
    process = subprocess.Popen([sys.executable, "-m", "authservice.serve"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"the launcher served instead of refusing: {stderr[-2000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_granian_refuses_a_port_another_process_listens_on(tmp_path):
    """As gunicorn does: granian's workers bind with SO_REUSEPORT, so a second server on a
    port in use would silently share it with the first."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Served("granian", tmp_path)
        result = refused_start({**service.env, "GUNICORN_BIND": f"127.0.0.1:{port}"})
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_granian_refuses_a_metrics_directory_another_running_server_uses(tmp_path):
    """Two instances given one metrics directory (one AUTHSERVICE_VAR_DIR, or a
    PROMETHEUS_MULTIPROC_DIR both inherit): the second used to empty it at start, taking
    the first's samples and its workers' drain flag (a respawned worker then crash-looped
    the server down). It now refuses to start, and the first serves on."""
    first = Served("granian", tmp_path)
    first.start()
    try:
        second = Served("granian", tmp_path / "second")
        env = {**second.env, "DATABASE_URL": first.env["DATABASE_URL"],
               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
        result = refused_start(env)
        assert result.returncode != 0
        assert f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'metrics'}: in use by another running server" in result.stderr
        assert list((tmp_path / "metrics").glob("granian-*.drain"))
        assert httpx.get(f"{first.url}/metrics", timeout=5).status_code == 200
        assert first.terminate() == 0
        # Released with the process: the directory is free again.
        relaunched = subprocess.Popen([sys.executable, "-m", "authservice.serve"], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{second.port}", relaunched, lambda: relaunched.stderr.read()[-2000:])
        finally:
            os.killpg(relaunched.pid, signal.SIGKILL)
            relaunched.wait(timeout=10)
    finally:
        first.kill()


def test_a_granian_worker_without_its_drain_flag_still_serves(tmp_path):
    """The drain flag is an aid, not a condition of serving: workers respawned after the
    flag's file was removed serve (and say so in the log) instead of crash-looping."""
    service = Served("granian", tmp_path)
    service.start()
    try:
        for flag in (tmp_path / "metrics").glob("granian-*.drain"):
            flag.unlink()
        for victim in service.workers():  # both, in turn: every worker left is a flagless one
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while (victim in service.workers() or len(service.workers()) < 2) and time.monotonic() < deadline:
                assert service.process.poll() is None, service.log.read_text()[-3000:]
                time.sleep(0.1)
        deadline = time.monotonic() + 30
        while service.log.read_text().count("will not drain on SIGTERM") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.log.read_text().count("will not drain on SIGTERM") == 2, service.log.read_text()[-3000:]
        agent = onboard(service.env, "Flagless Agent")
        tokens(service, agent, 6)
        assert service.process.poll() is None
    finally:
        service.kill()


def test_looking_for_listening_sockets_keeps_the_processs_file_locks(tmp_path):
    """listening_descriptors() duplicates no file: closing a duplicate releases every
    POSIX lock the process holds on the file, SQLite's included (two workers' writes at
    exit overlapped and one was lost before this was fixed)."""
    script = f"""
import fcntl, os, subprocess, sys
from authservice.serve import listening_descriptors
fd = os.open({str(tmp_path / "locked")!r}, os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
probe = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\\n"
         "try:\\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\\n"
         "except OSError:\\n    print('held')")
def lock_state():
    return subprocess.run([sys.executable, "-c", probe, {str(tmp_path / "locked")!r}], capture_output=True,
                          text=True).stdout.strip()
assert lock_state() == "held"
listening_descriptors()
print(lock_state())
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "held", result.stderr


def test_granian_on_a_unix_socket_refuses_new_clients_while_draining(tmp_path):
    """Under unix:/path the workers share the main process's socket: the drain takes the
    path off the filesystem (new clients refused) and still answers kept-alive ones."""
    service = Served("granian", tmp_path)
    path = tmp_path / "serve.sock"
    service.env.update({"GUNICORN_BIND": f"unix:{path}", "AUTHSERVICE_DRAIN_SECONDS": "5"})
    manage(service.env, "migrate", "--noinput")
    with service.log.open("w") as out:
        service.process = subprocess.Popen([sys.executable, "-m", "authservice.serve"], cwd=ROOT, env=service.env,
                                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://localhost", timeout=10) as kept:
            deadline = time.monotonic() + 60
            while True:
                assert service.process.poll() is None and time.monotonic() < deadline, service.log.read_text()[-2000:]
                try:
                    if kept.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            os.kill(service.process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 4
            while path.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not path.exists()
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost") as new, \
                    pytest.raises(httpx.ConnectError):
                new.get("/healthz", timeout=2)
            during = kept.get("/healthz")
            assert during.status_code == 200 and during.headers["connection"].lower() == "close"
        assert service.process.wait(timeout=30) == 0, service.log.read_text()[-3000:]
    finally:
        service.kill()


def test_a_response_whose_close_fails_is_still_sent(tmp_path):
    """The launcher closes a Django response itself (request_finished) before granian
    sends it; a receiver that raises must not turn an issued token into a 500."""
    script = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "authservice.settings"
django.setup()
from django.core.signals import request_finished
from django.http import HttpResponse
from authservice.serve import _as_gunicorn_gives_it

def broken(**kwargs):
    raise RuntimeError("receiver failed")

request_finished.connect(broken)
statuses = []
app = _as_gunicorn_gives_it(lambda environ, start_response: (start_response("200 OK", []), HttpResponse(b"token"))[1])
body = app({"REQUEST_METHOD": "POST", "PATH_INFO": "/oauth2/token", "SERVER_PROTOCOL": "HTTP/1.1"},
           lambda status, headers, exc_info=None: statuses.append(status))
print(statuses, body)
"""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "['200 OK'] [b'token']", result.stderr[-2000:]
    assert "closing the response failed" in result.stderr
