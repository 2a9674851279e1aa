"""gunicorn settings for `make run` (override with GUNICORN_* environment variables)."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Measured on 2 cores (bench/): one process per core with gthread keeps connections
# alive (clients reuse them for every token request); more threads only add GIL
# contention on this CPU-bound path.
workers = int(os.environ.get("GUNICORN_WORKERS", str(os.cpu_count() or 2)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# gthread, with connections spread over every worker and a clean drain on SIGTERM
# (authservice/gunicorn_worker.py; measured by bench/rounds.py and scripts/faults.py).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "authservice.gunicorn_worker.BalancedThreadWorker")
timeout = 30
graceful_timeout = 20
keepalive = 30
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
# The path without its query string (%(U)s, not the request line %(r)s): a client that
# puts client_secret or a token in the URL must not get it written to the log. No
# remote user (it comes from the Authorization header) and no referrer either; never
# bodies or headers. AccessLogger writes this line without gunicorn's per-request dict
# of every header and environ variable.
access_log_format = '%(h)s - - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)ss "%(a)s"'  # = AccessLogger's
logger_class = "authservice.gunicorn_worker.AccessLogger"
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


def worker_exit(server, worker):
    # The worker's last few seconds of token activity counters (registry.activity).
    from registry.activity import flush

    flush()
