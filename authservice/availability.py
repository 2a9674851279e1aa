"""Dependencies fail fast: an unavailable database or Redis answers 503 with
Retry-After (RFC 6749 ``temporarily_unavailable`` at the OAuth endpoints) within
about a second, never a hang or a 500 with a traceback.

The short waits themselves are settings (connect, pool and statement timeouts for
PostgreSQL, socket timeouts for Redis); this module turns the errors they raise
into a clean answer, wherever they surface: in a view (``process_exception``), on
the OAuth fast path, or in a middleware (the 500 handler, ``authservice.views``).
"""

import logging
import socket
import threading
import time

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
OAUTH_PATHS = ("/oauth2/",)


def _unavailable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        from psycopg_pool import PoolTimeout

        types.append(PoolTimeout)
    except ImportError:  # pragma: no cover - psycopg is installed with the project
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        types += [RedisConnectionError, RedisTimeoutError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


UNAVAILABLE = _unavailable_types()
_last_logged = {"at": float("-inf")}


class CircuitOpen(Exception):
    """The database pool timed out recently and its server still refuses connections."""


class _Circuit:
    """Once the database pool has timed out (PostgreSQL down), requests stop waiting on
    it: each answers 503 at once while a plain TCP connection to the database server is
    refused (checked at most every ``CHECK_INTERVAL`` seconds, for ``CONNECT_TIMEOUT`` at
    most). Without this, every request held its thread for the pool's whole wait, and
    /healthz, which needs no database, waited seconds for a free thread (`make faults`).
    When the server accepts connections again, the circuit closes and requests go to
    the pool, which reconnects. Per process."""

    CHECK_INTERVAL = 0.1
    CONNECT_TIMEOUT = 0.2

    def __init__(self) -> None:
        self.open = False
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._accepts = True

    @staticmethod
    def address() -> tuple[str, int] | None:
        from django.conf import settings

        database = settings.DATABASES["default"]
        if "postgresql" not in database["ENGINE"]:
            return None
        return database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)

    def close(self) -> None:
        """The server accepts connections again: close the circuit, and start a fresh pool
        (the old one backed off its reconnection attempts through the outage, up to
        seconds apart; a new one connects at once). Only the thread that closes it."""
        with self._lock:
            if not self.open:
                return
            self.open = False
        from django.db import connections

        wrapper = connections["default"]
        if hasattr(wrapper, "close_pool"):
            try:
                wrapper.close_pool()
            except Exception as exc:  # a pool that will not close is replaced anyway
                logger.warning("closing the database pool after an outage failed (%s)", type(exc).__name__)

    def server_accepts(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at < self.CHECK_INTERVAL:
                return self._accepts
            self._checked_at = now
            address = self.address()
            try:
                if address is not None:
                    socket.create_connection(address, timeout=self.CONNECT_TIMEOUT).close()
                self._accepts = True
            except OSError:
                self._accepts = False
            return self._accepts


circuit = _Circuit()
# Served without the database: never held back by the circuit.
CIRCUIT_EXEMPT = ("/healthz", "/readyz", "/metrics", "/oauth2/jwks", "/.well-known/")


def is_unavailable(exc: BaseException | None) -> bool:
    """A dependency did not answer in time, or the service cannot sign (a deployment
    mistake an operator must fix: /readyz and `manage.py check` name it)."""
    from authservice.signing_keys import SigningKeyUnavailable

    return isinstance(exc, (*UNAVAILABLE, SigningKeyUnavailable, CircuitOpen))


def unavailable_response(request: HttpRequest, exc: BaseException) -> JsonResponse:
    """The 503 for a dependency that did not answer in time. Logged as one line, at most
    once a second per process (an outage must not flood the log with tracebacks)."""
    if _is_pool_timeout(exc):
        circuit.open = True
    now = time.monotonic()
    if now - _last_logged["at"] >= 1.0:
        _last_logged["at"] = now
        logger.warning("dependency unavailable (%s): answering 503 to %s", type(exc).__name__, request.path)
    description = "The service cannot reach its database or cache, or cannot sign; retry shortly."
    error = "temporarily_unavailable" if request.path.startswith(OAUTH_PATHS) else "service_unavailable"
    body = {"error": error, "error_description": description}
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def _is_pool_timeout(exc: BaseException) -> bool:
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover
        return False
    # Django wraps driver errors (django.db.OperationalError from the PoolTimeout).
    return isinstance(exc, PoolTimeout) or isinstance(exc.__cause__, PoolTimeout)


class FailFastMiddleware:
    """Outermost: a view that fails on an unavailable dependency answers 503; while the
    database server is down, requests answer 503 without waiting on the pool (``circuit``)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if circuit.open and not request.path.startswith(CIRCUIT_EXEMPT):
            if not circuit.server_accepts():
                return unavailable_response(request, CircuitOpen())
            circuit.close()
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if is_unavailable(exception):
            return unavailable_response(request, exception)
        return None
