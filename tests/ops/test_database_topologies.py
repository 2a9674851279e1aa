"""The service's promises in the database topologies people deploy, each tried on the
real thing: the service as deployed (``python -m authservice.serve``, two workers),
PostgreSQL over TCP and over its Unix socket (a private cluster, so it can be
restarted), PgBouncer in transaction pooling mode, and Redis stopped.

- every worker recovers within 2 s of PostgreSQL's return, over TCP and over the
  socket (a home-made circuit probed TCP and left a worker at 503 for minutes);
- behind PgBouncer, a participant suspended with ``manage.py suspend`` gets no token
  1 s after the command returns (the change feed's LISTEN never delivers there);
- with Redis stopped, tokens are issued and wrong secrets are counted and locked out.

PostgreSQL pass only. Without PgBouncer, HAProxy or PostgreSQL's server binaries a test
is skipped locally and fails under ``CI=true`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

from scripts.opslib import (
    Instance,
    OwnPostgres,
    OwnRedis,
    initdb_available,
    manage,
    onboard,
    prepare_database,
    service_env,
    temp_database,
)
from tests.pgbouncer import PgBouncer
from tests.test_support import admin_dsn, database_prefix, free_port, require

pytestmark = [
    pytest.mark.ops_smoke,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="production-like runs on PostgreSQL: they run in the PostgreSQL pass"),
]

OUTAGE_SECONDS = 5
RECOVERY_SECONDS = 2  # the promise: every worker serves again within this of PostgreSQL's return
SUSPENSION_SECONDS = 1  # the promise: a suspension is effective at the token endpoint within this
REQUESTS = 60






def token(url: str, participant, *, secret: str | None = None) -> httpx.Response:
    """One token request on a new connection (so requests spread over the workers)."""
    return httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"},
                      auth=(participant.client_id, secret or participant.client_secret), timeout=10)


@contextlib.contextmanager
def serving(env: dict, name: str):
    instance = Instance(name, free_port(), env, workers=2)
    try:
        instance.start()
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture(scope="module")
def own_postgres():
    require(initdb_available(), "PostgreSQL's server binaries (initdb, pg_ctl)")
    workdir = Path(tempfile.mkdtemp(prefix="ocen-topology-"))
    server = OwnPostgres(free_port(), workdir)
    server.init()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["tcp", "unix-socket"])
def test_every_worker_recovers_within_2s_of_a_postgres_restart(own_postgres, transport):
    with temp_database(own_postgres.admin_dsn, "topology") as tcp_url:
        name = tcp_url.rsplit("/", 1)[1]
        url = (tcp_url if transport == "tcp" else
               f"postgres://postgres@{quote(str(own_postgres.socket_dir), safe='')}:{own_postgres.port}/{name}")
        env = service_env(database_url=url, redis_url="", issuer="http://127.0.0.1:8000")
        prepare_database(env)
        participant = onboard(env, "Blink Bank")
        with serving(env, f"blink-{transport}") as instance:
            assert [token(instance.url, participant).status_code for _ in range(10)] == [200] * 10
            own_postgres.stop()
            try:
                down = []
                deadline = time.monotonic() + OUTAGE_SECONDS
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    response = token(instance.url, participant)
                    down.append((response.status_code, response.headers.get("Retry-After"),
                                 time.monotonic() - started))
                # Down: a prompt 503 with Retry-After, never a hang or a 500.
                assert {status for status, _, _ in down} == {503}, down
                assert all(retry_after for _, retry_after, _ in down), down
            finally:
                own_postgres.start()
            back = time.monotonic()
            time.sleep(max(0.0, back + RECOVERY_SECONDS - time.monotonic()))
            statuses = [token(instance.url, participant).status_code for _ in range(REQUESTS)]
            assert statuses == [200] * REQUESTS, f"{statuses.count(200)} of {REQUESTS} got 200 " \
                                                 f"{RECOVERY_SECONDS} s after PostgreSQL returned"
            assert httpx.get(f"{instance.url}/readyz", timeout=10).status_code == 200


def test_behind_pgbouncer_a_suspension_is_effective_within_1s():
    require(PgBouncer.available(), "pgbouncer (apt-get install pgbouncer)")
    bouncer = PgBouncer().start()
    try:
        with temp_database(admin_dsn(), database_prefix("pgbouncer")) as direct_url:
            name = direct_url.rsplit("/", 1)[1]
            # Migrations run straight on PostgreSQL, as deployments do; the service runs
            # through PgBouncer (which refuses startup options: no statement_timeout).
            direct = service_env(database_url=direct_url, redis_url="", issuer="http://127.0.0.1:8000")
            prepare_database(direct)
            env = {**direct, "DATABASE_URL": bouncer.url(name), "DATABASE_STATEMENT_TIMEOUT_MS": "0"}
            participant = onboard(env, "Pooled Lender")
            with serving(env, "pgbouncer") as instance:
                assert [token(instance.url, participant).status_code for _ in range(40)] == [200] * 40
                manage(env, "suspend", participant.participant_id, "--reason", "INC-1 pooled")
                returned = time.monotonic()
                time.sleep(max(0.0, returned + SUSPENSION_SECONDS - time.monotonic()))
                statuses = [token(instance.url, participant).status_code for _ in range(40)]
                assert 200 not in statuses, f"{statuses.count(200)} of 40 tokens issued " \
                                            f"{SUSPENSION_SECONDS} s after the suspension"
                assert set(statuses) <= {401, 429}, statuses  # refused (then locked out: failures count)
    finally:
        bouncer.stop()


def test_with_redis_stopped_tokens_are_issued_and_wrong_secrets_lock_out():
    require(OwnRedis is not None, "redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="ocen-redis-"))
    redis_server = OwnRedis(free_port(), workdir)
    redis_server.start()
    try:
        with temp_database(admin_dsn(), database_prefix("noredis")) as url:
            env = service_env(database_url=url, redis_url=redis_server.url, issuer="http://127.0.0.1:8000",
                              extra={"AUTHSERVICE_AUTH_FAILURE_LIMIT": "5"})
            prepare_database(env)
            participant = onboard(env, "Cacheless Bank")
            with serving(env, "noredis") as instance:
                redis_server.stop()
                assert token(instance.url, participant).status_code == 200
                wrong = [token(instance.url, participant, secret="wrong-" + "x" * 40).status_code
                         for _ in range(8)]
                assert wrong[:5] == [401] * 5 and set(wrong[5:]) == {429}, wrong
                assert token(instance.url, participant).status_code == 429  # no success signal
                ready = httpx.get(f"{instance.url}/readyz", timeout=10)
                assert ready.status_code == 200
                assert ready.json()["checks"]["redis"] == "unreachable"
    finally:
        redis_server.stop()
