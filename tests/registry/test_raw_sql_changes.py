"""Every change the token endpoint depends on reaches it, also one made by raw SQL.

The token endpoint keeps each client's record (client row, participant status and
claims, resource mappings, keys) in a per-process cache, stamped with the client's
generation. A change that bypasses ``registry.services`` (an operator's ``UPDATE`` in
psql, a data fix, another tool) must still make the cached record stale: database
triggers bump the client's generation (and, on PostgreSQL, notify every serving
process) for every change to the client row, its participant, the providers it is
mapped to, its mappings and its keys. Runs on SQLite and on PostgreSQL.
"""

import json
import time

import pytest
from django.db import connection

from tests.conftest import FORM, basic, form
from tests.keymaterial import ec_key

pytestmark = pytest.mark.usefixtures("scope_catalogue")


def _raw(sql: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _token(client, credentials, **params):
    return client.post("/oauth2/token", form({"grant_type": "client_credentials", **params}), content_type=FORM,
                       HTTP_AUTHORIZATION=basic(credentials.client_id, credentials.client_secret))


def _assertion_token(client, credentials, key, *, kid: str):
    from authservice.conf import authservice_settings
    from ocen_sdk.jws import sign_compact

    now = int(time.time())
    claims = {"iss": credentials.client_id, "sub": credentials.client_id,
              "aud": f"{authservice_settings.ISSUER}/oauth2/token",
              "iat": now, "exp": now + 60, "jti": f"jti-{time.monotonic_ns()}"}
    assertion = sign_compact(json.dumps(claims).encode(), key.private_key, alg="ES256", kid=kid)
    return client.post("/oauth2/token", form({
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}), content_type=FORM)


def _participant(credentials):
    credentials.participant.refresh_from_db()
    return credentials.participant


def test_a_participant_suspended_by_raw_sql_gets_no_token(onboard, client):
    credentials, _ = onboard("LOAN_AGENT")
    assert _token(client, credentials).status_code == 200  # the record is cached now
    participant = _participant(credentials)
    assert _raw(f'UPDATE "{participant._meta.db_table}" SET status = %s WHERE id = %s',  # noqa: S608
                ["SUSPENDED", participant.pk]) == 1
    response = _token(client, credentials)
    assert response.status_code != 200, response.content
    assert "access_token" not in response.json()


def test_a_client_deactivated_by_raw_sql_gets_no_token(onboard, client):
    credentials, _ = onboard("LOAN_AGENT")
    assert _token(client, credentials).status_code == 200
    participant = _participant(credentials)
    table = type(participant.client)._meta.db_table
    # No generation bump in the statement: nothing but the row's own change tells the cache.
    assert _raw(f'UPDATE "{table}" SET is_active = %s WHERE id = %s', [False, participant.client_id]) == 1  # noqa: S608
    assert _token(client, credentials).status_code == 401


@pytest.fixture
def agent_mapped_to_lender(onboard, client, admin_user):
    """A loan agent granted ocen.loan at a lender, its token for the lender issued (cached)."""
    from registry import services

    agent, _ = onboard("LOAN_AGENT")
    lender, _ = onboard("LENDER")
    services.mapping_grant(client=_participant(agent), provider=_participant(lender), scopes="ocen.loan",
                           acting_user=admin_user)
    assert _token(client, agent, resource=_participant(lender).audience).status_code == 200
    return agent, _participant(lender)


def test_a_mapping_removed_by_raw_sql_is_no_longer_granted(agent_mapped_to_lender, client):
    from registry.models import ResourceMapping

    agent, provider = agent_mapped_to_lender
    _raw(f'DELETE FROM "{ResourceMapping._meta.db_table}" WHERE provider_id = %s', [provider.pk])  # noqa: S608
    response = _token(client, agent, resource=provider.audience)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_a_provider_suspended_by_raw_sql_is_no_longer_an_audience(agent_mapped_to_lender, client):
    agent, provider = agent_mapped_to_lender
    _raw(f'UPDATE "{provider._meta.db_table}" SET status = %s WHERE id = %s',  # noqa: S608
         ["SUSPENDED", provider.pk])
    response = _token(client, agent, resource=provider.audience)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_a_key_revoked_by_raw_sql_no_longer_authenticates(onboard, client):
    from registry.models import PublicKey

    key = ec_key()
    credentials, _ = onboard("LOAN_AGENT", key=key)
    registered = PublicKey.objects.get(participant=credentials.participant)
    assert _assertion_token(client, credentials, key, kid=registered.kid).status_code == 200
    _raw(f'UPDATE "{PublicKey._meta.db_table}" SET status = %s WHERE id = %s',  # noqa: S608
         ["REVOKED", registered.pk])
    assert _assertion_token(client, credentials, key, kid=registered.kid).status_code == 401


def test_an_unrelated_participant_column_leaves_the_generation_alone(onboard):
    credentials, _ = onboard("LOAN_AGENT")
    participant = _participant(credentials)
    client_row = type(participant.client)
    before = client_row.objects.get(pk=participant.client_id).generation
    _raw(f'UPDATE "{participant._meta.db_table}" SET status_reason = %s WHERE id = %s',  # noqa: S608
         ["note", participant.pk])
    assert client_row.objects.get(pk=participant.client_id).generation == before
