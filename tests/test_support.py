"""Small helpers shared by the suites: free ports, tools a test requires, and what keeps
one test run apart from another on a shared PostgreSQL server and Redis database."""

import os
import secrets
import socket

import pytest

# This run's name: scripts/run-tests sets OCEN_TEST_RUN for both of its passes; a bare
# pytest names itself. The PostgreSQL test database is named after it (tests/conftest.py),
# so are the databases the ops tests create, and every cache key of the run is under it.
RUN_ID = os.environ.get("OCEN_TEST_RUN") or f"{os.getpid()}_{secrets.token_hex(3)}"
CACHE_KEY_PREFIX = f"test_{RUN_ID}"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick): the one helper for tests/.
    (bench/run.py keeps its own, which can also pick from a BENCH_PORTS range; the
    scripts take --base-port.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require(ok: bool, what: str) -> None:
    """Skip a test whose tool is missing locally; under CI=true (.ci/run installs it) fail instead."""
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required under CI=true")
        pytest.skip(f"{what} is not installed")


def admin_dsn() -> str:
    """The PostgreSQL server the test database lives on, as its maintenance database (the
    ops tests create and drop their own databases there)."""
    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432,
                                          user=settings["USER"] or "postgres", password=settings["PASSWORD"] or None,
                                          dbname="postgres")


def run_database_name(name: str) -> str:
    """This run's PostgreSQL test database for the configured database ``name``: its own,
    so two runs on one server never share (or drop) each other's. PostgreSQL keeps 63 bytes."""
    suffix = f"_{RUN_ID}"
    return name[:63 - len(suffix)] + suffix


def database_prefix(what: str) -> str:
    """A name prefix for a database an ops test creates: this run's test database name
    and ``what``, so scripts/run-tests drops it with the run's own if the test could not."""
    from django.db import connection

    # TEST NAME: set (tests/conftest.py) even in a session whose tests never open the test database.
    return f"{connection.settings_dict['TEST'].get('NAME') or connection.settings_dict['NAME']}_{what}"


def clear_cache() -> None:
    """Empty this run's default cache. Django's RedisCache.clear() is FLUSHDB, which would
    also empty every other run sharing the Redis database: on Redis only the keys under
    this run's KEY_PREFIX are deleted."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches["default"]
    if not isinstance(cache, RedisCache):
        cache.clear()
        return
    if not cache.key_prefix:
        raise RuntimeError("a test cache on Redis needs a KEY_PREFIX (tests/conftest.py sets one per run)")
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
