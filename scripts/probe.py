"""What scripts/run-tests asks before and after its PostgreSQL pass.

  probe.py redis URL              exit 0 if Redis answers at URL
  probe.py postgres URL           exit 0 if the server at URL answers and this run's test
                                  database can be created there (created and dropped again:
                                  pytest-django makes the real one); else one line saying why
  probe.py drop-run-databases URL drop this run's test database and the databases its ops
                                  tests made (named after it), if any were left behind

This run's test database is ``<URL's database name>_<OCEN_TEST_RUN>`` (tests/test_support.py);
the URL's own database is never touched and need not exist.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MAINTENANCE_DATABASES = ("postgres", "template1")


def _connect_kwargs(url: str) -> tuple[dict, str]:
    import dj_database_url

    cfg = dj_database_url.parse(url)
    return ({"user": cfg["USER"] or "postgres", "password": cfg["PASSWORD"] or None, "host": cfg["HOST"] or "127.0.0.1",
             "port": cfg["PORT"] or 5432, "connect_timeout": 3, "autocommit": True}, cfg["NAME"])


def _reason(exc: Exception) -> str:
    """libpq's own words, without its "connection to server at ... failed:" preamble or hints."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0].rsplit(" failed: ", 1)[-1]


def _maintenance_connection(url: str):
    """A connection to the server's maintenance database, or (None, why not)."""
    import psycopg

    kwargs, _ = _connect_kwargs(url)
    where = f"{kwargs['host']}:{kwargs['port']}"
    why = ""
    for dbname in MAINTENANCE_DATABASES:
        try:
            return psycopg.connect(dbname=dbname, **kwargs), ""
        except psycopg.OperationalError as exc:
            message = str(exc)
            if "FATAL:" not in message:  # nothing answered as PostgreSQL
                return None, f"server unreachable at {where}: {_reason(exc)}"
            if "does not exist" in message and f'database "{dbname}"' in message:
                why = f"no maintenance database ({' or '.join(MAINTENANCE_DATABASES)}) on {where}"
                continue
            return None, f"server at {where} refused the login: {message.split('FATAL:', 1)[1].strip()}"
    return None, why


def _run_database(url: str) -> str:
    import os

    if not os.environ.get("OCEN_TEST_RUN"):
        raise SystemExit("OCEN_TEST_RUN names the test run (scripts/run-tests sets it)")
    from tests.test_support import run_database_name

    return run_database_name(_connect_kwargs(url)[1])


def postgres(url: str) -> int:
    import psycopg
    from psycopg import sql

    conn, why = _maintenance_connection(url)
    if conn is None:
        print(why)
        return 1
    name = _run_database(url)
    with conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            print(f"cannot create the test database {name}: {_reason(exc)}")
            return 1
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
    return 0


def drop_run_databases(url: str) -> int:
    from psycopg import sql

    conn, why = _maintenance_connection(url)
    if conn is None:
        print(f"could not drop this run's databases: {why}")
        return 1
    name = _run_database(url)
    escaped = name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    with conn:
        left = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s ORDER BY datname",
            (name, f"{escaped}\\_%"))]
        for database in left:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    if left:
        print(f"dropped databases this run left behind: {', '.join(left)}")
    return 0


def redis(url: str) -> int:
    import redis as redis_py

    try:
        redis_py.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:  # any failure means "not reachable"
        print(f"unreachable at {url}: {exc}")
        return 1
    return 0


def main() -> int:
    commands = {"postgres": postgres, "redis": redis, "drop-run-databases": drop_run_databases}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    return commands[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
