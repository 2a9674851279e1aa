"""Django's PostgreSQL backend whose connections are taken through a circuit breaker.

While PostgreSQL is down, taking a connection from psycopg_pool waits the pool's
``timeout`` (1 s) and fails. Without a breaker every request waiting there holds a
server thread for that second, so requests queue behind one another and /healthz
queues behind them (a liveness probe would restart a healthy process during someone
else's outage). With it (pybreaker, driven by the real outcome of taking a connection,
whatever the topology: TCP, a Unix socket, PgBouncer), one failure opens the circuit:
for ``DATABASE_BREAKER_RESET_SECONDS`` (0.5 s) requests answer 503 at once, then one
request tries again (half-open), and its success closes the circuit.

One breaker per database alias in each process (each worker judges its own pool). A pool exhausted by its
own requests (more threads than ``DATABASE_POOL_MAX_SIZE``) trips it too: the
requests behind answer 503 at once instead of waiting their second for it.
"""

from __future__ import annotations

import logging
import os
import threading

import psycopg
import pybreaker
from django.db.backends.postgresql import base

logger = logging.getLogger("authservice.availability")


class _LogTransitions(pybreaker.CircuitBreakerListener):
    def state_change(self, breaker, old, new) -> None:
        if new.name == pybreaker.STATE_OPEN and (old is None or old.name == pybreaker.STATE_CLOSED):
            logger.warning("database unreachable: answering 503 at once, trying again every %.1f s",
                           breaker.reset_timeout)
        elif new.name == pybreaker.STATE_CLOSED:
            logger.warning("database reachable again")


_breakers: dict[str, pybreaker.CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(alias: str) -> pybreaker.CircuitBreaker:
    """The breaker of a database alias, shared by the threads of this process."""
    with _breakers_lock:
        if alias not in _breakers:
            _breakers[alias] = pybreaker.CircuitBreaker(
                fail_max=1,
                reset_timeout=float(os.environ.get("DATABASE_BREAKER_RESET_SECONDS", "0.5")),
                listeners=[_LogTransitions()],
                throw_new_error_on_trip=False,  # the failure itself (a psycopg error Django maps) is raised
                name=f"database {alias}",
            )
        return _breakers[alias]


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        try:
            return breaker_for(self.alias).call(super().get_new_connection, conn_params)
        except pybreaker.CircuitBreakerError:
            # Raised as the driver's own OperationalError, so that Django's error wrapping
            # makes it django.db.OperationalError and authservice.availability answers 503.
            raise psycopg.OperationalError("database unreachable (tried again shortly)") from None
