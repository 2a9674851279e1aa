"""Failed client authentication is limited per address and per (client_id, address),
and nobody who merely knows a client_id can lock its participant out."""

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authservice import auth_limits
from authservice.clientcache import _pinned_generation
from authservice.conf import authservice_settings
from authservice.models import AuthFailureCounter
from authservice.services import client_deactivate
from tests.conftest import FORM, basic, form

PARTICIPANT = "127.0.0.1"
ATTACKER = "127.0.0.2"
ROOT = Path(__file__).resolve().parents[2]


def _token(client, client_id: str, secret: str, address: str, **extra):
    return client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                       HTTP_AUTHORIZATION=basic(client_id, secret), REMOTE_ADDR=address, **extra)


@pytest.fixture
def limits(settings):
    """Small limits, so a test reaches them in a few requests."""

    def apply(per_client: int = 3, per_address: int = 6, lockout: int = 300, **extra):
        settings.AUTHSERVICE = {**settings.AUTHSERVICE, "AUTH_FAILURE_LIMIT": per_client,
                                "AUTH_FAILURE_LIMIT_PER_ADDRESS": per_address, "AUTH_FAILURE_WINDOW": lockout,
                                "AUTH_LOCKOUT_SECONDS": lockout, **extra}

    return apply


@pytest.fixture(params=["database", "redis"])
def store(request, settings):
    """Failures counted in each store in turn: the database, and Redis when REDIS_URL is
    set (the PostgreSQL pass). Lockouts are in the database either way."""
    if request.param == "database":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    return request.param


@pytest.fixture
def database_store(settings):
    """Failures counted in the database whatever REDIS_URL says: for tests that look at the rows."""
    settings.REDIS_URL = ""


def _assert_locked_out(response, *, at_most: int = 300):
    assert response.status_code == 429
    assert response.json() == {"error": "temporarily_unavailable", "error_description": mock.ANY}
    assert 1 <= int(response["Retry-After"]) <= at_most
    assert response["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in response


def test_an_attacker_who_knows_a_client_id_cannot_lock_the_participant_out(client, make_client):
    oauth_client, secret = make_client("lender")
    statuses = [_token(client, oauth_client.client_id, f"guess-{n}", ATTACKER).status_code for n in range(200)]
    assert statuses == [401] * 20 + [429] * 180
    _assert_locked_out(_token(client, oauth_client.client_id, "guess", ATTACKER))

    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200
    # The locked-out pair is refused even with the right secret: it is not checked at all.
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER))


def test_a_locked_out_request_is_refused_before_the_secret_is_hashed(client, make_client, limits, store):
    limits()
    oauth_client, _ = make_client()
    for _ in range(3):
        _token(client, oauth_client.client_id, "wrong", ATTACKER)
    with mock.patch("authservice.validator.check_password", wraps=check_password) as spy, \
            CaptureQueriesContext(connection) as queries:
        _assert_locked_out(_token(client, oauth_client.client_id, "wrong", ATTACKER))
    assert spy.call_count == 0
    assert [q["sql"] for q in queries if q["sql"].split()[0].upper() != "SELECT"] == []  # refusing writes nothing


def test_refused_requests_do_not_extend_the_lockout(client, make_client, limits, store, clock):
    limits(lockout=60)
    oauth_client, secret = make_client()
    for _ in range(3):
        _token(client, oauth_client.client_id, "wrong", ATTACKER)
    clock.at(50)
    for _ in range(50):
        _token(client, oauth_client.client_id, "wrong", ATTACKER)
    assert _token(client, oauth_client.client_id, "wrong", ATTACKER)["Retry-After"] == "11"
    clock.at(61)
    assert _token(client, oauth_client.client_id, secret, ATTACKER).status_code == 200


def test_a_success_from_one_address_resets_no_counter_of_another(client, make_client, limits, store):
    limits()
    oauth_client, secret = make_client()
    for _ in range(2):
        assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 401
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200
    assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 401
    _assert_locked_out(_token(client, oauth_client.client_id, "wrong", ATTACKER))
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200


def test_the_per_address_limit_spans_client_ids(client, make_client, limits, store):
    limits(per_client=3, per_address=6)
    oauth_client, secret = make_client()
    for n in range(6):  # each client_id stays below its own limit
        assert _token(client, f"sprayed-{n}", "wrong", ATTACKER).status_code == 401
    _assert_locked_out(_token(client, "yet-another", "wrong", ATTACKER))
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER))
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200


def test_lockout_expires(client, make_client, limits, store, clock):
    limits(lockout=60)
    oauth_client, secret = make_client()
    for _ in range(3):
        _token(client, oauth_client.client_id, "wrong", ATTACKER)
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER), at_most=60)
    clock.at(61)
    assert _token(client, oauth_client.client_id, secret, ATTACKER).status_code == 200
    # A fresh window: the limit applies again in full.
    for _ in range(2):
        assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 401
    assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 401
    assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 429


@pytest.mark.parametrize("endpoint", ["/oauth2/introspect", "/oauth2/revoke"])
def test_introspection_and_revocation_count_failures_with_the_token_endpoint(client, make_client, limits,
                                                                            endpoint):
    limits()
    oauth_client, secret = make_client()
    token = _token(client, oauth_client.client_id, secret, PARTICIPANT).json()["access_token"]

    def call(secret_used):
        return client.post(endpoint, form({"token": token}), content_type=FORM, REMOTE_ADDR=ATTACKER,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret_used))

    assert call("wrong").status_code == 401
    assert _token(client, oauth_client.client_id, "wrong", ATTACKER).status_code == 401
    assert call("wrong").status_code == 401
    _assert_locked_out(call(secret))
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER))
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200


def test_client_secret_post_and_assertions_are_counted_by_their_client_id(client, make_client, limits):
    limits()
    oauth_client, secret = make_client()
    for _ in range(3):
        response = client.post("/oauth2/token", form({
            "grant_type": "client_credentials", "client_id": oauth_client.client_id, "client_secret": "wrong",
        }), content_type=FORM, REMOTE_ADDR=ATTACKER)
        assert response.status_code == 401
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER))
    request = SimpleNamespace(headers={})
    assertion = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhYmMifQ.c2ln"  # {"iss": "abc"}
    assert auth_limits._presented_client_id(request, {"client_assertion": assertion}) == "abc"
    assert auth_limits._presented_client_id(request, {"client_assertion": "garbage"}) == ""


def test_failures_write_to_the_store_and_success_writes_nothing(client, make_client, limits, store):
    limits()
    oauth_client, secret = make_client()
    _token(client, oauth_client.client_id, secret, PARTICIPANT)
    assert not AuthFailureCounter.objects.exists()
    _token(client, oauth_client.client_id, "wrong", ATTACKER)
    rows = sorted(AuthFailureCounter.objects.values_list("failures", "locked_until"))
    assert rows == ([(1, None), (1, None)] if store == "database" else [])  # Redis counts
    for _ in range(2):
        _token(client, oauth_client.client_id, "wrong", ATTACKER)
    locked = AuthFailureCounter.objects.get(locked_until__isnull=False)  # the pair's lockout, in the database
    assert locked.failures == 0 and locked.window_ends_at == locked.locked_until


def test_the_lockout_check_rides_on_the_client_generation_query(client, make_client):
    oauth_client, secret = make_client()
    _token(client, oauth_client.client_id, secret, PARTICIPANT)
    with CaptureQueriesContext(connection) as queries:
        assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200
    (query,) = queries
    assert "authfailurecounter" in query["sql"] and '"generation" FROM "authservice_oauthclient"' in query["sql"]
    assert _pinned_generation.get() is None  # pinned for that request only
    client_deactivate(client=oauth_client)  # bumps the generation: the very next request sees it
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 401


# --- The client's address --------------------------------------------------------------------

def _address(settings, remote: str, forwarded: str | None = None, proxies=("10.0.0.0/8",)) -> str:
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "TRUSTED_PROXIES": list(proxies)}
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return auth_limits.client_address(SimpleNamespace(META=meta))


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    ("203.0.113.9", None, "203.0.113.9"),
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # untrusted peer: its XFF is ignored
    ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.1", "1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),  # right to left, skipping proxies
    ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),  # only proxies: the farthest
    ("10.0.0.1", "", "10.0.0.1"),
    ("10.0.0.1", "198.51.100.7, not-an-address", "10.0.0.1"),  # malformed: stop at our last proxy
    ("10.0.0.1", "not-an-address, 198.51.100.7", "198.51.100.7"),
    ("10.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
    ("10.0.0.1", "[2001:db8:1:2::7]:443", "2001:db8:1:2::/64"),
    ("10.0.0.1", ",,, ,", "10.0.0.1"),
    ("10.0.0.1", "\x00\xff" * 500, "10.0.0.1"),
    ("2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),  # an IPv6 client is its /64
    ("::ffff:203.0.113.9", None, "203.0.113.9"),
    ("fe80::1%eth0", None, "fe80::/64"),
    ("", None, "unknown"),
    ("not-an-ip", None, "not-an-ip"),
])
def test_client_address(settings, remote, forwarded, expected):
    assert _address(settings, remote, forwarded) == expected


def test_no_trusted_proxy_by_default(settings):
    assert _address(settings, "10.0.0.1", "198.51.100.7", proxies=()) == "10.0.0.1"


def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(client, make_client, limits):
    limits(TRUSTED_PROXIES=["10.0.0.1"])
    oauth_client, secret = make_client()
    # Through the trusted proxy, the forwarded address is the one counted and locked out.
    for _ in range(3):
        assert _token(client, oauth_client.client_id, "wrong", "10.0.0.1",
                      HTTP_X_FORWARDED_FOR=ATTACKER).status_code == 401
    _assert_locked_out(_token(client, oauth_client.client_id, secret, "10.0.0.1", HTTP_X_FORWARDED_FOR=ATTACKER))
    _assert_locked_out(_token(client, oauth_client.client_id, secret, ATTACKER))
    assert _token(client, oauth_client.client_id, secret, "10.0.0.1",
                  HTTP_X_FORWARDED_FOR=PARTICIPANT).status_code == 200
    # From an untrusted peer the header is ignored: spoofing another address neither
    # escapes the spoofer's lockout nor locks out the spoofed address.
    for _ in range(3):
        _token(client, oauth_client.client_id, "wrong", "127.0.0.9", HTTP_X_FORWARDED_FOR=PARTICIPANT)
    _assert_locked_out(_token(client, oauth_client.client_id, secret, "127.0.0.9",
                              HTTP_X_FORWARDED_FOR="127.0.0.77"))
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200


def test_a_malformed_forwarded_for_is_never_a_500(client, make_client, limits):
    limits(TRUSTED_PROXIES=["127.0.0.0/8"])
    oauth_client, secret = make_client()
    for header in ["", "garbage", "1.2.3.4, , [::1", "[" * 300, "::::::", "1.2.3.4:99999:1"]:
        assert _token(client, oauth_client.client_id, secret, "127.0.0.1",
                      HTTP_X_FORWARDED_FOR=header).status_code == 200


# --- Settings, purge, sharing ---------------------------------------------------------------------

@pytest.mark.parametrize("override", [
    {"TRUSTED_PROXIES": ["10.0.0.0/33"]}, {"TRUSTED_PROXIES": "10.0.0.1"}, {"AUTH_FAILURE_LIMIT": 0},
    {"AUTH_FAILURE_LIMIT": 50, "AUTH_FAILURE_LIMIT_PER_ADDRESS": 10}, {"AUTH_LOCKOUT_SECONDS": "300"},
])
def test_bad_limit_settings_are_refused(settings, override):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, **override}
    with pytest.raises(ImproperlyConfigured):
        authservice_settings.ISSUER  # noqa: B018


def test_purge_expired_drops_only_ended_counters(db, limits, database_store, clock):
    limits(lockout=60)
    attempt = SimpleNamespace(client_id="c", address=ATTACKER, endpoint="/oauth2/token",
                              pair_key=1, address_key=2)
    for _ in range(3):  # locks the pair out until 60; the address's window ends at 60 too
        auth_limits.record_failure(attempt)
    clock.at(30)
    auth_limits.record_failure(SimpleNamespace(**{**vars(attempt), "pair_key": 3}))  # a window ending at 90
    clock.at(59)
    call_command("purge_expired", stdout=io.StringIO())
    assert sorted(AuthFailureCounter.objects.values_list("key", flat=True)) == [1, 2, 3]
    clock.at(61)
    out = io.StringIO()
    call_command("purge_expired", stdout=out)
    assert sorted(AuthFailureCounter.objects.values_list("key", flat=True)) == [3]
    assert "2 expired authentication-failure counters" in out.getvalue()


@pytest.mark.ops
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shared", ["database", "redis"])
def test_a_lockout_holds_in_every_process(settings, shared):
    if shared == "database" and connection.vendor != "postgresql":
        pytest.skip("the SQLite test database is in memory: another process cannot reach it")
    if shared == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set")
    env = dict(os.environ)
    if shared == "database":
        settings.REDIS_URL = env["REDIS_URL"] = ""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    # Another process (another instance) fails 20 times for one client_id from one address,
    # counting in Redis under this test run's key prefix (CACHE_KEY_PREFIX), as this process does.
    code = ("import django; django.setup(); from types import SimpleNamespace as R; "
            "from authservice.auth_limits import attempt_for, record_failure; "
            "a = attempt_for(R(META={'REMOTE_ADDR': '127.0.0.2'}, headers={}, path='/oauth2/token'), "
            "{'client_id': 'c'}); [record_failure(a) for _ in range(20)]")
    result = subprocess.run([sys.executable, "-c", code],
                            env={**env, "DJANGO_SETTINGS_MODULE": "authservice.settings",
                                 "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"]},
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr

    def attempt(address):
        request = SimpleNamespace(META={"REMOTE_ADDR": address}, headers={}, path="/oauth2/token")
        return auth_limits.attempt_for(request, {"client_id": "c"})

    assert auth_limits.check(attempt(ATTACKER)).locked_for > 0
    assert auth_limits.check(attempt(PARTICIPANT)).locked_for == 0


def test_with_redis_down_a_wrong_secret_is_still_counted_and_locks_out(client, make_client, limits, settings):
    """Redis stopped (nothing listens at REDIS_URL): failures are counted in the database
    instead, so guessing is limited and the right secret is refused once locked out."""
    from tests.test_support import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    auth_limits._redis.cache_clear()
    limits(per_client=3, per_address=100)
    oauth_client, secret = make_client()
    answers = [_token(client, oauth_client.client_id, "wrong-secret-long-enough", ATTACKER).status_code
               for _ in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    assert _token(client, oauth_client.client_id, secret, ATTACKER).status_code == 429  # no success signal
    assert _token(client, oauth_client.client_id, secret, PARTICIPANT).status_code == 200  # another address
