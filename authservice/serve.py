"""Serve the service with granian (``python -m authservice.serve``).

granian (a Rust HTTP layer running the WSGI application) is the only server. It is run
through its documented embedding API (``granian.Granian``) and options only, configured
from the environment:

- ``GUNICORN_BIND`` (``host:port``, ``[v6]:port`` or ``unix:/path``), ``GUNICORN_WORKERS``
  (one per core), ``GUNICORN_THREADS`` (Python threads per worker), ``GUNICORN_ACCESS_LOG``
  (the names predate granian and are kept);
- HTTP/1 only, no WebSockets; 10 s to send a request's headers (``header_read_timeout``),
  keep-alive on; ``BACKPRESSURE`` connections per worker (an idle connection costs a few
  KB in Rust, no Python thread) and ``BACKLOG`` in the kernel's queue (README,
  "Connection limits");
- a worker that dies is replaced (``respawn_failed_workers``); on SIGTERM the workers
  finish what they hold and are killed after ``KILL_TIMEOUT_SECONDS``; draining is the
  proxy's and the orchestrator's job (README, "Server");
- granian's own lines through ``LOG_FORMAT``'s formatter (``log_dictconfig``; JSON with
  ``LOG_FORMAT=json``); granian's access log off: the access line is written by
  ``serving`` below, one per request, with its request id;
- Prometheus multiprocess metrics: ``PROMETHEUS_MULTIPROC_DIR`` (default
  ``$AUTHSERVICE_VAR_DIR/metrics``) set, locked against another running server and
  emptied before granian starts.

In each worker (``worker_application``, granian's factory) the application is wrapped by
``serving``: the process environment granian copies into every request's environ is taken
out again, gunicorn's request-line and header-field limits apply, and at the worker's exit
the token activity counters are flushed and its live gauges marked dead.

An optional argument names another WSGI application (``module`` or ``module:attr``), for
tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("granian",)
DEFAULT_SERVER = "granian"
DEFAULT_APP = "authservice.wsgi:application"
# A client has this long to send a request's headers (on a new or kept-alive connection).
HEADER_READ_TIMEOUT_SECONDS = 10
# Connections one worker holds at once (granian's backpressure): an idle one is a Rust task
# and its buffer; requests still reach Python one per thread (GUNICORN_THREADS).
BACKPRESSURE = 8192
BACKLOG = 4096
KILL_TIMEOUT_SECONDS = 20
ACCESS_LOGGER = "authservice.access"
_APP_VARIABLE = "AUTHSERVICE_SERVE_APP"

logger = logging.getLogger("authservice.serve")


class Refused(SystemExit):
    """A setting the launcher cannot start with: logged, then the launcher exits (a script that
    asks chosen_server exits with it)."""


def chosen_server(environ=os.environ) -> str:
    server = environ.get("AUTHSERVICE_SERVER", DEFAULT_SERVER).strip().lower() or DEFAULT_SERVER
    if server not in SERVERS:
        raise Refused(f"AUTHSERVICE_SERVER={server!r}: granian is the only server (python -m authservice.serve); "
                      "unset AUTHSERVICE_SERVER")
    return server


def metrics_dir(environ=os.environ) -> str:
    return environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(environ.get("AUTHSERVICE_VAR_DIR", "var"),
                                                                   "metrics")


def parse_bind(bind: str) -> dict:
    """GUNICORN_BIND, as granian's address/port or uds arguments."""
    if bind.startswith("unix:"):
        return {"uds": Path(bind[len("unix:"):])}
    host, _, port = bind.rpartition(":")
    if not port.isdigit():
        raise Refused(f"GUNICORN_BIND={bind!r}: expected host:port or unix:/path")
    return {"address": host.strip("[]") or "0.0.0.0", "port": int(port)}  # noqa: S104 - ":8000" means every address


def _count(name: str, value: str | None, default: int) -> int:
    value = (value or "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise Refused(f"{name}={value!r}: a whole number, 1 or more")
    return int(value)


def log_config(environ=os.environ) -> dict:
    """granian's log_dictconfig: its lines (``_granian``) in LOG_FORMAT's format, on stderr
    as Django's are. (granian merges this over its own configuration key by key.)"""
    if environ.get("LOG_FORMAT", "text").strip().lower() == "json":
        formatter = {"()": "authservice.observability.JsonFormatter"}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s [-] %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"server": formatter},
        "handlers": {"server": {"class": "logging.StreamHandler", "formatter": "server",
                                "stream": "ext://sys.stderr"}},
        "loggers": {
            "_granian": {"handlers": ["server"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["server"], "level": "INFO", "propagate": False},
            "authservice.serve": {"handlers": ["server"], "level": "INFO", "propagate": False},
            # Reconfigured by Django's LOGGING in a worker serving the service; as is, for another application.
            ACCESS_LOGGER: {"handlers": ["server"], "level": "INFO", "propagate": False},
        },
        # Anything else the main process logs (a captured warning), until Django configures a worker's.
        "root": {"handlers": ["server"], "level": "WARNING"},
    }


def granian_server(environ=os.environ):
    """granian's server for the settings in ``environ`` (not started)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    return Granian(
        "authservice.serve:worker_application",
        factory=True,
        interface=Interfaces.WSGI,
        **parse_bind(environ.get("GUNICORN_BIND", "127.0.0.1:8000")),
        workers=_count("GUNICORN_WORKERS", environ.get("GUNICORN_WORKERS"), os.cpu_count() or 2),
        blocking_threads=_count("GUNICORN_THREADS", environ.get("GUNICORN_THREADS"), 1),
        http=HTTPModes.http1,
        websockets=False,
        backlog=BACKLOG,
        backpressure=BACKPRESSURE,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_SECONDS * 1000, keep_alive=True),
        log_dictconfig=log_config(environ),
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=KILL_TIMEOUT_SECONDS,
        working_dir=ROOT,
    )


def refuse_a_port_in_use(bind: dict) -> None:
    """Refuse an address another process listens on: granian's workers bind with
    SO_REUSEPORT, so a second server started on a port in use would share it with the
    first, each taking a share of the connections."""
    if "port" not in bind:
        return  # a Unix socket: granian refuses a path in use itself
    family = socket.AF_INET6 if ":" in bind["address"] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((bind["address"], bind["port"]))
        except OSError as exc:
            raise Refused(f"GUNICORN_BIND: cannot listen on {bind['address']}:{bind['port']}: {exc.strerror} "
                          "(is another instance running?)") from None


def claim_metrics_dir(directory: str):
    """Make ``directory`` this server's: lock it (an flock on its ``.lock`` file, held by
    the main process and the workers it forks, released by the kernel once they have all
    ended) and empty it of everything else, as prometheus_client asks between runs; or
    refuse, when another running server holds it (emptied, that server would lose its
    samples, and /metrics would mix the two)."""
    import fcntl

    os.makedirs(directory, exist_ok=True)
    lock = open(os.path.join(directory, ".lock"), "a")  # noqa: SIM115 - held while serving
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise Refused(f"PROMETHEUS_MULTIPROC_DIR={directory}: in use by another running server; give each "
                      "instance its own (or its own AUTHSERVICE_VAR_DIR)") from None
    for entry in os.scandir(directory):
        if entry.name == ".lock":
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    return lock


def raise_open_files_limit() -> None:
    """Every connection is a descriptor: the soft limit (often 1,024) raised to the hard
    one, so that BACKPRESSURE connections per worker can be held."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- In each worker ----------------------------------------------------------------------------

def worker_application():
    """granian's factory, called once in each worker process: the application ``serving``."""
    import importlib

    module_name, _, attribute = os.environ.get(_APP_VARIABLE, DEFAULT_APP).partition(":")
    application = getattr(importlib.import_module(module_name), attribute or "application")
    threading.Thread(target=_at_worker_exit, name="worker-exit", daemon=False).start()
    access_log = logging.getLogger(ACCESS_LOGGER) if os.environ.get("GUNICORN_ACCESS_LOG", "1") == "1" else None
    return serving(application, dict(os.environ), access_log)


def _at_worker_exit() -> None:
    """Once the worker's main thread has ended (granian's worker returns from serving and
    the interpreter joins its non-daemon threads, this one): flush the token activity
    counters (registry.activity) and mark this process's live gauges dead."""
    threading.main_thread().join()
    try:
        from django.apps import apps

        if apps.ready:
            from registry.activity import flush

            flush()
    finally:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


# Keys granian sets on every request (its WSGI constants and the request's own): these
# are the request's, whatever the process environment holds under the same name.
REQUEST_KEYS = frozenset({
    "GATEWAY_INTERFACE", "SCRIPT_NAME", "SERVER_SOFTWARE", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING",
    "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "RAW_URI", "HTTP_HOST",
})

# gunicorn's limits (limit_request_line, limit_request_field_size), which granian does
# not have: it passes header values of ~100 KB and request lines of 10 KB to Django.
MAX_REQUEST_LINE = 4094
MAX_HEADER_FIELD = 8190


def serving(application, launch_environ: dict[str, str], access_log: logging.Logger | None = None):
    """``application`` as it is served:

    - no process environment in a request: granian starts every request's environ from
      a copy of the worker's ``os.environ`` (granian/wsgi.py), so any variable the
      service runs with (PGPASSWORD, a key) would be in ``request.META``. Every name of
      ``launch_environ`` whose value in the request is the launch value is removed, but
      for the keys granian sets itself on every request (REQUEST_KEYS). (A request
      header whose value happens to equal a variable of the same HTTP_ name is dropped
      with it.)
    - a request line longer than ``MAX_REQUEST_LINE`` bytes is answered 414, a header
      field (name, ": ", value) longer than ``MAX_HEADER_FIELD`` bytes 431;
    - a request without a Host header (HTTP/1.0: HAProxy's plain ``option httpchk``)
      reaches Django without HTTP_HOST (granian sets it to ""), which then falls back to
      SERVER_NAME instead of refusing it;
    - a response whose body is in memory (Django's, unless streaming) is handed to
      granian as one list, which granian writes at once;
    - ``access_log`` (when given) gets one line per request (observability.log_access).
    """
    inherited = tuple((name, value) for name, value in launch_environ.items() if name not in REQUEST_KEYS)

    def wsgi(environ, start_response):
        started = time.perf_counter()
        for name, value in inherited:
            if environ.get(name) == value:
                del environ[name]
        answer = {}

        def respond(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return start_response(status, headers, exc_info)

        sent = None
        try:
            body = _checked(environ, respond)
            if body is None:
                body = application(environ, respond)
                if getattr(body, "streaming", True) is False:  # a Django response, its body in memory
                    content = body.content
                    try:
                        body.close()  # request_finished: granian would have called it after sending
                    except Exception:
                        logging.getLogger(__name__).exception("closing the response failed (it is sent)")
                    body = [content]
            if isinstance(body, list):
                sent = sum(map(len, body))
        except BaseException:
            answer["status"] = "500"
            raise
        finally:
            if access_log is not None:
                from authservice.observability import log_access

                log_access(access_log, environ, answer.get("status", "500"), answer.get("headers", ()), sent,
                           time.perf_counter() - started)
        return body

    return wsgi


def _refusal(start_response, status: str, description: str):
    body = ('{"error": "invalid_request", "error_description": "%s"}' % description).encode()  # noqa: UP031
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Connection", "close")])
    return [body]


def _checked(environ, start_response):
    """None, or the refusal of a request over gunicorn's limits (see ``serving``)."""
    query = environ.get("QUERY_STRING", "")
    line = (len(environ.get("REQUEST_METHOD", "")) + len(environ.get("PATH_INFO", ""))
            + (len(query) + 1 if query else 0) + len(environ.get("SERVER_PROTOCOL", "")) + 2)
    if line > MAX_REQUEST_LINE:
        return _refusal(start_response, "414 Request-URI Too Long",
                        f"The request line is longer than {MAX_REQUEST_LINE} bytes.")
    for name, value in environ.items():
        if isinstance(value, str) and len(name) + len(value) > MAX_HEADER_FIELD - 2 \
                and (name.startswith("HTTP_") or name in ("CONTENT_TYPE", "CONTENT_LENGTH")):
            return _refusal(start_response, "431 Request Header Fields Too Large",
                            f"A header field is longer than {MAX_HEADER_FIELD} bytes.")
    if environ.get("HTTP_HOST") == "":
        del environ["HTTP_HOST"]
    return None


# --- The main process --------------------------------------------------------------------------

_SETTINGS_CHECK = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authservice.settings")
from django.core.exceptions import ImproperlyConfigured
try:
    import django
    django.setup()
except ImproperlyConfigured as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def settings_refused() -> None:
    """Load the service's settings and apps once, in a child process (this one must not
    import Django or prometheus_client before the workers fork), so that what they refuse
    at start-up (production without its secrets, a passphrase key-encryption key) stops
    the launcher with one line, instead of every worker in turn."""
    import subprocess

    result = subprocess.run([sys.executable, "-c", _SETTINGS_CHECK], cwd=ROOT, capture_output=True, text=True,  # noqa: S603
                            check=False)
    if result.returncode == 2:
        raise Refused(result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        raise Refused(f"the settings cannot be loaded: {(result.stderr.strip().splitlines() or ['?'])[-1]}")


def main(argv: list[str] | None = None) -> None:
    import logging.config

    args = sys.argv[1:] if argv is None else argv
    app = args[0] if args else DEFAULT_APP
    if ":" not in app:
        app += ":application"
    logging.config.dictConfig(log_config())
    logging.captureWarnings(True)  # a warning is a log line too (JSON under LOG_FORMAT=json), as Django does
    try:
        chosen_server()
        if os.environ.get("AUTHSERVICE_DRAIN_SECONDS"):
            logger.warning("AUTHSERVICE_DRAIN_SECONDS is ignored: draining is the proxy's and the orchestrator's "
                           "job (README, Server)")
        if os.environ.get("GUNICORN_MAX_REQUESTS", "0") not in ("", "0"):
            logger.warning("GUNICORN_MAX_REQUESTS is ignored (granian replaces workers by age, not by requests)")
        refuse_a_port_in_use(parse_bind(os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")))
        if app == DEFAULT_APP:
            settings_refused()
        # Relative paths (a unix: socket, the metrics directory) mean what they mean to the workers: from ROOT.
        os.chdir(ROOT)
        sys.path.insert(0, str(ROOT))
        server = granian_server()
        directory = os.path.realpath(metrics_dir())
        lock = claim_metrics_dir(directory)
    except Refused as exc:
        logger.error("%s", exc)
        raise SystemExit(2) from None
    raise_open_files_limit()
    with lock:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        os.environ[_APP_VARIABLE] = app
        server.serve()


if __name__ == "__main__":
    main()
