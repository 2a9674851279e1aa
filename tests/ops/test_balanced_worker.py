"""gunicorn.conf.py's worker spreads long-lived connections over every worker and drains on SIGTERM.

Runs gunicorn with the project's config and worker class on a trivial app (a short
sleep, then the worker's pid), so it needs no database and takes a few seconds. The
SIGTERM drain is checked under granian too (both through the launcher).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.ops_smoke


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tmp_path, port: int, server: str = "gunicorn") -> subprocess.Popen:
    env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "1",
           "GUNICORN_ACCESS_LOG": "0", "AUTHSERVICE_VAR_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "AUTHSERVICE_SERVER": server}
    process = subprocess.Popen([sys.executable, "-m", "authservice.serve", "tests.ops.pid_app"], cwd=ROOT, env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            if len(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()) == 2:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{server} did not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def keep_alive_clients(url: str, clients: int, seconds: float) -> tuple[list[Counter], list[str]]:
    """``clients`` threads, each on one kept-alive connection, opened all at once."""
    served: list[Counter] = [Counter() for _ in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients)

    def run(index: int) -> None:
        with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=1)) as client:
            barrier.wait()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    served[index][client.get(url).text] += 1
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return served, errors


def test_long_lived_connections_spread_over_both_workers(tmp_path):
    port = free_port()
    process = start(tmp_path, port)
    try:
        served, errors = keep_alive_clients(f"http://127.0.0.1:{port}/", clients=8, seconds=2)
    finally:
        stop(process)
    assert errors == []
    # Each connection stays on the worker that accepted it; count connections per worker.
    owners = Counter(counts.most_common(1)[0][0] for counts in served)
    assert len(owners) == 2 and min(owners.values()) >= 2, owners


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_sigterm_answers_what_was_sent_and_resets_nothing(tmp_path, server):
    port = free_port()
    process = start(tmp_path, port, server)
    outcomes: list[str] = []
    stop_event = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop_event.is_set():
                try:
                    client.get(f"http://127.0.0.1:{port}/")
                    outcomes.append("ok")
                except httpx.ConnectError:
                    outcomes.append("refused")  # the listener is closed: expected once it stops
                    time.sleep(0.01)
                except httpx.HTTPError as exc:
                    outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run) for _ in range(6)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1)
        before = outcomes.count("ok")
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        time.sleep(0.3)
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(timeout=15)
        stop(process)
    assert before > 0
    assert set(outcomes) <= {"ok", "refused"}, Counter(outcomes)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _busy_worker(monkeypatch, clock):
    from types import SimpleNamespace

    from gunicorn.workers.gthread import ThreadWorker

    from authservice import gunicorn_worker

    accepted, switches = [], []
    monkeypatch.setattr(gunicorn_worker.time, "monotonic", clock)
    monkeypatch.setattr(ThreadWorker, "accept", lambda self, listener: accepted.append(listener))
    worker = gunicorn_worker.BalancedThreadWorker.__new__(gunicorn_worker.BalancedThreadWorker)
    worker.cfg, worker.alive, worker.busy, worker.nr_conns = SimpleNamespace(threads=1), True, 1, 3
    worker.worker_connections = 1000
    worker.set_accept_enabled = switches.append
    return worker, accepted, switches


def test_a_busy_worker_leaves_a_new_connection_to_the_others_for_a_bounded_time(monkeypatch):
    clock = _Clock()
    worker, accepted, switches = _busy_worker(monkeypatch, clock)
    worker.accept("listener")
    assert accepted == [] and switches == [False]  # first, another worker may take it …
    assert worker.worker_connections == worker.nr_conns  # … and this one stops listening meanwhile
    clock.now += worker.ACCEPT_DELAY / 2
    assert worker.worker_connections == worker.nr_conns
    clock.now += worker.ACCEPT_DELAY
    assert worker.worker_connections == 1000  # the pause is over: listening again …
    worker.accept("listener")
    assert accepted == ["listener"]  # … and what still waits is taken: never starved


def test_a_worker_with_a_free_thread_accepts_at_once(monkeypatch):
    worker, accepted, switches = _busy_worker(monkeypatch, _Clock())
    worker.busy = 0
    worker.accept("listener")
    assert accepted == ["listener"] and switches == []
