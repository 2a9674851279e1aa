"""gunicorn settings for `make run` (override with GUNICORN_* environment variables)."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
# Never log request bodies or Authorization headers: the default format logs neither.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
