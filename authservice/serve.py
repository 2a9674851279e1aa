"""Serve the service with gunicorn or granian, from the same settings (``python -m authservice.serve``).

``AUTHSERVICE_SERVER`` chooses: ``gunicorn`` (the default) runs exactly what it always
ran, ``gunicorn authservice.wsgi --config gunicorn.conf.py``, in this process (exec).
``granian`` runs granian's WSGI server in this process, configured from the same
``GUNICORN_*`` variables and carrying over what gunicorn.conf.py does:

- ``GUNICORN_BIND`` (``host:port``, ``[v6]:port`` or ``unix:/path``), ``GUNICORN_WORKERS``
  (one per core), ``GUNICORN_THREADS`` (Python threads per worker), ``GUNICORN_ACCESS_LOG``;
- Prometheus multiprocess metrics: ``PROMETHEUS_MULTIPROC_DIR`` (default
  ``$AUTHSERVICE_VAR_DIR/metrics``) set and emptied before the workers start; a worker
  that exits marks its live gauges dead (one killed outright is swept at the next
  scrape: authservice.observability);
- the token activity counters flushed when a worker exits (registry.activity), as
  gunicorn's ``worker_exit`` hook does;
- an access line without the query string (a secret put in a URL is never logged);
- keep-alive (30 s to send the next request's headers, as gunicorn's ``keepalive``),
  HTTP/1 only (what gunicorn speaks: no cleartext HTTP/2), no control socket;
- SIGTERM: workers stop accepting, finish what they hold, and are killed after 20 s
  (gunicorn's ``graceful_timeout``); a worker that dies is replaced.

An optional argument names another WSGI application (``module`` or ``module:attr``),
for tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "granian")
DEFAULT_SERVER = "gunicorn"
DEFAULT_APP = "authservice.wsgi:application"
# gunicorn.conf.py's timings, for granian.
KEEPALIVE_SECONDS = 30
GRACEFUL_TIMEOUT_SECONDS = 20
BACKLOG = 2048  # gunicorn's default
# gunicorn's access line (authservice.gunicorn_worker.ACCESS_LOG_FORMAT) in granian's atoms:
# the path without its query string; granian has no byte count ("-") and its own time format.
GRANIAN_ACCESS_LOG_FORMAT = ('%(addr)s - - [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d - '
                             '%(dt_ms).3fms "%(header{user-agent})s"')
# Settings read once at start-up that must not reach a request: granian copies the whole
# process environment into every WSGI environ (request.META); gunicorn does not.
SECRET_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "AUTHSERVICE_KEY_ENCRYPTION_KEY",
                    "AUTHSERVICE_AUDIT_KEY")
_APP_VARIABLE = "AUTHSERVICE_SERVE_APP"


def chosen_server(environ=os.environ) -> str:
    server = environ.get("AUTHSERVICE_SERVER", DEFAULT_SERVER).strip().lower() or DEFAULT_SERVER
    if server not in SERVERS:
        raise SystemExit(f"AUTHSERVICE_SERVER={server!r}: choose one of {', '.join(SERVERS)}")
    return server


def metrics_dir(environ=os.environ) -> str:
    return environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(environ.get("AUTHSERVICE_VAR_DIR", "var"),
                                                                   "metrics")


def parse_bind(bind: str) -> dict:
    """gunicorn's bind syntax, as granian's address/port or uds arguments."""
    if bind.startswith("unix:"):
        return {"uds": Path(bind[len("unix:"):])}
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"GUNICORN_BIND={bind!r}: expected host:port or unix:/path")
    return {"address": host.strip("[]") or "0.0.0.0", "port": int(port)}  # noqa: S104 - gunicorn's meaning of ":8000"


def serve_gunicorn(app: str) -> None:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    os.chdir(ROOT)
    os.execv(gunicorn, [gunicorn, app.removesuffix(":application"), "--config",  # noqa: S606 - becomes gunicorn
                        str(ROOT / "gunicorn.conf.py")])


def granian_server(app: str, environ=os.environ):
    """granian's server object for the settings in ``environ`` (not started)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    if environ.get("GUNICORN_MAX_REQUESTS", "0") not in ("", "0"):
        print("GUNICORN_MAX_REQUESTS has no granian equivalent: ignored", file=sys.stderr)
    return Server(
        "authservice.serve:worker_application",
        factory=True,
        interface=Interfaces.WSGI,
        **parse_bind(environ.get("GUNICORN_BIND", "127.0.0.1:8000")),
        workers=int(environ.get("GUNICORN_WORKERS", str(os.cpu_count() or 2))),
        blocking_threads=int(environ.get("GUNICORN_THREADS", "1")),
        http=HTTPModes.http1,
        websockets=False,
        backlog=BACKLOG,
        http1_settings=HTTP1Settings(header_read_timeout=KEEPALIVE_SECONDS * 1000, keep_alive=True),
        log_access=environ.get("GUNICORN_ACCESS_LOG", "1") == "1",
        log_access_format=GRANIAN_ACCESS_LOG_FORMAT,
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT_SECONDS,
        working_dir=ROOT,
    )


def serve_granian(app: str) -> None:
    directory = metrics_dir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)
    os.environ[_APP_VARIABLE] = app
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    granian_server(app).serve()


def worker_application():
    """granian's factory, called once in each worker process: the WSGI application, with
    the worker's exit hooked and secrets dropped from the environment it copies per request."""
    import importlib
    from multiprocessing import util

    module_name, _, attribute = os.environ.get(_APP_VARIABLE, DEFAULT_APP).partition(":")
    application = getattr(importlib.import_module(module_name), attribute or "application")
    # granian's worker ends through multiprocessing, which runs its finalizers (not atexit).
    util.Finalize(None, worker_exit, exitpriority=10)
    for name in SECRET_VARIABLES:
        os.environ.pop(name, None)
    return _as_gunicorn_gives_it(application)


# gunicorn's limits (limit_request_line, limit_request_field_size), which granian does
# not have: it passes header values of ~100 KB and request lines of 10 KB to Django.
# (More than 100 header fields, gunicorn's third limit, granian refuses itself: 431.)
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELD = 8190


def _refusal(start_response, status: str, description: str):
    body = ('{"error": "invalid_request", "error_description": "%s"}' % description).encode()  # noqa: UP031
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def _as_gunicorn_gives_it(application):
    """The request as gunicorn would have passed it on, or refused:

    - a request line longer than ``MAX_REQUEST_LINE`` bytes is answered 414, a header
      field (name, ": ", value) longer than ``MAX_HEADER_FIELD`` bytes 431, before
      Django sees either;
    - granian sets HTTP_HOST to "" when a request has no Host header (HTTP/1.0: HAProxy's
      plain ``option httpchk``); Django then refuses it (400, DisallowedHost) instead of
      falling back to SERVER_NAME as it does under gunicorn, which leaves HTTP_HOST unset.
    """

    def wsgi(environ, start_response):
        query = environ.get("QUERY_STRING", "")
        line = (len(environ.get("REQUEST_METHOD", "")) + len(environ.get("PATH_INFO", ""))
                + (len(query) + 1 if query else 0) + len(environ.get("SERVER_PROTOCOL", "")) + 2)
        if line > MAX_REQUEST_LINE:
            return _refusal(start_response, "414 Request-URI Too Long",
                            f"The request line is longer than {MAX_REQUEST_LINE} bytes.")
        for name, value in environ.items():
            if (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")) and isinstance(value, str) \
                    and len(name) + len(value) > MAX_HEADER_FIELD - 2:
                return _refusal(start_response, "431 Request Header Fields Too Large",
                                f"A header field is longer than {MAX_HEADER_FIELD} bytes.")
        if environ.get("HTTP_HOST") == "":
            del environ["HTTP_HOST"]
        return application(environ, start_response)

    return wsgi


def worker_exit() -> None:
    """What gunicorn.conf.py's worker_exit and child_exit hooks do, from inside the worker."""
    from django.apps import apps

    if apps.ready:
        from registry.activity import flush

        flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    app = args[0] if args else DEFAULT_APP
    if ":" not in app:
        app += ":application"
    if chosen_server() == "gunicorn":
        serve_gunicorn(app)
    else:
        serve_granian(app)


if __name__ == "__main__":
    main()
