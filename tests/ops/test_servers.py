"""The launcher (python -m authservice.serve) serves the service under gunicorn and granian alike.

Each server, started the way `make run` and the deployment files start it, with two
workers on a temporary SQLite database: a token is issued; /metrics sums both workers'
samples; the token activity counters are written when the workers exit on SIGTERM;
under granian, a worker killed outright is replaced and its live gauges are dropped
from /metrics, and a secret set in the environment never reaches request.META; a
health check without a Host header (HTTP/1.0) is answered as under gunicorn.
"""

import os
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

    def __init__(self, server: str, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = tmp_path / "db.sqlite3"
        self.var = tmp_path
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_",
                                                                                 "GUNICORN_", "PROMETHEUS_"))},
                    "DATABASE_URL": f"sqlite:///{self.database}", "REDIS_URL": "", "AUTHSERVICE_VAR_DIR": str(tmp_path),
                    "AUTHSERVICE_SERVER": server, "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": "2",
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
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200 and len(self.workers()) == 2:
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
    assert issued == 12


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
