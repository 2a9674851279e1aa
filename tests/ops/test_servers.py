"""The launcher (python -m authservice.serve) serves the service with granian, run stock.

The service started the way `make run` and the deployment files start it, with two
workers on a temporary SQLite database: a token is issued; /metrics sums both workers'
samples; the token activity counters are written when the workers exit on SIGTERM; a
worker killed outright is replaced and its live gauges are dropped from /metrics; no
variable of the process environment reaches a request; with LOG_FORMAT=json every line
it writes is JSON, the access line carrying the request id; a flood of idle connections
does not keep /healthz from answering; a health check without a Host header (HTTP/1.0)
is answered.
"""

import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scripts.opslib import manage, onboard
from tests.test_support import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.ops_smoke


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class Served:
    """The service on a free port, two workers, SQLite in ``tmp_path``."""

    def __init__(self, tmp_path: Path, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.worker_count = workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = tmp_path / "db.sqlite3"
        self.var = tmp_path
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_",
                                                                                 "GUNICORN_", "PROMETHEUS_",
                                                                                 "LOG_"))},
                    "DATABASE_URL": f"sqlite:///{self.database}", "REDIS_URL": "", "AUTHSERVICE_VAR_DIR": str(tmp_path),
                    "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": str(workers),
                    "DJANGO_SECRET_KEY": "launcher-test-secret-0123456789abcdef0123456789",
                    "AUTHSERVICE_KEY_ENCRYPTION_KEY": "lE5TlWR2A-p3Mki3fl5UdE4c0cxBFKXE_7b3axc4xj0",
                    "PYTHONWARNINGS": "ignore", **env}
        self.log = tmp_path / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self, *args: str) -> None:
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "bootstrap", "--no-admin")
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "authservice.serve", *args], cwd=ROOT,
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_ready(self.url, self.process, lambda: self.log.read_text()[-3000:],
                   lambda: len(self.workers()) == self.worker_count, path="/healthz" if args else "/readyz")

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


def wait_ready(url: str, process: subprocess.Popen, log, also=lambda: True, path: str = "/readyz") -> None:
    """Until ``url`` + ``path`` answers 200 (and ``also()``); fails, with ``log()``, if
    ``process`` exits first or a minute passes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log()
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200 and also():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready: {log()}")


@pytest.fixture
def served(tmp_path):
    service = Served(tmp_path)
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


def test_tokens_are_counted_over_both_workers_and_activity_is_flushed_on_sigterm(served):
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


def test_a_killed_worker_is_replaced_and_its_live_gauges_leave_the_metrics(tmp_path):
    service = Served(tmp_path)
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


def test_no_process_environment_reaches_a_request(tmp_path):
    """granian starts every request's environ from a copy of the worker's environment
    (granian/wsgi.py): any variable the service runs with would reach request.META."""
    launch = {"PGPASSWORD": "pg-secret-in-the-environment", "SOME_RANDOM_SETTING_7Q": "random-value",
              "HTTP_PROXY": "http://proxy.internal:3128", "CONTENT_TYPE": "text/x-from-the-environment",
              "HTTP_X_FORWARDED_FOR": "203.0.113.9"}
    service = Served(tmp_path, workers=1, **launch)
    service.start("tests.ops.environ_app")
    try:
        environ = httpx.get(f"{service.url}/seen?x=1", headers={"X-Custom": "from-the-request"}, timeout=10).json()
        leaked = {name for name, value in service.env.items() if environ.get(name) == value}
        assert leaked == set(), leaked
        assert not any("secret" in value for value in environ.values()), environ
        # What the request and the server set is all there.
        assert environ["HTTP_X_CUSTOM"] == "from-the-request"
        assert (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]) == ("GET", "/seen", "x=1")
        assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert environ["HTTP_HOST"] == f"127.0.0.1:{service.port}"
        # A header the request sends under a name the environment also has is the request's.
        sent = httpx.get(f"{service.url}/", headers={"X-Forwarded-For": "198.51.100.7"}, timeout=10).json()
        assert sent["HTTP_X_FORWARDED_FOR"] == "198.51.100.7"
        posted = httpx.post(f"{service.url}/", content=b"{}", headers={"Content-Type": "application/json"},
                            timeout=10).json()
        assert posted["CONTENT_TYPE"] == "application/json" and posted["CONTENT_LENGTH"] == "2"
    finally:
        service.kill()


def test_oversized_request_lines_and_header_fields_are_refused(served):
    """gunicorn's limits (4,094-byte request line, 8,190-byte header field): granian would
    otherwise pass a 100 KB header value on to Django."""
    url = f"{served.url}/healthz"
    assert httpx.get(url, headers={"X-Fine": "v" * 8000}, timeout=10).status_code == 200
    assert httpx.get(url, headers={"X-Big": "v" * 9000}, timeout=10).status_code == 431
    assert httpx.get(url, headers={"X-Big": "v" * 100_000}, timeout=10).status_code == 431
    assert httpx.get(f"{url}?q={'a' * 4000}", timeout=10).status_code == 200
    assert httpx.get(f"{url}?q={'a' * 10_000}", timeout=10).status_code == 414
    response = httpx.post(f"{served.url}/oauth2/token", data={"grant_type": "client_credentials"},
                          headers={"Authorization": "Basic " + "A" * 20_000}, timeout=10)
    assert response.status_code == 431


ACCESS_LINE = re.compile(r' authservice\.access \[(?P<request_id>[^\]]+)\] 127\.0\.0\.1 '
                         r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" (?P<status>\d{3}) (?P<sent>\d+|None) '
                         r'\d+\.\d\dms$')


def test_the_text_access_line_has_no_query_string(served):
    answer = httpx.get(f"{served.url}/healthz?token=secret-in-the-url", headers={"X-Request-ID": "line-check-1"},
                       timeout=10)
    httpx.post(f"{served.url}/oauth2/token", data={"grant_type": "client_credentials"},
               headers={"X-Request-ID": "line-check-2"}, timeout=10)
    deadline = time.monotonic() + 10
    lines: list[re.Match] = []
    while len(lines) < 2 and time.monotonic() < deadline:
        lines = [match for line in served.log.read_text().splitlines()
                 if (match := ACCESS_LINE.search(line)) and match["request_id"].startswith("line-check")]
        time.sleep(0.1)
    assert [(m["request_id"], m["method"], m["path"], m["status"]) for m in lines] == [
        ("line-check-1", "GET", "/healthz", "200"), ("line-check-2", "POST", "/oauth2/token", "401")]
    assert lines[0]["sent"] == str(len(answer.content))
    assert "secret-in-the-url" not in served.log.read_text()


def test_with_log_format_json_every_line_is_json_and_a_token_request_has_its_access_line(tmp_path):
    service = Served(tmp_path, LOG_FORMAT="json")
    del service.env["PYTHONWARNINGS"]  # a warning too must be a JSON line
    service.start()
    try:
        agent = onboard(service.env, "JSON Agent")
        response = httpx.post(f"{service.url}/oauth2/token", data={"grant_type": "client_credentials"},
                              auth=(agent.client_id, agent.client_secret), timeout=10)
        assert response.status_code == 200
        request_id = response.headers["X-Request-ID"]
        httpx.get(f"{service.url}/healthz?leak=query-secret", timeout=10)
        assert httpx.get(f"{service.url}/nowhere", timeout=10).status_code == 404  # Django logs a warning
        assert service.terminate() == 0
    finally:
        service.kill()
    lines = service.log.read_text().splitlines()
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
    assert all(isinstance(entry, dict) for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert {"_granian", "authservice.access", "django.request"} <= loggers, loggers
    access = [entry for entry in entries if entry["logger"] == "authservice.access"
              and entry["request_id"] == request_id]
    assert len(access) == 1, entries
    line = access[0]
    assert (line["method"], line["path"], line["status"], line["client_id"]) == (
        "POST", "/oauth2/token", 200, agent.client_id)
    assert line["remote_addr"] == line["client_addr"] == "127.0.0.1"
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
    assert "query-secret" not in service.log.read_text()
    assert agent.client_secret not in service.log.read_text()


def test_a_flood_of_idle_connections_does_not_keep_healthz_from_answering(served):
    """2,500 connections from one address that never send a request (granian held 1,024 per
    worker, its backlog / workers, and stopped accepting: /healthz hung for 30 s)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3000 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (3000, hard))
    elif soft < 3000:
        pytest.skip(f"open files limit {soft}: 2,500 sockets cannot be opened")
    idle = []
    try:
        for _ in range(2500):
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=5))
        slowest = 0.0
        for _ in range(5):
            started = time.monotonic()
            assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.2)
        assert slowest < 1.0, slowest
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_unix_socket_bind_serves(tmp_path):
    path = tmp_path / "serve.sock"
    service = Served(tmp_path, workers=1, GUNICORN_BIND=f"unix:{path}")
    manage(service.env, "migrate", "--noinput")
    with service.log.open("w") as out:
        service.process = subprocess.Popen([sys.executable, "-m", "authservice.serve"], cwd=ROOT, env=service.env,
                                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost",
                          timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert service.process.poll() is None and time.monotonic() < deadline, service.log.read_text()[-2000:]
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        assert service.terminate() == 0
    finally:
        service.kill()


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


def test_asking_for_gunicorn_fails_fast_naming_granian(tmp_path):
    result = refused_start({**Served(tmp_path).env, "AUTHSERVICE_SERVER": "gunicorn"})
    assert result.returncode != 0
    assert "AUTHSERVICE_SERVER='gunicorn': granian is the only server" in result.stderr


def test_a_port_another_process_listens_on_is_refused(tmp_path):
    """granian's workers bind with SO_REUSEPORT, so a second server on a port in use would
    silently share it with the first."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = refused_start({**Served(tmp_path).env, "GUNICORN_BIND": f"127.0.0.1:{port}"})
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_metrics_directory_another_running_server_uses_is_refused(tmp_path):
    """Two instances given one metrics directory (one AUTHSERVICE_VAR_DIR, or a
    PROMETHEUS_MULTIPROC_DIR both inherit): the second would empty it at start, taking
    the first's samples. It refuses to start, and the first serves on."""
    first = Served(tmp_path)
    first.start()
    try:
        second = Served(tmp_path / "second")
        env = {**second.env, "DATABASE_URL": first.env["DATABASE_URL"],
               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
        result = refused_start(env)
        assert result.returncode != 0
        assert f"PROMETHEUS_MULTIPROC_DIR={tmp_path / 'metrics'}: in use by another running server" in result.stderr
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


def test_a_response_whose_close_fails_is_still_sent(tmp_path):
    """The wrapper closes a Django response itself (request_finished) before granian sends
    it; a receiver that raises must not turn an issued token into a 500."""
    script = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "authservice.settings"
django.setup()
from django.core.signals import request_finished
from django.http import HttpResponse
from authservice.serve import serving

def broken(**kwargs):
    raise RuntimeError("receiver failed")

request_finished.connect(broken)
statuses = []
app = serving(lambda environ, start_response: (start_response("200 OK", []), HttpResponse(b"token"))[1], {})
body = app({"REQUEST_METHOD": "POST", "PATH_INFO": "/oauth2/token", "SERVER_PROTOCOL": "HTTP/1.1"},
           lambda status, headers, exc_info=None: statuses.append(status))
print(statuses, body)
"""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": ""}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "['200 OK'] [b'token']", result.stderr[-2000:]
    assert "closing the response failed" in result.stderr
