"""gunicorn settings for `make run` (override with GUNICORN_* environment variables)."""

import errno
import os

from gunicorn.workers.gthread import TConn, ThreadWorker

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Measured on 2 cores (bench/): one process per core with gthread keeps connections
# alive (clients reuse them for every token request); more threads only add GIL
# contention on this CPU-bound path.
workers = int(os.environ.get("GUNICORN_WORKERS", str(os.cpu_count() or 2)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))


class BalancedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with two changes measured in bench/rounds.py and scripts/faults.py:

    - A worker accepts a new connection only while one of its threads is free. Stock
      gthread accepts whatever arrives while its threads are busy, so under keep-alive
      load one worker often took every connection and the others none (wrk -c8: 8 and
      0, half the throughput). Now a connection waits in the kernel's queue for a worker
      that can serve it, and long-lived connections spread over every worker.
    - On SIGTERM, the connections already queued on the listening socket are accepted
      and answered (with "Connection: close") before the worker lets go of the socket;
      stock gthread left them queued, and the kernel reset them when the last worker
      closed the socket.
    """

    busy = 0

    @property
    def worker_connections(self):
        # The run loop accepts while nr_conns < worker_connections: lower the bound to the
        # current count while no thread is free.
        return self._connection_cap if self.busy < self.cfg.threads else min(self._connection_cap, self.nr_conns)

    @worker_connections.setter
    def worker_connections(self, value):
        self._connection_cap = value

    def enqueue_req(self, conn):
        self.busy += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._drain_listeners()

    def _drain_listeners(self):
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client_sock, client_addr = listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                        break
                    raise
                self.nr_conns += 1
                client_sock.setblocking(True)
                self.enqueue_req(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))
            listener.close()


worker_class = BalancedThreadWorker
timeout = 30
graceful_timeout = 20
keepalive = 30
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
# The path without its query string (%(U)s, not the request line %(r)s): a client that
# puts client_secret or a token in the URL must not get it written to the log. No
# remote user (it comes from the Authorization header) and no referrer either; never
# bodies or headers.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
# One control socket per instance (gunicorn's default is one path per user, shared by
# every gunicorn on the host).
control_socket = os.path.join(os.environ.get("AUTHSERVICE_VAR_DIR", "var"), "gunicorn.ctl")


# Prometheus metrics summed over every worker: each worker writes its samples to files
# in this directory (cleared at start), and /metrics reads them all.
_metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                     os.path.join(os.environ.get("AUTHSERVICE_VAR_DIR", "var"), "metrics"))


def on_starting(server):
    import shutil

    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
