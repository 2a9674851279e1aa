"""Small helpers shared by suites that start servers."""

import os
import socket

import pytest


def free_port() -> int:
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
