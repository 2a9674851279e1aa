"""Fixtures shared by every suite: a signing key, OAuth clients, token requests, and
what makes the suite fast without changing what it tests (a cheap password hasher for
the test users, service signing keys generated once per session).

Kinds of test. Every test carries exactly one of the markers ``unit``, ``integration``,
``browser`` and ``ops`` (registered in pyproject.toml), given by the first rule that applies:

1. An explicit ``@pytest.mark.unit`` / ``integration`` / ``browser`` / ``ops`` on the test,
   its class or its module (``pytestmark``), the closest one winning.
2. Its directory: tests/browser/ is ``browser``; tests/ops/ and tests/bench/ are ``ops``.
3. ``integration`` if it uses the test database or a live server: the ``db``,
   ``transactional_db`` or ``live_server`` fixture (itself or through a fixture it uses),
   or the ``django_db`` marker.
4. Else ``unit``.

``ops`` means production-like runs: the service (or HAProxy, PgBouncer, a PostgreSQL
cluster, the bench harness) started as separate processes; a module elsewhere whose tests
do that is marked ``ops`` explicitly. ``make test-fast`` runs ``not browser and not ops``
on SQLite; ``make test`` runs everything on SQLite and on PostgreSQL.

One run apart from another: the PostgreSQL test database is this run's own
(``<DATABASE_URL's name>_<run id>``, created by pytest-django and dropped after it), and
every cache key is under this run's KEY_PREFIX, including the authentication-failure
counters authservice.lockouts keeps in Redis directly; a test empties only this run's
keys (tests.test_support.clear_cache), never the whole Redis database."""

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches

from authservice.clientcache import client_cache
from authservice.services import client_create
from authservice.signing_keys import key_cache, signing_key_ensure
from registry.api.cache import rendered_cache
from signing import keys as signing_keys
from tests.test_support import CACHE_KEY_PREFIX, RUN_ID, clear_cache, run_database_name

KINDS = ("unit", "integration", "browser", "ops")
_BY_DIRECTORY = {"browser": "browser", "ops": "ops", "bench": "ops"}
_USES_DATABASE_OR_SERVER = {"db", "transactional_db", "live_server"}
_TESTS = Path(__file__).resolve().parent


def _kind(item: pytest.Item) -> str:
    for marker in item.iter_markers():  # the test's own first, then its class's, then its module's
        if marker.name in KINDS:
            return marker.name
    path = Path(str(item.path)).resolve()
    if path.is_relative_to(_TESTS):
        top = path.relative_to(_TESTS).parts[0]
        if top in _BY_DIRECTORY:
            return _BY_DIRECTORY[top]
    if _USES_DATABASE_OR_SERVER & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("django_db"):
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        kind = _kind(item)
        if not any(marker.name == kind for marker in item.iter_markers()):
            item.add_marker(kind)


# Every cache key of this run under its own prefix (set before any cache is made), in
# this process and in every service or command a test starts (CACHE_KEY_PREFIX).
django_settings.CACHES["default"]["KEY_PREFIX"] = CACHE_KEY_PREFIX
os.environ["CACHE_KEY_PREFIX"] = CACHE_KEY_PREFIX
assert caches["default"].key_prefix == CACHE_KEY_PREFIX, "a cache was made before tests/conftest.py ran"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """This run's own PostgreSQL test database (pytest-django creates it, dropping one of
    the same name first, and drops it after the run). SQLite's is in memory already."""
    database = django_settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"]:  # Django's backend, or authservice.postgresql built on it
        database.setdefault("TEST", {})["NAME"] = run_database_name(database["NAME"])


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup, django_db_blocker):
    """Return pooled PostgreSQL connections before the test database is dropped."""
    yield
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if hasattr(connection, "close_pool"):
            connection.close_pool()


class _ServiceKeyPool:
    """Service signing keys made once per session and handed out in order within each
    test, so a test that rotates still gets distinct keys. The test database is rolled
    back or flushed after every test, so a key is never registered twice."""

    def __init__(self, generate) -> None:
        self._generate = generate
        self._keys: dict[str, list] = {}
        self._next: dict[str, int] = {}

    def reset(self) -> None:
        self._next.clear()

    def __call__(self, alg: str):
        index = self._next.get(alg, 0)
        self._next[alg] = index + 1
        keys = self._keys.setdefault(alg, [])
        while len(keys) <= index:
            keys.append(self._generate(alg))
        return keys[index]


@pytest.fixture(scope="session")
def _service_key_pool():
    pool = _ServiceKeyPool(signing_keys._generate_private_key)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(signing_keys, "_generate_private_key", pool)
        yield pool


@pytest.fixture(autouse=True)
def _fast_test_setup(_service_key_pool, settings):
    """Test users' passwords hash with MD5 (they guard nothing); client secrets keep
    their own hasher, which the token endpoint's behaviour depends on."""
    _service_key_pool.reset()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                                 "authservice.hashers.ClientSecretHasher"]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings):
    """Tests do not run collectstatic, so they skip the hashed-manifest storage."""
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


# Changed by pytest itself, or by Django when a test's settings change TIME_ZONE (undone
# by the settings fixture after this check runs).
_SET_FOR_US = {"PYTEST_CURRENT_TEST", "TZ"}


def _changed_since(before: dict) -> list[str]:
    return sorted(name for name in before.keys() | os.environ.keys()
                  if before.get(name) != os.environ.get(name) and name not in _SET_FOR_US)


@pytest.fixture(autouse=True)
def _environment_left_as_found(monkeypatch):
    """A test that changes this process's environment and leaves it changed fails: every
    later test, and every service the ops smokes start (they copy it), would inherit it.
    (monkeypatch.setenv is fine: undone here first, as it would be just after.)"""
    before = dict(os.environ)
    yield
    if _changed_since(before):
        monkeypatch.undo()
    if changed := _changed_since(before):
        for name in changed:
            if name in before:
                os.environ[name] = before[name]
            else:
                del os.environ[name]
        pytest.fail(f"the test left the environment changed: {', '.join(changed)}")


@pytest.fixture(autouse=True)
def _fresh_caches():
    key_cache.clear()
    client_cache.clear()
    rendered_cache.clear()
    clear_cache()
    yield
    key_cache.clear()
    client_cache.clear()
    clear_cache()


@pytest.fixture
def scope_catalogue(db):
    """The scopes the suites grant, in the scope catalogue (grants name catalogue scopes only)."""
    from registry.models import Scope

    for name in ("ocen.loan", "ocen.offer", "registry.audit"):
        Scope.objects.get_or_create(name=name)


@pytest.fixture
def signing_key(db):
    key, _ = signing_key_ensure()
    return key


@pytest.fixture
def make_client(db, signing_key) -> Callable:
    def factory(name: str = "client"):
        return client_create(name=name)

    return factory


class FrozenClock:
    """``time.time()`` held inside one whole second: ``clock.at(0.3)`` is that second
    plus 0.3, ``clock.at(1.3)`` the next one plus 0.3. The token issuer and the
    tokens-not-before both read this clock, so a test can put an issuance and a
    revocation in the same second, in either order."""

    def __init__(self, second: int) -> None:
        self.second = second
        self.now = float(second)

    def at(self, offset: float) -> float:
        self.now = self.second + offset
        return self.now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FrozenClock:
    frozen = FrozenClock(int(time.time()))
    frozen.at(0.2)
    monkeypatch.setattr(time, "time", frozen)
    return frozen


FORM = "application/x-www-form-urlencoded"


def form(data) -> str:
    return urlencode(data, doseq=True)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def token_for(client) -> Callable:
    """POST /oauth2/token with client_secret_basic; returns the response."""

    def request(oauth_client, secret: str, **params):
        data = {"grant_type": "client_credentials", **params}
        return client.post("/oauth2/token", form(data), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(oauth_client.client_id, secret))

    return request


_COUNTED = ("failed", "error", "passed", "skipped", "xfailed", "xpassed", "deselected")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """This pass's counts, as pytest's summary gives them, for the last line of
    scripts/run-tests (which sets OCEN_TEST_SUMMARY to a file to write them to)."""
    path = os.environ.get("OCEN_TEST_SUMMARY")
    if not path:
        return
    counts = {kind: sum(1 for report in terminalreporter.stats.get(kind, ())
                        if getattr(report, "count_towards_summary", True)) for kind in _COUNTED}
    words = [f"{n} {'errors' if kind == 'error' and n != 1 else kind}" for kind, n in counts.items() if n]
    Path(path).write_text(", ".join(words) or "no tests ran")


def pytest_report_header(config):
    from django.conf import settings

    db = settings.DATABASES["default"]
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    test_name = run_database_name(db["NAME"]) if "postgresql" in db["ENGINE"] else "in memory"
    return (f"database: {engine} {db.get('HOST') or db['NAME']} (test database: {test_name}); "
            f"cache: {cache_backend} (key prefix {CACHE_KEY_PREFIX}); run {RUN_ID}")
