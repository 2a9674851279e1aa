"""Changes pushed by PostgreSQL (``authservice.change_listener``): while the feed is
live, a token request for a cached client makes no query, and yet every change made
through another connection (another worker, another instance) reaches the cache; when
the feed is lost, requests query again until it is back."""

import os
import threading
import time

import psycopg
import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from authservice import auth_limits, change_listener
from authservice.change_listener import APPLICATION_NAME, CHANNEL, ChangeListener, listener
from authservice.clientcache import client_cache
from authservice.models import AuthFailureCounter
from authservice.services import client_create, client_deactivate, client_reactivate
from tests.conftest import FORM, basic, form
from tests.pgbouncer import PgBouncer

ADDRESS = "127.0.0.9"
NOTICE_WAIT = 5.0  # seconds a test waits for a notice before failing (a bound, not a timing)


def _token(http: Client, client_id: str, secret: str):
    return http.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                     HTTP_AUTHORIZATION=basic(client_id, secret), REMOTE_ADDR=ADDRESS)


def _state_queries(queries) -> list[str]:
    """The queries that read a client's state or a lockout (others, e.g. the activity
    counters' periodic flush, may happen at any time)."""
    return [q["sql"] for q in queries if "generation" in q["sql"] or AuthFailureCounter._meta.db_table in q["sql"]
            or "oauthclient" in q["sql"]]


def _elsewhere(action):
    """Run ``action`` on another database connection (as another worker would), committed."""
    errors = []

    def run():
        try:
            action()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not errors, errors


def _wait(condition, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < NOTICE_WAIT, f"{what} did not happen within {NOTICE_WAIT} s"
        time.sleep(0.002)
    return time.monotonic() - start


class TestWithPostgreSQL:
    pytestmark = [
        pytest.mark.postgres_only,
        pytest.mark.django_db(transaction=True),
        pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's"),
    ]

    @pytest.fixture(autouse=True)
    def feed(self, signing_key):
        client_cache.clear()
        assert listener.start()
        _wait(listener.trusted, "the feed going live")
        yield listener
        listener.stop()
        client_cache.clear()

    @pytest.fixture
    def credentials(self):
        before = listener.sequence
        client, secret = client_create(name="feed")
        # Its creation's notice arrives when it will (on a loaded machine, during a later
        # request, whose cached record it then drops): let it land first.
        _wait(lambda: listener.sequence > before, "the new client's notice")
        return client, secret

    def test_a_cached_client_costs_no_query(self, credentials):
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200  # loads the record
        with CaptureQueriesContext(connection) as queries:
            for _ in range(3):
                assert _token(http, client.client_id, secret).status_code == 200
        assert _state_queries(queries.captured_queries) == []

    def test_a_change_committed_elsewhere_reaches_the_cache(self, credentials):
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200
        before = listener.sequence
        # Another process's write: its own session, and none of this process's hooks.
        with psycopg.connect(**_params(), autocommit=True) as other:
            table = type(client)._meta.db_table
            sql = f'UPDATE "{table}" SET is_active = false, generation = generation + 1 WHERE id = %s'  # noqa: S608
            other.execute(sql, [client.pk])
        delay = _wait(lambda: listener.sequence > before, "the notice")
        print(f"notice applied {delay * 1e6:.0f} µs after the commit")
        assert _token(http, client.client_id, secret).status_code == 401

    def test_a_rolled_back_change_sends_no_notice(self, credentials):
        client, _ = credentials
        with psycopg.connect(**_params(), autocommit=True) as watcher:
            watcher.execute(f"LISTEN {CHANNEL}")

            def change_then_roll_back():
                from django.db import transaction

                with pytest.raises(RuntimeError), transaction.atomic():
                    type(client).objects.filter(pk=client.pk).update(name="renamed")
                    raise RuntimeError("roll back")
                type(client).objects.filter(pk=client.pk).update(name="kept")

            _elsewhere(change_then_roll_back)
            notices = [n.payload for n in watcher.notifies(timeout=1.0)
                       if not n.payload.startswith(change_listener.CANARY_PREFIX)]
        assert notices == [f"c:{client.client_id}"]  # the committed update only

    def test_a_new_client_is_never_refused_from_a_stale_negative_entry(self, credentials):
        http = Client()
        assert _token(http, "not-yet", "secret-that-is-long-enough").status_code == 401
        created, secret = client_create(name="later")
        # The unknown client's "no such client" entry is never trusted: no wait for a notice.
        assert _token(http, created.client_id, secret).status_code == 200

    def test_a_lockout_started_elsewhere_holds_here(self, credentials):
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200
        until = time.time() + 300
        key = auth_limits._key(auth_limits.PAIR, client.client_id, ADDRESS)
        _elsewhere(lambda: AuthFailureCounter.objects.create(key=key, failures=0, window_ends_at=until,
                                                             locked_until=until))
        _wait(lambda: listener.locked_until(key) >= until - 1, "the lockout notice")
        assert _token(http, client.client_id, secret).status_code == 429

    def test_a_forged_lockout_notice_locks_nobody_out(self, credentials):
        """Any role that can connect may NOTIFY: a notice names keys to check, the table decides."""
        client, secret = credentials
        http = Client()
        key = auth_limits._key(auth_limits.PAIR, client.client_id, ADDRESS)
        with psycopg.connect(**_params(), autocommit=True) as other:
            other.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"l:{key}:{time.time() + 300}"])
        _wait(lambda: listener.locked_until(key) > time.time(), "the forged notice")
        assert _token(http, client.client_id, secret).status_code == 200
        assert not AuthFailureCounter.objects.filter(key=key).exists()

    def test_a_running_lockout_is_known_after_connecting(self, credentials):
        client, secret = credentials
        listener.stop()
        until = time.time() + 300
        key = auth_limits._key(auth_limits.ADDRESS, ADDRESS)
        AuthFailureCounter.objects.create(key=key, failures=0, window_ends_at=until, locked_until=until)
        assert listener.start()
        _wait(listener.trusted, "the feed going live")
        assert listener.locked_until(key) == pytest.approx(until)
        assert _token(Client(), client.client_id, secret).status_code == 429

    def test_losing_the_feed_falls_back_to_queries_then_resyncs(self, credentials, monkeypatch):
        monkeypatch.setattr(change_listener, "RECONNECT_DELAY", 2.0)  # stays down while the test looks
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200
        connected = listener.connections
        with psycopg.connect(**_params(), autocommit=True) as admin:
            terminated = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE application_name = %s", [APPLICATION_NAME]).fetchall()
        assert terminated
        _wait(lambda: not listener.trusted(), "the feed being distrusted")
        # While it is down: a change made elsewhere is seen at once, by a query.
        _elsewhere(lambda: client_deactivate(client=client))
        assert not listener.trusted()
        with CaptureQueriesContext(connection) as queries:
            assert _token(http, client.client_id, secret).status_code == 401
        assert _state_queries(queries.captured_queries)
        # Back: everything cached before is forgotten; the state is right without a query.
        _wait(lambda: listener.trusted() and listener.connections > connected, "the feed coming back")
        _elsewhere(lambda: client_reactivate(client=client))
        _wait(lambda: _token(http, client.client_id, secret).status_code == 200, "the reactivation")

    def test_a_record_cached_before_a_reconnection_costs_one_check_not_a_reload(self, credentials):
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200
        connected = listener.connections
        with psycopg.connect(**_params(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                          [APPLICATION_NAME])
        _wait(lambda: listener.trusted() and listener.connections > connected, "the feed coming back")
        with CaptureQueriesContext(connection) as queries:
            assert _token(http, client.client_id, secret).status_code == 200
        sql = [q["sql"] for q in queries.captured_queries]
        assert [q for q in sql if "generation" in q], sql  # the one check of a record from the old session
        assert not [q for q in sql if "registry_participant" in q or "is_active" in q], sql  # no reload
        with CaptureQueriesContext(connection) as queries:
            assert _token(http, client.client_id, secret).status_code == 200
        assert _state_queries(queries.captured_queries) == []

    def test_a_lapsed_trust_costs_a_check_per_request_never_a_miss(self, credentials):
        """A heartbeat starved by a busy machine lets the trust lapse (here: the listener
        stopped, the same session's records kept): each request then reads its client's
        generation, and the cached record still serves it: a hit, not the uncached path."""
        client, secret = credentials
        http = Client()
        assert _token(http, client.client_id, secret).status_code == 200  # cached
        listener.stop()
        assert not listener.trusted()
        hits, misses = client_cache.entries.hits, client_cache.entries.misses
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                assert _token(http, client.client_id, secret).status_code == 200
            sql = [q["sql"] for q in queries.captured_queries]
            assert [q for q in sql if "generation" in q], sql  # the state is read per request
            assert not [q for q in sql if "registry_participant" in q or "is_active" in q], sql  # no reload
        assert (client_cache.entries.hits - hits, client_cache.entries.misses - misses) == (5, 0)

    def test_behind_a_transaction_pooler_the_feed_is_never_trusted(self, credentials):
        """PgBouncer in transaction mode accepts LISTEN and answers every query, and
        delivers no notice: the canary never comes back, so the cache is never trusted."""
        if not PgBouncer.available():
            assert os.environ.get("CI") != "true", "pgbouncer is not installed (.ci/run installs it)"
            pytest.skip("pgbouncer is not installed")
        bouncer = PgBouncer().start()

        class ThroughPooler(ChangeListener):
            def _connection_params(self) -> dict:
                params = {**super()._connection_params(), "host": "127.0.0.1", "port": bouncer.port}
                params.pop("options", None)  # PgBouncer refuses startup options (statement_timeout)
                return params

        feed = ThroughPooler()
        try:
            assert feed.start()
            _wait(lambda: feed.connections > 0, "the pooled feed connecting")
            deadline = time.monotonic() + 3 * change_listener.HEARTBEAT + 1
            while time.monotonic() < deadline:
                assert not feed.trusted()
                time.sleep(0.01)
            assert feed.canaries == 0
        finally:
            feed.stop()
            bouncer.stop()


def _params() -> dict:
    params = connection.get_connection_params()
    for name in ("pool", "cursor_factory", "context"):
        params.pop(name, None)
    return params


# --- Without a server ----------------------------------------------------------------------------

def test_a_record_loaded_before_a_notice_is_not_stored():
    feed = ChangeListener()
    stored = []
    sequence = feed.sequence
    feed._apply("c:someone")  # a notice arrives while the record is being loaded
    assert not feed.store_if_current(sequence, lambda: stored.append("record"))
    assert stored == []
    assert feed.store_if_current(feed.sequence, lambda: stored.append("record"))
    assert stored == ["record"]


def test_a_notice_drops_that_client_only():
    feed = ChangeListener()
    dropped = []
    feed.forget_client = dropped.append
    feed._apply("c:abc")
    feed._apply("l:42:1900000000.5")
    feed._apply("l:not-a-number:x")  # logged and ignored
    assert dropped == ["abc"]
    assert feed.locked_until(42, 7) == 1900000000.5


def test_the_feed_is_not_trusted_in_a_forked_child_or_before_it_starts():
    feed = ChangeListener()
    assert not feed.trusted()
    feed._pid = os.getpid() + 1  # as a child of a process that started it would see it
    feed._trusted_until = time.monotonic() + 60
    assert not feed.trusted()
    feed._pid = os.getpid()
    assert feed.trusted()


@pytest.mark.django_db
def test_sqlite_never_starts_a_feed():
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL has the feed")
    assert not ChangeListener().start()
