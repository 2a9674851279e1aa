"""Dependencies fail fast: an unavailable database or Redis answers 503 with
Retry-After (RFC 6749 ``temporarily_unavailable`` at the OAuth endpoints) within
about a second, never a hang or a 500 with a traceback.

The short waits themselves are the stock parts' own settings (psycopg_pool's
``timeout`` and ``reconnect_timeout``, the connect and statement timeouts of
PostgreSQL, socket timeouts for Redis); this module turns the errors they raise into
a clean answer, wherever they surface: in a view (``process_exception``), on the
OAuth fast path, or in a middleware (the 500 handler, ``authservice.views``). While
the database is down, the first request waits the pool's timeout and the ones after
it fail at once (``authservice.postgresql``: a pybreaker circuit on taking a
connection); the pool reconnects as soon as it is back (settings.py).
"""

import logging
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


def is_unavailable(exc: BaseException | None) -> bool:
    """A dependency did not answer in time, or the service cannot sign (a deployment
    mistake an operator must fix: /readyz and `manage.py check` name it)."""
    from signing.keys import SigningKeyUnavailable

    return isinstance(exc, (*UNAVAILABLE, SigningKeyUnavailable))


def unavailable_response(request: HttpRequest, exc: BaseException) -> JsonResponse:
    """The 503 for a dependency that did not answer in time. Logged as one line, at most
    once a second per process (an outage must not flood the log with tracebacks)."""
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


class FailFastMiddleware:
    """Outermost: a view that fails on an unavailable dependency answers 503."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if is_unavailable(exception):
            return unavailable_response(request, exception)
        return None
