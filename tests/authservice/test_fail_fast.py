"""Dependencies fail fast: with PostgreSQL unreachable the service answers 503 with
Retry-After (RFC 6749 temporarily_unavailable at the OAuth endpoints), /healthz still
answers, /readyz names what is down; JWKS is served from memory through an outage."""

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import httpx
import pytest
from django.db import OperationalError

from tests.test_support import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server_without_database(tmp_path_factory):
    """The service as deployed (python -m authservice.serve), its PostgreSQL pool pointed at a closed port."""
    tmp = tmp_path_factory.mktemp("failfast")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_"))},
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/nowhere", "REDIS_URL": "",
           "AUTHSERVICE_VAR_DIR": str(tmp), "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"}
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "authservice.serve"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url, tmp / "server.log"
    server.terminate()
    server.wait(timeout=20)
    log.close()


@pytest.mark.ops
def test_the_token_endpoint_answers_503_temporarily_unavailable(server_without_database):
    url, _ = server_without_database
    response = httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=("c", "s"),
                          timeout=10)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.ops
def test_the_registry_api_and_the_admin_answer_503_not_500(server_without_database):
    url, log = server_without_database
    api = httpx.get(f"{url}/registry/v1/participants", headers={"Authorization": "Bearer x.y.z"}, timeout=10)
    assert api.status_code in {401, 503}, (api.status_code, api.text[:200])
    admin = httpx.get(f"{url}/admin/", cookies={"sessionid": "a" * 32}, timeout=10)
    assert admin.status_code == 503 and admin.headers["Retry-After"]
    assert "Traceback" not in log.read_text()


@pytest.mark.ops
def test_healthz_answers_while_readyz_names_the_database(server_without_database):
    url, _ = server_without_database
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "unreachable"


@pytest.mark.ops
def test_discovery_needs_no_database(server_without_database):
    url, _ = server_without_database
    assert httpx.get(f"{url}/.well-known/openid-configuration", timeout=10).status_code == 200


def test_jwks_is_served_from_memory_through_a_database_outage(client, signing_key, settings):
    first = client.get("/oauth2/jwks").json()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "SIGNER_CACHE_SECONDS": 0}  # force a re-read
    with mock.patch("authservice.models.SigningKeyQuerySet.published", side_effect=OperationalError("down")):
        response = client.get("/oauth2/jwks")
    assert response.status_code == 200
    assert response.json() == first


def test_a_view_failing_on_the_database_answers_503(client, signing_key):
    with mock.patch("authservice.views.server_metadata", side_effect=OperationalError("down")):
        response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


def test_the_registry_api_answers_503_when_the_service_cannot_sign(client, onboard_registry_reader):
    from authservice.signing_keys import SigningKeyUnavailable

    token = onboard_registry_reader
    with mock.patch("signing.responses.active_signer", side_effect=SigningKeyUnavailable("undecryptable")):
        response = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


@pytest.fixture
def onboard_registry_reader(client, signing_key):
    from registry import services
    from tests.conftest import FORM, basic, form
    from tests.keymaterial import ec_key

    credentials = services.participant_onboard(org_name="Reader", role="LENDER", base_url="https://r.example",
                                               public_key=ec_key().public_pem(), acting_user=None)
    response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                           HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret))
    return response.json()["access_token"]


def _unreachable(alias: str):
    """A connection for ``alias`` through the project's PostgreSQL backend, its pool pointed at a closed port."""
    return _connection(alias, {
        "ENGINE": "authservice.postgresql", "NAME": "nowhere", "USER": "postgres", "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "OPTIONS": {"connect_timeout": 1, "pool": {"min_size": 0, "max_size": 2, "timeout": 0.5,
                                                   "reconnect_timeout": 1}}})


def _connection(alias: str, settings_dict: dict):
    from django.db.utils import ConnectionHandler

    from authservice.postgresql.base import DatabaseWrapper

    return DatabaseWrapper(ConnectionHandler({"default": settings_dict}).settings["default"], alias)


@pytest.mark.django_db
def test_while_the_database_stays_unreachable_requests_stop_waiting_for_the_pool():
    """The first request waits the pool's timeout; the circuit then opens and the next ones
    fail at once (as django.db.OperationalError, so they answer 503), until a trial after
    the reset time fails again."""
    from authservice.postgresql.base import breaker_for

    connection = _unreachable("unreachable-a")
    breaker = breaker_for("unreachable-a")
    try:
        with pytest.raises(OperationalError) as first:
            connection.ensure_connection()
        assert "tried again shortly" not in str(first.value)  # the pool's own timeout
        assert breaker.current_state == "open"
        for _ in range(20):
            with pytest.raises(OperationalError, match="database unreachable \\(tried again shortly\\)"):
                connection.ensure_connection()
        time.sleep(breaker.reset_timeout + 0.1)
        with pytest.raises(OperationalError) as trial:  # half-open: the pool is asked again
            connection.ensure_connection()
        assert "tried again shortly" not in str(trial.value)
        assert breaker.current_state == "open"
    finally:
        connection.close_pool()


@pytest.mark.django_db
def test_a_successful_trial_closes_the_circuit():
    from django.db import connection as default

    if default.vendor != "postgresql":
        pytest.skip("the circuit is the PostgreSQL backend's")
    from authservice.postgresql.base import breaker_for

    reachable = _connection("reachable-a", {**default.settings_dict, "OPTIONS": {
        **default.settings_dict["OPTIONS"], "pool": {"min_size": 0, "max_size": 2, "timeout": 1}}})
    breaker = breaker_for("reachable-a")
    try:
        breaker.open()
        with pytest.raises(OperationalError, match="tried again shortly"):
            reachable.ensure_connection()
        time.sleep(breaker.reset_timeout + 0.1)
        reachable.ensure_connection()
        assert breaker.current_state == "closed"
        with reachable.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    finally:
        reachable.close()
        reachable.close_pool()
