"""What an operator sees: a request id on every log line and response, JSON logs
(``LOG_FORMAT=json``), and Prometheus metrics at ``/metrics``.

Never a secret or token in a log line: the formatter writes only the message and
the request context (request id, client id, participant id); exceptions are
reduced to their type and message, never a traceback with local values.
"""

import json
import logging
import os
import re
import time
import uuid
from contextvars import ContextVar
from ipaddress import ip_network
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_META = "HTTP_X_REQUEST_ID"
# The request's log context, left in the WSGI environ for the access line (authservice.serve).
CONTEXT_ENVIRON_KEY = "authservice.log_context"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
request_context: ContextVar[dict | None] = ContextVar("request_context", default=None)

# --- Metrics (per process; summed across the server's workers via PROMETHEUS_MULTIPROC_DIR) -----

def _multiprocess_directory_ready() -> None:
    """prometheus_client writes each process's samples under PROMETHEUS_MULTIPROC_DIR and,
    when the directory is missing, fails at the first metric with an error naming a
    file (seen: every manage.py command of a migration job given the serving
    environment). Made here, or refused with the variable's name."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={directory}: cannot create it: {exc.strerror}") \
                from None


_multiprocess_directory_ready()

REQUEST_SECONDS = Histogram("authservice_request_duration_seconds", "Request latency by endpoint",
                            ["endpoint", "method", "status"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
TOKENS_ISSUED = Counter("authservice_tokens_issued_total", "Access tokens issued")
TOKENS_REFUSED = Counter("authservice_tokens_refused_total", "Token requests refused, by RFC 6749 error",
                         ["reason"])
CLIENT_AUTH_FAILURES = Counter("authservice_client_auth_failures_total",
                               "Failed client authentications (token, introspection, revocation)", ["endpoint"])
DEPENDENCY_ERRORS = Counter("authservice_dependency_errors_total", "Requests answered 503: a dependency was down",
                            ["endpoint"])
REGISTRY_CACHE = Counter("authservice_registry_cache_total", "Registry answers served from the rendered cache",
                         ["result"])
# The per-worker caches (authservice.bounded_cache): "registry_responses", "clients".
CACHE_EVENTS = Counter("authservice_cache_events_total", "Per-worker cache lookups and removals, by cache and "
                       "event (hit, miss, eviction: pushed out by the byte bound, expiry: swept when its time came)",
                       ["cache", "event"])
CACHE_ENTRIES = Gauge("authservice_cache_entries", "Entries held by a per-worker cache (summed over workers)",
                      ["cache"], multiprocess_mode="livesum")
CACHE_BYTES = Gauge("authservice_cache_bytes", "Approximate bytes held by a per-worker cache (summed over workers)",
                    ["cache"], multiprocess_mode="livesum")
CHANGE_FEED_LIVE = Gauge("authservice_change_feed_live", "1 when every worker's change feed from PostgreSQL is live "
                         "(token requests trust the worker's cache), else 0 (they query)",
                         multiprocess_mode="livemin")
CHANGE_FEED_EVENTS = Counter("authservice_change_feed_events_total",
                             "Change feed events: connect, disconnect, notice", ["event"])


def _endpoint(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    return "other" if not request.path.startswith("/admin/") else "admin"


def current(name: str) -> str:
    context = request_context.get() or {}
    return context.get(name) or "-"


def annotate(**values: str | None) -> None:
    """Add what is known about the caller (client id, participant id) to the request's log context."""
    context = request_context.get()
    if context is not None:
        context.update({name: value for name, value in values.items() if value})


class RequestIdMiddleware:
    """Take X-Request-ID (when well-formed) or make one; put it in the log context and
    the response; time the request for the latency histogram."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.META.get(REQUEST_ID_META, "")  # not request.headers: it copies every header
        request_id = offered if _VALID_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        request.request_id = request_id
        context = {"request_id": request_id}
        request.META[CONTEXT_ENVIRON_KEY] = context
        token = request_context.set(context)
        started = time.perf_counter()
        try:
            from authservice.lockouts import client_ip

            context["client_addr"] = str(client_ip(request) or "-")
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            REQUEST_SECONDS.labels(_endpoint(request), request.method, str(response.status_code)).observe(
                time.perf_counter() - started)
            if response.status_code == 503:
                DEPENDENCY_ERRORS.labels(_endpoint(request)).inc()
            return response
        finally:
            request_context.reset(token)


class RequestContextFilter(logging.Filter):
    """Every record gets request_id, client_id and participant_id ("-" outside a request),
    unless it was given them (the access line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "access", None) is not None:
            return True
        # Django logs a refused request (django.request) after the middleware is done:
        # the record then carries the request itself.
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or current("request_id")
        record.client_id = current("client_id")
        record.participant_id = current("participant_id")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "client_id": getattr(record, "client_id", "-"),
            "participant_id": getattr(record, "participant_id", "-"),
        }
        access = getattr(record, "access", None)
        if access is not None:
            entry.update(access)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["exception"] = f"{type(exc).__name__}: {exc}"[:500]
        return json.dumps(entry, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


# --- The access line ------------------------------------------------------------------------------

def log_access(logger: logging.Logger, environ: dict, status: str, headers, sent: int | None,
               seconds: float) -> None:
    """One line for one request, written by the server's WSGI wrapper (authservice.serve)
    once the application has answered: the request id the response carries, the method,
    the path without its query string (a client that puts a secret in the URL does not
    get it logged), the status, the body's bytes when known, the latency in ms, the
    client id when it authenticated, the peer's address (REMOTE_ADDR) and the client's
    (behind a trusted proxy, from X-Forwarded-For). Never a header or a body."""
    context = environ.get(CONTEXT_ENVIRON_KEY) or {}
    request_id = next((value for name, value in headers if name.lower() == "x-request-id"), None) \
        or context.get("request_id") or "-"
    code = status.split(" ", 1)[0]
    milliseconds = round(seconds * 1000, 2)
    remote = environ.get("REMOTE_ADDR", "-")
    method, path = environ.get("REQUEST_METHOD", "-"), environ.get("PATH_INFO", "-")
    protocol = environ.get("SERVER_PROTOCOL", "-")
    access = {"method": method, "path": path, "status": int(code) if code.isdigit() else code, "bytes": sent,
              "latency_ms": milliseconds, "remote_addr": remote, "client_addr": context.get("client_addr") or remote}
    logger.info('%s "%s %s %s" %s %s %.2fms', _quoted(remote), _quoted(method), _quoted(path), _quoted(protocol),
                _quoted(code), sent, milliseconds,
                extra={"access": access, "request_id": request_id, "client_id": context.get("client_id") or "-",
                       "participant_id": context.get("participant_id") or "-"})


# Control characters (a percent-decoded %0A in a path) written as \xNN: one request, one line.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def _quoted(value: str) -> str:
    return value.replace('"', '\\"').translate(_CONTROL)


# --- /metrics ------------------------------------------------------------------------------------

def _allowed(request: HttpRequest) -> bool:
    """Whether the client (its real address: behind a trusted proxy, the one the proxy
    forwards, as the failed-authentication limits see it) may read the metrics."""
    from authservice.lockouts import client_ip

    peer = client_ip(request)
    if peer is None:
        return False
    for entry in settings.AUTHSERVICE_METRICS_ALLOWED_IPS:
        try:
            if peer in ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of worker processes that are gone. A worker that exits marks
    its own dead (authservice.serve); one killed outright (SIGKILL, OOM) cannot, and its
    last values would count forever."""
    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid), directory)
        except PermissionError:
            continue  # another user's live process


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for the addresses in AUTHSERVICE_METRICS_ALLOWED_IPS only."""
    if not _allowed(request):
        return JsonResponse({"error": "forbidden", "error_description": "Metrics are not served to this address."},
                            status=403)
    registry = DEFAULT_REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        _forget_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
